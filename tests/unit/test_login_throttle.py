"""Failed-login throttling: a lockout after N failures that grows, per key, cleared by a success."""

from __future__ import annotations

import pytest

from adapters.auth.errors import LoginThrottled
from adapters.auth.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lockout_after_max_failures_grows_and_is_per_key() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, lockout=10.0, most=35.0, clock=clock)
    for _ in range(2):
        throttle.failed(["a"])
        throttle.check(["a"])
    throttle.failed(["a"])
    with pytest.raises(LoginThrottled) as locked:
        throttle.check(["a"])
    assert locked.value.metadata == {"retry_after_seconds": "10"}
    throttle.check(["b"])  # another staff id is not affected
    clock.now += 10.5
    throttle.check(["a"])
    throttle.failed(["a"])  # the 4th failure: 20 s
    clock.now += 19
    with pytest.raises(LoginThrottled):
        throttle.check(["a"])
    clock.now += 2
    throttle.failed(["a"])
    throttle.failed(["a"])  # capped at 35 s
    clock.now += 34
    with pytest.raises(LoginThrottled):
        throttle.check(["a"])
    clock.now += 2
    throttle.check(["a"])
    throttle.succeeded("a")
    throttle.failed(["a"])
    throttle.check(["a"])
