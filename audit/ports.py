"""What the audit trail needs from the site: its stored log, and a place to keep the chain.

``AuditLog`` is the part of the site's store the chain and the checkpoints use (a subset of the site
log the hub's store offers): the notification log exactly as stored, so the chain digests stored
bytes and needs no key; the ledgers and cases by id; and an atomic save for the ledger's new events.
``ChainStore`` is where the chain is kept, beside the event store (adapters/audit/chain_store.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Notification

from audit.chain import ChainLink, StoredFact
from hub.domain.case import Case

T = TypeVar("T")


class AuditLog(Protocol):
    @property
    def site(self) -> str:
        """The site's region code: whose log this is."""
        ...

    def read(self, start: int, limit: int, stop: int | None = None) -> Sequence[Notification]:
        """Up to ``limit`` stored events from log position ``start`` (to ``stop``, inclusive), as stored."""
        ...

    def find(self, aggregate_id: UUID, kind: type[T]) -> T | None:
        """The stored aggregate with this id if it is a ``kind``, else None."""
        ...

    def get_case(self, case_id: UUID) -> Case: ...

    def record(self, *aggregates: Aggregate) -> None:
        """Store the aggregates' new events in one transaction."""
        ...

    def events_of(
        self, aggregate_id: UUID, *, after: int | None = None, limit: int | None = None
    ) -> Iterator[Aggregate.Event]:
        """One aggregate's stored events after version ``after``, oldest first, at most ``limit``."""
        ...


class ChainStore(Protocol):
    def last(self) -> ChainLink | None: ...

    def append(self, links: Sequence[ChainLink]) -> None: ...

    def links(self, start: int = 1, stop: int | None = None) -> list[ChainLink]: ...

    def before(self, position: int) -> ChainLink | None:
        """The last link before ``position`` (positions the log skipped are not in the chain)."""
        ...

    def positions(self, originator_id: str) -> dict[int, int]:
        """Where the chain holds one aggregate's events: version -> position (a case's, for its bundle)."""
        ...

    def locate(self, fact: StoredFact) -> tuple[int | None, int | None]:
        """Where the chain holds ``fact``'s digest, and its (originator, version): None where it does not."""
        ...

    def close(self) -> None: ...
