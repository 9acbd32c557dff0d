"""The loop of a thread that follows the event log (a relay, the read model's follower)."""

from __future__ import annotations

import threading
from collections.abc import Callable


def follow(
    step: Callable[[], bool], wake: threading.Event, stopping: threading.Event, *, idle: float,
    failed: Callable[[Exception, float], None], first_pause: float, most_pause: float,
) -> None:
    """Run ``step`` until ``stopping`` is set: again at once while it says there is more to do, after
    a save's ``wake`` (or ``idle`` seconds) when it says there is not, and after a pause that doubles
    up to ``most_pause`` while it fails (``failed`` is told the error and the pause)."""
    pause = first_pause
    while not stopping.is_set():
        wake.clear()  # before looking: a save from now on wakes the wait below
        try:
            more = step()
            pause = first_pause
        except Exception as error:  # the partner or the store is down: nothing is lost, try again later
            failed(error, pause)
            stopping.wait(pause)
            pause = min(pause * 2, most_pause)
            continue
        if not more:
            wake.wait(idle)
