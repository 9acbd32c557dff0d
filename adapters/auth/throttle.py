"""Failed-login throttling, per staff id and per peer address.

After ``max_failures`` failures in a row a key is locked out for ``lockout`` seconds, doubling with
each further failure up to ``most``; a successful login clears the staff id's count. Kept in memory:
a restart forgives, which is acceptable for a lockout measured in minutes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from adapters.auth.errors import LoginThrottled


@dataclass
class _Entry:
    failures: int = 0
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(self, max_failures: int = 5, lockout: float = 30.0, most: float = 900.0,
                 clock: Callable[[], float] = time.monotonic, keep: int = 10_000) -> None:
        self.max_failures, self.lockout, self.most = max_failures, lockout, most
        self._clock = clock
        self._keep = keep
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def check(self, keys: Iterable[str]) -> None:
        """LoginThrottled if any key is locked out now."""
        now = self._clock()
        with self._lock:
            wait = max((e.locked_until - now for k in keys if (e := self._entries.get(k))), default=0.0)
        if wait > 0:
            raise LoginThrottled(wait)

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        with self._lock:
            if len(self._entries) > self._keep:  # bounded memory under a spray of made-up ids
                self._entries = {k: e for k, e in self._entries.items() if e.locked_until > now}
            for key in keys:
                entry = self._entries.setdefault(key, _Entry())
                entry.failures += 1
                over = entry.failures - self.max_failures
                if over >= 0:
                    entry.locked_until = now + min(self.most, self.lockout * 2 ** over)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)
