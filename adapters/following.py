"""The loop of a thread that follows the event log (a relay, the read model's follower)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from adapters.retry import Backoff


def follow(
    step: Callable[[], bool], wake: threading.Event, stopping: threading.Event, *, idle: float,
    backoff: Backoff, failed: Callable[[Exception, float], None],
) -> None:
    """Run ``step`` until ``stopping`` is set: again at once while it says there is more to do, after
    a save's ``wake`` (or ``idle`` seconds) when it says there is not, and after ``backoff``'s growing
    pause while it fails (``failed`` is told the error and the pause; it decides how loud to be).

    Every error pauses and retries: a follower's work is idempotent from its stored position, and a
    follower that stopped would stop everything behind it. What a *final* refusal should change
    (parking the event) is the relay's business, not this loop's.
    """
    failures = 0
    while not stopping.is_set():
        wake.clear()  # before looking: a save from now on wakes the wait below
        try:
            more = step()
            failures = 0
        except Exception as error:  # the partner or the store is down: nothing is lost, try again later
            failures += 1
            pause = backoff.pause(failures)
            failed(error, pause)
            stopping.wait(pause)
            continue
        if not more:
            wake.wait(idle)
