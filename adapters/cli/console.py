"""Where the CLI writes: results to stdout, errors to stderr as one line with an exit code."""

from __future__ import annotations

import sys
from typing import NoReturn

from rich.console import Console

out = Console()
err = Console(stderr=True)


def fail(message: str, code: int) -> NoReturn:
    err.print(f"[red]错误[/]：{' '.join(message.split())}", highlight=False, soft_wrap=True)
    sys.exit(code)
