"""Run calls from many threads at once, for tests of what concurrent callers see."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Start the calls in parallel threads behind one barrier; each slot holds the call's result or
    the exception it raised."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
