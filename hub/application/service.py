"""CaseHub: the site's use cases over the event-sourced case store.

One instance per site. Each command loads one case, lets the domain decide, and saves the new
events atomically; ``save`` takes many aggregates, which is how a receipt stores the case and its
uniqueness claims in one transaction (and how group commit will batch commands later).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Mapper, ProcessRecorder

from hub.application.case_mapper import CaseMapper
from hub.application.commands import CaseCommand, ReceiveCase
from hub.application.ports import CaseIndex, CaseQuery, CaseRow, Catalogue, Regions, Router
from hub.domain.case import Case, actor_from
from hub.domain.checkpoint_ledger import CheckpointLedger
from hub.domain.claims import UniqueClaim, claim_id
from hub.domain.deadlines import Clock, ClockStatus, DeadlinePolicy, clocks
from hub.domain.digests import DigestChange, digest_changes
from hub.domain.errors import (
    CaseNotFound,
    ConcurrentUpdate,
    FieldViolation,
    HubError,
    InvalidInput,
    RuleViolation,
)
from hub.domain.identifiers import LOCAL_TZ, CaseNumberAllocator, case_id_time, new_case_id
from hub.domain.lifecycle import CaseState
from hub.domain.pii import mask_applicant
from hub.domain.values import (
    Actor,
    IssueKind,
    LabelledEnum,
    Mode,
    Outcome,
    Party,
    ProcedureKind,
    RatingLevel,
    RectificationOutcome,
    ResultMethod,
    Role,
)
from hub.domain.workdays import WorkCalendar

T = TypeVar("T")
QUERY_CATCH_UP = 2_000  # log entries a list query folds before answering; more is a backlog

EVENT_LABELS = {
    "CaseReceived": "收件",
    "IssueRaised": "登记问题件",
    "ResponsibilityAssigned": "责任认定",
    "IssueResolved": "问题件办结",
    "CaseRated": "评价",
    "BadReviewCallbackMade": "差评回访",
    "BadReviewClosed": "差评处理",
    "RectificationFeedbackRecorded": "整改反馈",
}
_NOT_DETAILS = {
    "originator_id", "originator_version", "originator_topic", "timestamp", "actor", "id", "request_id",
    "origin", "seq", "lamport", "event_id", "route",
}
# Stored codes shown to people by their Chinese label.
_LABELLED: dict[str, tuple[type[LabelledEnum], ...]] = {
    "mode": (Mode,), "outcome": (Outcome, RectificationOutcome), "method": (ResultMethod,),
    "about": (Party,), "party": (Party,), "kind": (ProcedureKind, IssueKind), "score": (RatingLevel,),
}


@dataclass(frozen=True)
class Intake:
    """What receiving a case decided: the case, whether it is new, and (if new) its unsaved claims."""

    case: Case
    created: bool
    claims: tuple[UniqueClaim, ...] = ()


@dataclass(frozen=True)
class HistoryItem:
    version: int
    step: str
    label: str
    actor: Actor
    at: datetime
    state_after: CaseState
    details: dict[str, str]
    origin: str = ""
    seq: int = 0
    event_id: str = ""
    event_hash: str = ""


class CaseHub(Application[UUID]):
    """The application service of one site (its region code is ``site``)."""

    name = "tongban"

    def __init__(
        self,
        *,
        site: str,
        catalogue: Catalogue,
        regions: Regions,
        index: CaseIndex,
        calendar: WorkCalendar | None = None,
        policy: DeadlinePolicy | None = None,
        env: Mapping[str, str] | None = None,
        now: Callable[[], datetime] | None = None,
        router: Router | None = None,
        snapshot_interval: int = 0,
    ) -> None:
        env = dict(env or {})
        if snapshot_interval > 0:  # a snapshot every N events: long cases (and the checkpoint ledger) load fast
            env["IS_SNAPSHOTTING_ENABLED"] = "y"
            intervals = {Case: snapshot_interval, CheckpointLedger: snapshot_interval}
            setattr(self, "snapshotting_intervals", intervals)  # noqa: B010 - a ClassVar upstream
        super().__init__(env=env)
        self.site = site
        self.catalogue = catalogue
        self.regions = regions
        self.index = index
        self.calendar = calendar or WorkCalendar()
        self.policy = policy or DeadlinePolicy()
        self.router = router
        self.now = now or (lambda: datetime.now(UTC))
        self.numbers = CaseNumberAllocator(site)
        self._index_lock = threading.Lock()
        self.listeners: list[Callable[[], None]] = []

    def close(self) -> None:
        """Close the store and the case index (which the hub owns: it was built for it)."""
        try:
            super().close()
        finally:
            self.index.close()

    def _notify(self, recordings: list[Any]) -> None:
        """After every save: wake whoever follows the log (the relays), without them polling hard."""
        for listener in self.listeners:
            listener()

    def save(self, *objs: Any, **kwargs: Any) -> list[Any]:
        """The library's save, with a processing event that checks concrete types first (its runtime
        Protocol checks cost about 30 µs per aggregate on Python 3.11: a tenth of a bulk save)."""
        processing_event = Processing()
        processing_event.collect_events(*objs, **kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        return recordings

    def _record(self, processing_event: ProcessingEvent[UUID]) -> list[Any]:
        """Every save also hands the store the cases' new pair digests, to write in the same
        transaction (the reconciliation index; a store that keeps none ignores them)."""
        changes = _digest_changes(processing_event, self.site)
        if changes:
            processing_event.saved_kwargs["digests"] = changes
        return super()._record(processing_event)

    def construct_mapper(self) -> Mapper[UUID]:
        """The library's mapper with orjson for case events (see case_mapper)."""
        return CaseMapper(super().construct_mapper())

    def construct_recorder(self) -> ProcessRecorder:
        """A process recorder: relays store receipts and their log position in one transaction."""
        return self.factory.process_recorder()

    # ------------------------------------------------------------------ commands
    def receive(self, cmd: ReceiveCase) -> tuple[Case, bool]:
        """Open a case; a repeated request id returns the case it opened (``created`` False)."""
        intake = self.prepare_receive(cmd)
        for _attempt in range(5):
            if not intake.created:
                return intake.case, False
            try:
                self.save(intake.case, *intake.claims)
            except IntegrityError:  # a repeat stored meanwhile is found; else the number was taken: mint another
                intake = self.prepare_receive(cmd)
                continue
            return intake.case, True
        raise HubError("无法分配办件编号，请稍后重试")

    def prepare_receive(self, cmd: ReceiveCase, assume_new: bool = False) -> Intake:
        """Everything ``receive`` decides before writing: the case a repeated request id opened, or a
        new, unsaved case with the claims that keep its request id and case number unique.

        With ``assume_new`` the request id is not looked up: a repeat then shows as an IntegrityError
        when its claim is saved (group commit does this and commits the batch one by one)."""
        self._check_receipt(cmd)
        request_key = f"{self.site}/{cmd.request_id}"
        fingerprint = hashlib.sha256(cmd.model_dump_json(exclude={"request_id"}).encode()).hexdigest()
        existing = None if assume_new else self._case_for_request(request_key, fingerprint)
        if existing is not None:
            return Intake(existing, created=False)
        item = self.catalogue.get(cmd.item_code)
        handling_site, co_sites, route = cmd.handling_site, list(cmd.co_handling_sites), None
        if self.router is not None:
            decided = self.router.route(
                item_code=cmd.item_code, mode=cmd.mode, handling_region=cmd.handling_site,
                co_handling_regions=cmd.co_handling_sites, on=self.now().astimezone(LOCAL_TZ).date(),
            )
            handling_site, co_sites, route = decided.handling_site, list(decided.co_handling_sites), decided.as_data()
        case_id = new_case_id()
        number = self.numbers.next(case_id_time(case_id))
        case = Case.receive(
            case_id=case_id,
            case_number=number,
            request_id=cmd.request_id,
            item=item,
            mode=cmd.mode,
            handling_site=handling_site,
            co_handling_sites=co_sites,
            applicant=cmd.applicant.to_domain(),
            materials=[m.to_domain() for m in cmd.materials],
            applicant_consent=cmd.applicant_consent,
            identity_verified=cmd.identity_verified,
            note=cmd.note,
            actor=cmd.actor.to_domain(),
            route=route,
        )
        claims = (
            UniqueClaim.make("request", request_key, case_id, fingerprint),
            UniqueClaim.make("case-number", number, case_id),
        )
        return Intake(case, created=True, claims=claims)

    def execute(self, cmd: CaseCommand) -> Case:
        """Apply one step to one case. Nothing is written unless every rule passes."""
        case = self.apply_command(cmd, {})
        try:
            self.save(case)
        except IntegrityError:
            raise ConcurrentUpdate(str(cmd.case_id), cmd.expected_version, None) from None
        return case

    def execute_batch(self, cmds: Sequence[CaseCommand]) -> list[Case]:
        """Apply several commands and store all their events in one transaction, or none of them.

        Commands on the same case see each other's effects in order. This is the write path bulk
        loaders build on: one transaction, many cases (group commit, in group_commit.py, is the
        same with each command's failure kept to its own caller).
        """
        loaded: dict[UUID, Case] = {}
        touched = [self.apply_command(cmd, loaded) for cmd in cmds]
        try:
            self.save(*loaded.values())
        except IntegrityError:
            raise ConcurrentUpdate(",".join(str(i) for i in loaded), None, None) from None
        return touched

    def apply_command(self, cmd: CaseCommand, loaded: dict[UUID, Case]) -> Case:
        """Apply one command to its case, loading it once into ``loaded`` (unsaved: the caller saves).

        A command that breaks a rule raises before recording anything, so the case (and any other
        command's events already on it) is left as it was.
        """
        case = loaded.get(cmd.case_id)
        if case is None:
            case = loaded[cmd.case_id] = self.get_case(cmd.case_id)
        if cmd.expected_version is not None and case.version != cmd.expected_version:
            raise ConcurrentUpdate(str(cmd.case_id), cmd.expected_version, case.version)
        cmd.apply(case, self.site)
        return case

    def _check_receipt(self, cmd: ReceiveCase) -> None:
        problems: list[FieldViolation] = []
        if cmd.actor.site != self.site:
            problems.append(FieldViolation("actor.site", f"收件人须属于本站点 {self.site}"))
        if cmd.item_code not in self.catalogue:
            problems.append(FieldViolation("item_code", f"未知事项编码 {cmd.item_code}"))
        for path, code in [("handling_site", cmd.handling_site)] + [
            (f"co_handling_sites.{i}", c) for i, c in enumerate(cmd.co_handling_sites)
        ]:
            if not self.regions.is_valid(code):
                problems.append(FieldViolation(path, f"未知或已撤销的行政区划代码 {code}"))
        if problems:
            raise InvalidInput(problems)
        if cmd.handling_site == self.site:
            raise RuleViolation("SAME_PLACE", "办理地与收件地相同，无需通办")

    def find(self, aggregate_id: UUID, kind: type[T]) -> T | None:
        """The stored aggregate with this id if it is a ``kind``, else None (ledgers, claims, cases)."""
        try:
            found: Any = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, kind) else None

    def _case_for_request(self, request_key: str, fingerprint: str) -> Case | None:
        claim = self.find(claim_id("request", request_key), UniqueClaim)
        if claim is None:
            return None
        if claim.fingerprint != fingerprint:
            raise RuleViolation(
                "REQUEST_ID_REUSED",
                f"请求编号 {request_key.split('/', 1)[1]} 已用于另一份不同的收件请求",
                {"case_id": claim.case_id},
            )
        return self.get_case(UUID(claim.case_id))

    # ------------------------------------------------------------------ queries
    def get_case(self, case_id: UUID) -> Case:
        try:
            case: Any = self.repository.get(case_id)
        except AggregateNotFoundError:
            raise CaseNotFound(str(case_id)) from None
        if not isinstance(case, Case):
            raise CaseNotFound(str(case_id))
        return case

    def clocks(self, case: Case, as_of: datetime | None = None) -> list[Clock]:
        return clocks(case.marks, self.calendar, self.policy, as_of or self.now())

    def history(self, case_id: UUID) -> list[HistoryItem]:
        """The case's stored events, oldest first, with the state each one left the case in."""
        self.get_case(case_id)
        items: list[HistoryItem] = []
        case: Any = None
        stored: Any
        for stored in self.repository.event_store.get(case_id):
            case = stored.mutate(case)
            shared = next(e.shared for e in case.log if e.version == stored.originator_version)
            name = type(stored).__name__
            step = getattr(stored, "STEP", None)
            items.append(
                HistoryItem(
                    version=stored.originator_version,
                    step=name,
                    label=step.label if step is not None else EVENT_LABELS.get(name, name),
                    actor=_actor(getattr(stored, "actor", {})),
                    at=stored.timestamp,
                    state_after=case.state,
                    details=_details(stored),
                    origin=shared.origin,
                    seq=shared.seq,
                    event_id=shared.event_id,
                    event_hash=shared.hash(),
                )
            )
        return items

    def list_cases(self, query: CaseQuery) -> list[CaseRow]:
        self.refresh_index(limit=QUERY_CATCH_UP)  # a staff member sees what they just did; a backlog is the follower's
        return self.index.query(query)

    def index_lag(self) -> int:
        """Log entries the case read model has not folded yet."""
        return max(int(self.recorder.max_notification_id() or 0) - self.index.position(), 0)

    def refresh_index(self, batch: int = 500, limit: int | None = None) -> bool:
        """Bring the read model toward the end of the event log, at most ``limit`` log entries (None: all
        the way); True once it is there. The lock is held one batch at a time, so nobody waits for more
        than one batch of another caller's catch-up (a bulk load is a million cases to fold)."""
        read = 0
        while limit is None or read < limit:
            with self._index_lock:
                position = self.index.position()
                wanted = batch if limit is None else min(batch, limit - read)
                notifications = self.recorder.select_notifications(start=position + 1, limit=wanted)
                if not notifications:
                    return True
                self.index.upsert(self._index_rows(notifications), notifications[-1].id)
            read += len(notifications)
        return False

    def _index_rows(self, notifications: Sequence[Any]) -> list[CaseRow]:
        """The rows of the cases these log entries touch. A case whose entries here begin with its first
        event is folded from them (a bulk load's cases: no query each); any other is loaded."""
        entries: dict[UUID, list[Any]] = {}
        for n in notifications:
            if n.topic.startswith("tongban.case:"):
                entries.setdefault(UUID(str(n.originator_id)), []).append(n)
        rows = []
        for case_id, own in entries.items():
            case: Any = None
            if own[0].originator_version == 1:
                for stored in own:
                    event: Any = self.mapper.to_domain_event(stored)
                    case = event.mutate(case)
            rows.append(self.row(case if case is not None else self.get_case(case_id)))
        return rows

    def row(self, case: Case) -> CaseRow:
        all_clocks = self.clocks(case)
        open_clocks = [c for c in all_clocks if c.is_open and c.due is not None]
        return CaseRow(
            case_id=str(case.id),
            case_number=case.case_number,
            state=case.state.value,
            item_code=str(case.item["code"]),
            item_name=str(case.item["name"]),
            receiving_site=case.receiving_site,
            handling_site=case.handling_site,
            co_handling_sites=tuple(case.co_handling_sites),
            version=case.version,
            received_at=case.created_on.isoformat(),
            updated_at=case.modified_on.isoformat(),
            next_due=min((c.due for c in open_clocks if c.due), default=None),
            next_warn=min((c.warn_from for c in open_clocks if c.warn_from), default=None),
            due_provisional=any(c.provisional for c in open_clocks),
            review=_review(case, all_clocks),
        )


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
        origin = getattr(event, "origin", "")
        if origin:
            per_case = added.setdefault(event.originator_id, {})
            per_case[origin] = per_case.get(origin, 0) + 1
    changes: list[DigestChange] = []
    for case_id, per_origin in added.items():
        case = processing_event.aggregates.get(case_id)
        if isinstance(case, Case):
            changes.extend(digest_changes(case.id, site, case.sites, case.chains, per_origin))
    return changes


def _review(case: Case, case_clocks: list[Clock]) -> str:
    if case.rating is None or not case.rating["bad_review"]:
        return ""
    if case.rating["outcome"] is None:
        return "open"
    rectification = next((c for c in case_clocks if c.code == "rectification"), None)
    return "late" if rectification is not None and rectification.status is ClockStatus.LATE else "on_time"


def _actor(data: Mapping[str, str]) -> Actor:
    return actor_from(dict(data)) if data else Actor("", Role.SYSTEM, "")


def _details(stored: Any) -> dict[str, str]:
    payload = dict(getattr(stored, "details", None) or {})
    if not payload:
        payload = {k: v for k, v in vars(stored).items() if k not in _NOT_DETAILS}
    if "applicant" in payload:
        applicant = mask_applicant(payload.pop("applicant"))
        payload["applicant"] = f"{applicant['name']} {applicant['id_number']}"
    if "item" in payload:
        payload["item"] = f"{payload['item']['code']} {payload['item']['name']}"
    return {k: _label(k, v) for k, v in payload.items() if v not in ("", None, [], {})}


def _label(key: str, value: Any) -> str:
    for enum in _LABELLED.get(key, ()):
        try:
            return enum(str(value)).label
        except ValueError:
            continue
    if isinstance(value, bool):
        return "是" if value else "否"
    return _text(value)


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "、".join(_text(v) for v in value)
    if isinstance(value, dict):
        return str(value.get("name") or ", ".join(f"{k}={v}" for k, v in value.items()))
    return str(value)
