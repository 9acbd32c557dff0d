"""SiteStore: the site's event store (the library's Application), and the ``SiteLog`` port over it.

Every aggregate of a site (cases, uniqueness claims, delivery ledgers, checkpoint ledgers, reconcile
journals, discrepancies) is stored here, in one notification log. What this adds to the library:
a save also carries the pair digests of the cases it touches (written by the recorder in the same
transaction), it can carry a tracking position, every transaction is timed for an observer, and
followers are woken after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper, Notification, ProcessRecorder, Tracking

from hub.application.case_mapper import CaseMapper
from hub.application.ports import StoreObserver
from hub.domain.case import Case
from hub.domain.digests import DigestChange, JoinedDigests, digest_changes
from hub.domain.errors import CaseNotFound

T = TypeVar("T")


class SiteStore(Application[UUID]):
    """One site's store; ``site`` is its region code. Satisfies ``hub.application.ports.SiteLog``."""

    name = "tongban"  # tables are tongban_events, ...; a subclass must say so again (the library takes its own name)

    def __init__(
        self, *, site: str, env: Mapping[str, str] | None = None, snapshot_interval: int = 0,
        also_snapshot: Sequence[type[Aggregate]] = (), observer: StoreObserver | None = None,
    ) -> None:
        env = dict(env or {})
        if snapshot_interval > 0:  # a snapshot every N events: long cases (and ``also_snapshot``) load fast
            env["IS_SNAPSHOTTING_ENABLED"] = "y"
            intervals = {kind: snapshot_interval for kind in (Case, *also_snapshot)}
            setattr(self, "snapshotting_intervals", intervals)  # noqa: B010 - a ClassVar upstream
        super().__init__(env=env)
        self.site = site
        self._observer = observer
        self._listeners: list[Callable[[], None]] = []
        self._tracking = cast(ProcessRecorder, self.recorder)  # construct_recorder makes a process recorder

    # ------------------------------------------------------------------ the library's hooks
    def construct_mapper(self) -> Mapper[UUID]:
        """The library's mapper with orjson for case events (see case_mapper)."""
        return CaseMapper(super().construct_mapper())

    def construct_recorder(self) -> ProcessRecorder:
        """A process recorder: followers store what they did and their log position in one transaction."""
        return self.factory.process_recorder()

    def save(self, *objs: Any, **kwargs: Any) -> list[Any]:
        """The library's save, with a processing event that checks concrete types first (its runtime
        Protocol checks cost about 30 µs per aggregate on Python 3.11: a tenth of a bulk save)."""
        processing = Processing()
        processing.collect_events(*objs, **kwargs)
        return self._save(processing)

    def _save(self, processing: Processing) -> list[Any]:
        recordings = self._record(processing)
        self._take_snapshots(processing)
        for listener in self._listeners:
            listener()
        return recordings

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Any]:
        """Every save also hands the store the cases' new pair digests, to write in the same
        transaction (the reconciliation index; a store that keeps none ignores them)."""
        changes = _digest_changes(processing_event, self.site)
        if changes:
            processing_event.saved_kwargs.update(JoinedDigests(tuple(changes)).as_kwargs())
        started = time.perf_counter()
        recordings = super()._record(processing_event)
        if self._observer is not None:
            self._observer.stored(len(processing_event.events), time.perf_counter() - started)
        return recordings

    # ------------------------------------------------------------------ SiteLog
    def head(self) -> int:
        return int(self.recorder.max_notification_id() or 0)

    def read(self, start: int, limit: int, stop: int | None = None) -> Sequence[Notification]:
        return self.recorder.select_notifications(start=start, limit=limit, stop=stop)

    def decode(self, notification: Notification) -> object:
        return self.mapper.to_domain_event(notification)

    def tracked(self, name: str) -> int:
        return int(self._tracking.max_tracking_id(name) or 0)

    def record(self, *aggregates: Aggregate, tracking: Tracking | None = None) -> None:
        processing = Processing(tracking=tracking)
        processing.collect_events(*aggregates)
        if processing.events:
            self._save(processing)
        elif tracking is not None:
            self._tracking.insert_tracking(tracking)

    def find(self, aggregate_id: UUID, kind: type[T]) -> T | None:
        try:
            found: Any = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, kind) else None

    def get_case(self, case_id: UUID) -> Case:
        case = self.find(case_id, Case)
        if case is None:
            raise CaseNotFound(str(case_id))
        return case

    def events_of(
        self, aggregate_id: UUID, *, after: int | None = None, limit: int | None = None
    ) -> Iterator[Aggregate.Event]:
        for stored in self.repository.event_store.get(aggregate_id, gt=after, limit=limit):
            yield cast(Aggregate.Event, stored)

    def on_saved(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)


class Processing(ProcessingEvent[UUID]):
    """The library's processing event, checking for an aggregate by its class before the library's
    runtime Protocol checks (slow on Python 3.11)."""

    def collect_events(self, *objs: Any, **kwargs: Any) -> None:
        for obj in objs:
            if isinstance(obj, Aggregate):
                self.events.extend(obj.collect_events())
                self.aggregates[obj.id] = obj
            elif obj is not None:
                super().collect_events(obj)
        self.saved_kwargs.update(kwargs)


def _digest_changes(processing_event: ProcessingEvent[UUID], site: str) -> list[DigestChange]:
    added: dict[UUID, dict[str, int]] = {}
    for event in processing_event.events:
        if isinstance(event, Case.Event) and event.origin:
            per_case = added.setdefault(event.originator_id, {})
            per_case[event.origin] = per_case.get(event.origin, 0) + 1
    changes: list[DigestChange] = []
    for case_id, per_origin in added.items():
        case = processing_event.aggregates.get(case_id)
        if isinstance(case, Case):
            changes.extend(digest_changes(case.id, site, case.sites, case.chains, per_origin))
    return changes
