"""The relay's view of a channel to one partner: everything it uses, declared (gRPC, NATS, test fakes).

A channel delivers a batch and answers with the receipts it got back (NATS answers none: its
receipts come back through this site's inbox). ``deliver_async`` starts a delivery and returns at
once, so the relay can keep several batches in flight; ``resend`` fills a gap the partner reported
out of band. A channel with nothing asynchronous of its own answers ``deliver_async`` with
``answered(...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent


class Pending(Protocol):
    """A delivery under way (a concurrent.futures or gRPC future)."""

    def result(self, timeout: float | None = None) -> list[CaseReceipt]: ...

    def done(self) -> bool: ...

    def cancel(self) -> bool: ...


class Channel(Protocol):
    channel_name: str
    partner: str

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        """Deliver and wait for the answer; raises if the partner did not take the batch."""
        ...

    def deliver_async(self, events: Sequence[SharedEvent]) -> Pending: ...

    def resend(self, events: Sequence[SharedEvent], receipt: CaseReceipt) -> list[CaseReceipt]:
        """Send ``events`` again to fill the gap ``receipt`` reported (under ids of their own where the
        channel drops repeats); returns the receipts it got back."""
        ...

    def close(self) -> None: ...


class Mapped:
    """A future of a channel's raw answer, seen as a future of receipts (``convert`` turns one into the other)."""

    def __init__(self, future: Any, convert: Callable[[Any], list[CaseReceipt]]) -> None:
        self._future, self._convert = future, convert

    def result(self, timeout: float | None = None) -> list[CaseReceipt]:
        return self._convert(self._future.result(timeout=timeout))

    def cancel(self) -> bool:
        return bool(self._future.cancel())

    def done(self) -> bool:
        return bool(self._future.done())


def answered(deliver: Callable[[Sequence[SharedEvent]], list[CaseReceipt]], events: Sequence[SharedEvent]) -> Pending:
    """``deliver(events)`` done now, as a delivery already answered (or failed)."""
    done: Future[list[CaseReceipt]] = Future()
    try:
        done.set_result(deliver(events))
    except Exception as error:
        done.set_exception(error)
    return done
