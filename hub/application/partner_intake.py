"""PartnerIntake: a partner's events checked whole before anything of them is stored.

``CaseSharing.ingest`` calls ``check`` first; one refused event refuses the batch (the sender's
order per case matters, so nothing after a bad event could be applied anyway). Each refusal is a
HubError with a stable reason code (``REFUSAL_REASONS``) and the event id in its metadata, so the
adapters can answer, log and count it per partner without reading its message.

The checks, in order, for each event:

1. the type is one we know (UNKNOWN_EVENT_TYPE) at the version we store it in (UNKNOWN_TYPE_VERSION),
   both FAILED_PRECONDITION: a newer partner, not a bad one;
2. the envelope: event id a UUID, seq in [1, max_seq], Lamport in [seq, seq + max_lamport_jump]
   (an origin's k-th event has seen at least its own k-1; more than the jump would mean more events
   of other sites than any case has, and would let a sender push every later clock towards overflow),
   a case's receipt is (seq 1, Lamport 1) as ``Case.receive`` records it, the time between
   ``earliest`` and now + ``max_clock_skew`` (no lower bound nearer than that: redeliveries and
   reconciliation repairs legitimately carry events years old);
3. the actor is well formed and works for the origin (ACTOR_NOT_ORIGIN, PERMISSION_DENIED);
4. a receipt (CaseReceived) comes from a configured partner (NOT_A_PARTNER, PERMISSION_DENIED):
   who sends, before what it says;
5. the data has no key of the envelope or of the store (IDENTITY_OVERRIDE) and fits the type's
   schema (BAD_DATA; event_schema.py);
6. a receipt is under an agreement we hold for its item and mode on the day it was received
   (NO_AGREEMENT, PERMISSION_DENIED).

Without partners or agreements given (in-memory tests), 4 or 6 is skipped; the composition root always
gives both. (That a receipt names the sender as receiving site and us among its handling sites is
CaseSharing's routing check, NOT_ROUTED.)

The checks are pure (the clock is an argument) and read nothing from the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID

from pydantic import BaseModel, ValidationError

from hub.application.event_schema import DATA_SCHEMAS, ActorData, CaseReceivedData
from hub.application.ports import Agreements, Catalogue
from hub.domain.case import EVENT_TYPES, JOINT_LEGAL_DAYS
from hub.domain.errors import FieldViolation, HubError, InvalidInput, NotPermitted, RuleViolation
from hub.domain.identifiers import LOCAL_TZ
from hub.domain.shared import SharedEvent
from hub.domain.values import Mode

# The reason codes a partner's event can be refused with: a bounded set (metric labels).
REFUSAL_REASONS = frozenset({
    # wire (adapters/exchange/wire.py) and transport
    "UNDECODABLE", "JSON_TOO_DEEP", "JSON_TOO_LARGE", "HASH_MISMATCH", "TIMESTAMP_OUT_OF_RANGE", "BATCH_TOO_LARGE",
    "IMPERSONATION",
    # this module
    "UNKNOWN_EVENT_TYPE", "UNKNOWN_TYPE_VERSION", "BAD_EVENT_ID", "BAD_SEQ", "BAD_LAMPORT", "CLOCK_SKEW",
    "BAD_ACTOR", "ACTOR_NOT_ORIGIN", "IDENTITY_OVERRIDE", "BAD_DATA", "NOT_A_PARTNER", "NO_AGREEMENT",
    "UNKNOWN_ITEM", "ITEM_MISMATCH", "MODE_NOT_OFFERED",
    # the case's own history (hub/domain/case.py admit)
    "OUT_OF_ORDER", "COMMITMENT_EXCEEDS_LEGAL_LIMIT",
    # case_sharing.py
    "NOT_ROUTED",
})
OTHER_REASON = "OTHER"

# Keys of the envelope and of the event store's own record: data may never carry one (Case.ingest
# passes data as keyword arguments beside the identity, so such a key would replace it).
RESERVED_KEYS = frozenset({
    "originator_id", "originator_version", "originator_topic", "timestamp", "topic", "id",
    "origin", "seq", "lamport", "event_id", "actor", "case_id", "type", "type_version", "occurred_at", "hash",
})
KNOWN_VERSIONS: dict[str, int] = {name: cls.class_version for name, cls in EVENT_TYPES.items()}


def refusal_reason(error: BaseException) -> str:
    """The metric label of a refusal: its reason code if it is one of ours, else OTHER."""
    if isinstance(error, HubError) and error.reason in REFUSAL_REASONS:
        return error.reason
    return OTHER_REASON


class EventInvalid(InvalidInput):
    """A partner's event is malformed (INVALID_ARGUMENT), with a reason code and the event's id."""

    def __init__(self, reason: str, event_id: str, violations: Iterable[FieldViolation]) -> None:
        super().__init__(violations)
        self.reason = reason
        self.metadata = {"event_id": event_id[:64]}

    @classmethod
    def at(cls, reason: str, event_id: str, field: str, description: str) -> EventInvalid:
        return cls(reason, event_id, [FieldViolation(field, description)])


class EventNotUnderstood(RuleViolation):
    """A type or version this site does not know (FAILED_PRECONDITION): the partner may be newer."""

    def __init__(self, reason: str, event_id: str, message: str, metadata: dict[str, str]) -> None:
        super().__init__(reason, message, {"event_id": event_id[:64], **metadata})


class EventNotPermitted(NotPermitted):
    """The partner may not send this event (PERMISSION_DENIED), with a reason code."""

    def __init__(self, reason: str, event_id: str, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = {"event_id": event_id[:64], **(metadata or {})}


@dataclass(frozen=True)
class IntakeBounds:
    """The envelope's bounds ([exchange] max_clock_skew_seconds, max_lamport_jump)."""

    max_clock_skew: timedelta = timedelta(seconds=300)
    earliest: datetime = datetime(2020, 1, 1, tzinfo=UTC)  # before any 跨省通办 hub ran
    max_seq: int = 100_000  # events of one origin in one case
    max_lamport_jump: int = 100_000  # events of the other sites an origin's event may have seen


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PartnerIntake:
    """The checks of one site's partner port; ``partners`` None and ``agreements`` None skip step 5."""

    site: str
    partners: frozenset[str] | None = None
    agreements: Agreements | None = None
    catalogue: Catalogue | None = None  # ours: the limits we answer for come from it, not from the partner
    bounds: IntakeBounds = field(default_factory=IntakeBounds)
    now: Callable[[], datetime] = _utc_now

    def check(self, sender: str, events: Sequence[SharedEvent]) -> None:
        """Refuse the batch (the first refusal) unless every event passes."""
        now = self.now()
        for event in events:
            self.check_event(sender, event, now)

    def check_event(self, sender: str, event: SharedEvent, now: datetime | None = None) -> None:
        self._check_type(event)
        self._check_envelope(event, now or self.now())
        self._check_actor(event)
        opens = event.type == "CaseReceived"
        if opens and self.partners is not None and sender not in self.partners:  # who, before what it says
            raise EventNotPermitted("NOT_A_PARTNER", event.event_id, f"站点 {sender} 不是本站配置的合作站点",
                                    {"sender": sender})
        data = self.check_data(event)
        if isinstance(data, CaseReceivedData):
            self._check_agreement(sender, event, data)

    def _check_type(self, event: SharedEvent) -> None:
        known = KNOWN_VERSIONS.get(event.type)
        if known is None:
            raise EventNotUnderstood("UNKNOWN_EVENT_TYPE", event.event_id, f"未知的事件类型 {event.type[:64]!r}",
                                     {"type": event.type[:64]})
        if event.type_version != known:
            raise EventNotUnderstood(
                "UNKNOWN_TYPE_VERSION", event.event_id,
                f"事件类型 {event.type} 的版本 {event.type_version} 本站不认识（本站为 {known}）",
                {"type": event.type, "type_version": str(event.type_version), "known": str(known)})

    def _check_envelope(self, event: SharedEvent, now: datetime) -> None:
        b, eid = self.bounds, event.event_id
        try:
            canonical = str(UUID(eid)) == eid
        except ValueError:
            canonical = False
        if not canonical:
            raise EventInvalid.at("BAD_EVENT_ID", "", "event_id", "事件编号须为小写 UUID")
        if not 1 <= event.seq <= b.max_seq:
            raise EventInvalid.at("BAD_SEQ", eid, "seq", f"序号须在 1 到 {b.max_seq} 之间")
        if not event.seq <= event.lamport <= event.seq + b.max_lamport_jump:
            raise EventInvalid.at("BAD_LAMPORT", eid, "lamport",
                                  f"逻辑时钟须在序号与序号加 {b.max_lamport_jump} 之间")
        if event.type == "CaseReceived" and (event.seq, event.lamport) != (1, 1):
            raise EventInvalid.at("BAD_SEQ", eid, "seq", "收件事件的序号与逻辑时钟须为 1")
        at = event.occurred_at
        if at.tzinfo is None or at < b.earliest:
            raise EventInvalid.at("TIMESTAMP_OUT_OF_RANGE", eid, "occurred_at",
                                  f"发生时间不能早于 {b.earliest.date().isoformat()}")
        if at > now + b.max_clock_skew:
            raise EventInvalid.at("CLOCK_SKEW", eid, "occurred_at",
                                  f"发生时间晚于本站时间超过 {int(b.max_clock_skew.total_seconds())} 秒")

    def _check_actor(self, event: SharedEvent) -> None:
        try:
            actor = ActorData.model_validate(event.actor)
        except ValidationError as error:
            raise EventInvalid("BAD_ACTOR", event.event_id, _violations(error, "actor")) from None
        if actor.site != event.origin:
            raise EventNotPermitted(
                "ACTOR_NOT_ORIGIN", event.event_id,
                f"站点 {event.origin} 的事件只能由本站工作人员办理（操作人属于 {actor.site}）",
                {"origin": event.origin, "actor_site": actor.site})

    def check_data(self, event: SharedEvent) -> BaseModel:
        """The data alone: no reserved key, and the type's schema (the type must be known); the data as
        its schema read it."""
        clash = sorted(RESERVED_KEYS & event.data.keys())
        if clash:
            raise EventInvalid.at("IDENTITY_OVERRIDE", event.event_id, f"data.{clash[0]}",
                                  "数据不能覆盖事件身份字段")
        try:
            return DATA_SCHEMAS[event.type].model_validate(event.data)
        except ValidationError as error:
            raise EventInvalid("BAD_DATA", event.event_id, _violations(error, "data")) from None

    def _check_agreement(self, sender: str, event: SharedEvent, data: CaseReceivedData) -> None:
        on = event.occurred_at.astimezone(LOCAL_TZ).date()
        if self.agreements is not None and not self.agreements.covers(sender, data.item.code, data.mode, on):
            raise EventNotPermitted(
                "NO_AGREEMENT", event.event_id,
                f"本站与 {sender} 没有在 {on.isoformat()} 有效、涵盖事项 {data.item.code}"
                f"（{data.mode.label}）的通办协议",
                {"sender": sender, "item": data.item.code, "mode": data.mode.value})
        self._check_item(data, event.event_id)


    def _check_item(self, data: CaseReceivedData, event_id: str) -> None:
        """The item as our catalogue has it: its name, department, type and limits (the deadlines the
        handling site answers for are its own, whatever the partner's copy says), and the mode offered."""
        if self.catalogue is None:
            return
        code = data.item.code
        if code not in self.catalogue:
            raise EventNotPermitted("UNKNOWN_ITEM", event_id, f"本站事项目录中没有事项 {code}", {"item": code})
        ours = self.catalogue.get(code)
        if data.mode not in ours.modes:
            raise EventNotPermitted("MODE_NOT_OFFERED", event_id, f"事项「{ours.name}」不支持「{data.mode.label}」模式",
                                    {"item": code, "mode": data.mode.value})
        legal = JOINT_LEGAL_DAYS if data.mode is Mode.JOINT else ours.legal_days
        expected = (ours.name, ours.department, legal, ours.committed_days, ours.case_type)
        claimed = (data.item.name, data.item.department, data.item.legal_days, data.item.committed_days,
                   data.item.case_type)
        if claimed != expected:
            raise EventNotPermitted("ITEM_MISMATCH", event_id, f"事项 {code} 的名称、部门或时限与本站事项目录不符",
                                    {"item": code})


def _violations(error: ValidationError, prefix: str) -> list[FieldViolation]:
    out = []
    for e in error.errors(include_url=False, include_input=False)[:10]:
        path = ".".join([prefix, *(str(p) for p in e["loc"])])
        out.append(FieldViolation(path[:200], str(e["msg"]).removeprefix("Value error, ")[:200]))
    return out
