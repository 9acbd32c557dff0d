"""Ports: what the application needs from the outside, and what it offers the parts that follow it.

The catalogue and region directory are implemented in routing/ (pure data); the case index
(the read model behind list queries) in adapters/store/. ``SiteLog`` is the site's event log as the
exchange, the reconciler, the audit chain and the read model see it (``SiteStore`` implements it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Notification, Tracking

from hub.domain.case import Case
from hub.domain.deadlines import ClockStatus
from hub.domain.values import Mode, ServiceItem

T = TypeVar("T")


class Catalogue(Protocol):
    def __contains__(self, code: object) -> bool: ...

    def get(self, code: str) -> ServiceItem: ...


class Regions(Protocol):
    def is_valid(self, code: str) -> bool: ...


class Route(Protocol):
    """Where a case goes: the handling site(s) and department, under which agreement (version)."""

    @property
    def handling_site(self) -> str: ...

    @property
    def co_handling_sites(self) -> tuple[str, ...]: ...

    def as_data(self) -> dict[str, object]: ...


class Router(Protocol):
    """Picks the partner site for a case from the catalogue, region codes and partner agreements.
    Refusals are RuleViolations (reason UNROUTABLE_*), raised by the implementation."""

    def route(
        self, *, item_code: str, mode: Mode, handling_region: str, co_handling_regions: Sequence[str], on: date
    ) -> Route: ...


class Agreements(Protocol):
    """The partner agreements this site holds (implemented in routing/): may ``partner`` open cases
    here for ``item_code`` in ``mode``, received on the day ``on``?"""

    def covers(self, partner: str, item_code: str, mode: Mode, on: date) -> bool: ...


@dataclass(frozen=True)
class CaseRow:
    """One case in the read model: enough to list and filter, no PII."""

    case_id: str
    case_number: str
    state: str
    item_code: str
    item_name: str
    receiving_site: str
    handling_site: str
    co_handling_sites: tuple[str, ...]
    version: int
    received_at: str
    updated_at: str
    next_due: date | None = None
    next_warn: date | None = None
    due_provisional: bool = False
    review: str = ""  # bad review: "" none, "open", "on_time", "late"


@dataclass(frozen=True)
class IndexSummary:
    """Counts over the read model, for dashboards: by (state, partner), due status, bad reviews."""

    by_state_and_partner: dict[tuple[str, str], int]
    warning: int
    breached: int
    reviews: dict[str, int]


class DueFilter(Enum):
    WARNING_OR_BREACHED = "warning_or_breached"
    BREACHED = "breached"

    def selects(self, row: CaseRow, as_of: date) -> bool:
        """Whether the listed case is due this way on ``as_of``: the rule the list filter and the
        list's due status (``due_status``) share; the SQL indexes are tested against it."""
        if self is DueFilter.BREACHED:
            return row.next_due is not None and row.next_due < as_of
        return row.next_warn is not None and row.next_warn <= as_of


def due_status(row: CaseRow, as_of: date) -> ClockStatus | None:
    """The due status a case list shows for a row on ``as_of`` (None: no clock is running)."""
    if DueFilter.BREACHED.selects(row, as_of):
        return ClockStatus.BREACHED
    if DueFilter.WARNING_OR_BREACHED.selects(row, as_of):
        return ClockStatus.WARNING
    return ClockStatus.RUNNING if row.next_due is not None else None


@dataclass(frozen=True)
class CaseQuery:
    """Newest first (case ids are UUIDv7, so id order is receipt order); ``after`` is the last id seen."""

    as_of: date
    states: frozenset[str] = field(default_factory=frozenset)
    due: DueFilter | None = None
    partner: str | None = None
    page_size: int = 50
    after: str | None = None


class CaseIndex(Protocol):
    """The read model. ``upsert`` stores the rows and the log position in one transaction, so a
    crash never leaves the index ahead of or behind what it says it has processed."""

    def position(self) -> int: ...

    def upsert(self, rows: Sequence[CaseRow], position: int) -> None: ...

    def query(self, query: CaseQuery) -> list[CaseRow]: ...

    def summary(self, site: str, as_of: date) -> IndexSummary:
        """Counts; a case's partner is the other side of it as seen from ``site``."""
        ...

    def close(self) -> None:
        """Release the index's connections; a second close does nothing (the hub closes its index)."""
        ...


class SiteLog(Protocol):
    """The site's event log: read in order, extended atomically, followed from a tracked position.

    Positions are notification ids: gap-free in practice, increasing always. ``record`` stores the new
    events of every aggregate given and (if given) a tracking position in ONE transaction: a follower
    that records what it did together with how far it read never does it twice after a crash.
    """

    @property
    def site(self) -> str: ...

    def head(self) -> int:
        """The newest position (0: an empty log)."""
        ...

    def read(self, start: int, limit: int, stop: int | None = None) -> Sequence[Notification]:
        """Up to ``limit`` entries from position ``start`` on (to ``stop`` inclusive, if given)."""
        ...

    def decode(self, notification: Notification) -> object:
        """The domain event an entry holds (decrypted and upcast)."""
        ...

    def tracked(self, name: str) -> int:
        """The last position recorded under ``name`` (0: none)."""
        ...

    def record(self, *aggregates: Aggregate, tracking: Tracking | None = None) -> None: ...

    def find(self, aggregate_id: UUID, kind: type[T]) -> T | None:
        """The stored aggregate with this id if it is a ``kind``, else None."""
        ...

    def get_case(self, case_id: UUID) -> Case:
        """The case (CaseNotFound if there is none)."""
        ...

    def events_of(
        self, aggregate_id: UUID, *, after: int | None = None, limit: int | None = None
    ) -> Iterator[Aggregate.Event]:
        """One aggregate's stored events, oldest first, after version ``after``."""
        ...

    def on_saved(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every transaction (followers wake instead of polling hard)."""
        ...


class StoreObserver(Protocol):
    """Told of every transaction the site writes (the adapters count; the application does not)."""

    def stored(self, events: int, seconds: float) -> None: ...
