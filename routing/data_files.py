"""Reading routing's TOML data files: the packaged copy, or a site's own file in its place."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any


def read_tables(
    path: Path | None, packaged: str, table: str, error: Callable[[str, str, str], Exception]
) -> tuple[list[Any], str]:
    """The ``[[table]]`` rows of ``path`` (or of ``routing/data/<packaged>``) and where they came from.

    ``error(source, item, problem)`` builds the caller's own error type for a bad file.
    """
    if path is None:
        text = (resources.files("routing") / "data" / packaged).read_text(encoding="utf-8")
        source = f"routing/data/{packaged}"
    else:
        text, source = path.read_text(encoding="utf-8"), str(path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(source, "file", f"not valid TOML: {exc}") from None
    extra = set(document) - {table}
    if extra:
        raise error(source, "file", f"unknown top-level keys {sorted(extra)}")
    rows = document.get(table, [])
    if not isinstance(rows, list):
        raise error(source, "file", f"{table} must be an array of tables ([[{table}]])")
    return rows, source
