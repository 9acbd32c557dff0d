"""Group commit: commands from concurrent callers stored in one transaction, each caller told its own result.

One event per transaction does not survive a burst: writers serialise on the event table's lock,
so the store manages a few hundred saves a second however many callers wait. The committer queues
commands and flushes them when ``max_batch`` are waiting or ``window`` seconds have passed since the
oldest arrived; one thread applies each command to its case (commands on the same case see each
other in arrival order) and stores the whole batch with ONE ``CaseHub.save``, so everything that
hooks into the save path (the audit chain, reconciliation digests) sees every event as usual.

A command that the rules refuse raises before recording anything, so it is dropped from the batch
and only its caller gets the error. If the batch's save hits an IntegrityError (another writer
updated one of its cases, or a case number or request id was taken), the batch's commands are
committed one by one, so each caller still gets exactly the result it would have had alone.
Receipts are staged without looking their request id up (a read per receipt would cap the batch's
rate); a repeated request id is rare and shows as such an IntegrityError.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from hub.application.case_hub import CaseHub
from hub.application.commands import CaseCommand, ReceiveCase
from hub.domain.case import Case
from hub.domain.errors import HubError

__all__ = ["CommitterClosed", "GroupCommitter"]


class CommitterClosed(HubError):
    """The site is shutting down and takes no more commands."""

    reason = "SHUTTING_DOWN"

    def __init__(self) -> None:
        super().__init__("站点正在停止，请稍后重试")


@dataclass
class _Job:
    command: CaseCommand | ReceiveCase
    queued_at: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def finish(self, result: Any) -> None:
        self.result = result
        self.done.set()

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class GroupCommitter:
    """Thread-safe front of a CaseHub for ``execute`` and ``receive`` that batches their writes.

    Args:
        hub: the site's hub; every write goes through its ``save``.
        max_batch: flush as soon as this many commands wait.
        window: flush at the latest this many seconds after the oldest waiting command arrived.
        on_flush: called with (commands in the batch, whether it fell back to one by one), for metrics.
    """

    def __init__(
        self, hub: CaseHub, max_batch: int = 256, window: float = 0.005,
        on_flush: Callable[[int, bool], None] | None = None,
    ) -> None:
        if max_batch < 1 or window < 0:
            raise ValueError("max_batch must be >= 1 and window >= 0")
        self.hub = hub
        self.max_batch = max_batch
        self.window = window
        self.on_flush = on_flush
        self._queue: list[_Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ callers
    def execute(self, cmd: CaseCommand) -> Case:
        """As ``CaseHub.execute``, stored together with whatever else is waiting."""
        result: Case = self._submit(cmd)
        return result

    def receive(self, cmd: ReceiveCase) -> tuple[Case, bool]:
        """As ``CaseHub.receive``, stored together with whatever else is waiting."""
        result: tuple[Case, bool] = self._submit(cmd)
        return result

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new commands, finish the queued ones, stop the flushing thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _submit(self, command: CaseCommand | ReceiveCase) -> Any:
        job = _Job(command)
        with self._cond:
            if self._closed:
                raise CommitterClosed()
            self._queue.append(job)
            if len(self._queue) == 1 or len(self._queue) >= self.max_batch:
                self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
                self._thread.start()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    # ------------------------------------------------------------------ the flushing thread
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._flush(batch)
            except BaseException as error:  # never leave a caller waiting on a flush that broke
                for job in batch:
                    if not job.done.is_set():
                        job.fail(error)

    def _next_batch(self) -> list[_Job] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = self._queue[0].queued_at + self.window
            while len(self._queue) < self.max_batch and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            return batch

    def _flush(self, batch: list[_Job]) -> None:
        loaded: dict[UUID, Case] = {}
        pending: dict[UUID, Aggregate] = {}
        staged: list[tuple[_Job, Any]] = []
        alone: list[_Job] = []
        for job in batch:
            try:
                staging = self._stage(job, loaded, pending)
            except Exception as error:  # a refused command (or an unreadable case) fails only its caller
                job.fail(error)
                continue
            if staging is None:
                alone.append(job)
            else:
                staged.append((job, staging))
        fell_back = False
        if staged:
            try:
                self.hub.save(*pending.values())
            except IntegrityError:
                fell_back = True
                alone = [job for job, _ in staged] + alone
            except Exception as error:  # the store is down: every staged caller hears it
                for job, _ in staged:
                    job.fail(error)
            else:
                for job, result in staged:
                    job.finish(result)
        for job in alone:
            self._commit_alone(job)
        if self.on_flush is not None:
            self.on_flush(len(batch), fell_back)

    def _stage(
        self, job: _Job, loaded: dict[UUID, Case], pending: dict[UUID, Aggregate]
    ) -> Case | tuple[Case, bool] | None:
        """Apply one job to the batch: its result, or None when it must be committed alone (a second
        receipt for a request id or case number already in this batch)."""
        if isinstance(job.command, ReceiveCase):
            intake = self.hub.prepare_receive(job.command, assume_new=True)
            new: tuple[Aggregate, ...] = (intake.case, *intake.claims)
            if any(a.id in pending for a in new):
                return None
            pending.update((a.id, a) for a in new)
            return intake.case, True
        case = self.hub.apply_command(job.command, loaded)
        pending[case.id] = case
        return case

    def _commit_alone(self, job: _Job) -> None:
        try:
            if isinstance(job.command, ReceiveCase):
                job.finish(self.hub.receive(job.command))
            else:
                job.finish(self.hub.execute(job.command))
        except Exception as error:
            job.fail(error)
