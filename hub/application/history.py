"""A case's history as staff read it: each stored event, oldest first, with its Chinese label, who
took it, the state it left the case in, and its details shown by label (PII masked)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from hub.application.ports import SiteLog
from hub.domain.case import Case, actor_from
from hub.domain.event_labels import event_label
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


def case_history(log: SiteLog, case_id: UUID) -> list[HistoryItem]:
    """The case's stored events, oldest first, with the state each one left the case in."""
    log.get_case(case_id)  # CaseNotFound for anything that is not a case
    items: list[HistoryItem] = []
    case: Any = None
    for stored in log.events_of(case_id):
        assert isinstance(stored, Case.Event)
        case = stored.mutate(case)
        shared = next(e.shared for e in case.log if e.version == stored.originator_version)
        name = type(stored).__name__
        items.append(
            HistoryItem(
                version=stored.originator_version,
                step=name,
                label=event_label(name),
                actor=_actor(stored.actor),
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


def _actor(data: Mapping[str, str]) -> Actor:
    return actor_from(dict(data)) if data else Actor("", Role.SYSTEM, "")


def _details(stored: Case.Event) -> dict[str, str]:
    payload = dict(stored.details) if isinstance(stored, Case.StepTaken) and stored.details else {}
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
