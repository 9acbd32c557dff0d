"""Keeps the case read model (staff lists, business metrics) up with the event log in the background.

Folding happens here, a batch at a time, woken by every save: a scrape or a staff query never waits
for a backlog. Before this, the first scrape after a bulk load folded every loaded case inline (a
million at the soak's preload: the scrape never answered, and staff lists waited on its lock).
"""

from __future__ import annotations

import threading

import structlog

from adapters.following import follow
from hub.application.service import CaseHub

log = structlog.get_logger("tongban.index")


class IndexFollower:
    def __init__(self, hub: CaseHub, idle: float = 1.0, batch: int = 500) -> None:
        self.hub, self.idle, self.batch = hub, idle, batch
        self.wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="case-index", daemon=True)

    def start(self) -> None:
        self.hub.listeners.append(self.wake.set)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        follow(lambda: not self.hub.refresh_index(self.batch, limit=self.batch), self.wake, self._stopping,
               idle=self.idle, failed=_failed, first_pause=0.5, most_pause=10.0)


def _failed(error: Exception, pause: float) -> None:
    """The store is down: the read model waits, nothing is lost."""
    log.warning("index_refresh_failed", error=f"{type(error).__name__}: {error}", retry_in=pause)
