"""Keeps the case read model (staff lists, business metrics) up with the event log in the background.

Folding happens here, a batch at a time, woken by every save: a scrape or a staff query never waits
for a backlog. Before this, the first scrape after a bulk load folded every loaded case inline (a
million at the soak's preload: the scrape never answered, and staff lists waited on its lock).
"""

from __future__ import annotations

import threading

import structlog

from adapters.following import follow
from adapters.retry import Backoff
from hub.application.read_model import CaseReadModel

log = structlog.get_logger("tongban.index")


class IndexFollower:
    def __init__(
        self, read_model: CaseReadModel, idle: float = 1.0, batch: int = 500, backoff: Backoff | None = None
    ) -> None:
        self.read_model, self.idle, self.batch = read_model, idle, batch
        self.backoff = backoff or Backoff(first=0.5, most=10.0)
        self.wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="case-index", daemon=True)
        read_model.log.on_saved(self.wake.set)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self.wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        follow(lambda: not self.read_model.refresh(self.batch, limit=self.batch), self.wake, self._stopping,
               idle=self.idle, backoff=self.backoff, failed=_failed)


def _failed(error: Exception, pause: float) -> None:
    """The store is down: the read model waits, nothing is lost."""
    log.warning("index_refresh_failed", error=f"{type(error).__name__}: {error}", retry_in=pause)
