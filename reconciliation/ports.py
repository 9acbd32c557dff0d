"""What reconciliation needs from the outside: the site's log (``hub.application.ports.SiteLog``), the
exchange of shared events, a snapshot of the digest index, and the partner."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol
from uuid import UUID

from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent
from reconciliation.messages import CaseCounts, CaseDescription, Message, Params

Total = tuple[int, int, bytes]  # (day or hour number, count, XOR of its digests)
Item = tuple[bytes, bytes]  # (16-byte case key, 16-byte pair digest)
Bounds = tuple[bytes, bytes | None]  # [lo, hi): hi None for no upper bound
Segment = tuple[int, int, bytes, bytes, bytes]  # (index, count, XOR of digests, first key, last key)
Cut = tuple[bytes, bytes | None, int, int]  # [lo, hi) cut by rank: (lo, hi, first, every), see segments


class DigestSnapshot(Protocol):
    """One site's digests for one partner, all read from one consistent snapshot of the store."""

    def days(self) -> list[Total]:
        """Every UTC day holding at least one case, ascending."""
        ...

    def hours(self) -> list[Total]:
        """Every hour (Unix ms // 3,600,000) holding at least one case, ascending."""
        ...

    def items(self, lo: bytes, hi: bytes | None, limit: int | None = None) -> list[Item]:
        """The (key, digest) pairs with lo <= key < hi (hi None: no upper bound), ascending; the first
        ``limit`` of them if given (a dense range is read page by page)."""
        ...

    def item_lists(self, ranges: Sequence[Bounds]) -> list[list[Item]]:
        """Each range's items, as ``items`` gives them, in one go: the small ranges a message lists
        or compares (callers keep the total to about what a frame can carry)."""
        ...

    def summaries(self, ranges: Sequence[Bounds]) -> list[tuple[int, bytes]]:
        """Each range's count and the XOR of its digests, in one go: the parts of dense hours a
        message's ranges cut through, summed where the keys are (``reconciliation.paged`` when only
        ``items`` can)."""
        ...

    def segments(self, cuts: Sequence[Cut]) -> list[list[Segment]]:
        """Each cut's segments, in one go. A cut (lo, hi, first, every) is [lo, hi) cut by rank: segment 0
        holds ranks below ``first``, segment j the ``every`` ranks from first + (j - 1) * every on; the
        non-empty ones, in order. Where splits cut runs of keys inside hours."""
        ...


class DigestIndex(Protocol):
    def snapshot(self, partner: str) -> AbstractContextManager[DigestSnapshot]: ...


class ReconcilePeer(Protocol):
    """The partner, as the initiator of a run sees it (gRPC in production, in-process in unit tests)."""

    partner: str
    bytes_sent: int  # on the wire so far, each way
    bytes_received: int

    def reconcile(self, session: str, params: Params | None, message: Message) -> tuple[str, Params, Message]:
        """One round: our ranges in, theirs out. An empty ``session`` opens one (``params`` required)."""
        ...

    def describe(self, session: str, cases: Sequence[CaseCounts]) -> list[CaseDescription]: ...

    def fetch(self, case_id: UUID, origin: str, from_seq: int) -> list[SharedEvent]: ...

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]: ...


class EventSharing(Protocol):
    """How repairs move events: the same path the relays and the partner port use
    (``hub.application.case_sharing.CaseSharing``), so a repaired event is checked like any other."""

    def ingest(self, sender: str, events: Sequence[SharedEvent]) -> list[CaseReceipt]: ...

    def resend(self, case_id: UUID, origin: str, from_seq: int) -> list[SharedEvent]: ...

    def record_receipts(
        self, partner: str, channel: str, receipts: Sequence[CaseReceipt], through: int | None
    ) -> int: ...
