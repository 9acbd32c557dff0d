"""Wire <-> hub translation. The wire contract (protos/) and the domain evolve separately; this is
the only place that knows both.

Requests become plain dicts of domain values and are validated by the hub's command models, so
the wire layer never decides what is valid. Enum values are matched by member name
(``MODE_PROXY`` <-> ``Mode.PROXY``); tests/unit/test_wire_contract.py keeps the two in step.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from hub.application.history import HistoryItem
from hub.application.ports import CaseRow, DueFilter, due_status
from hub.domain.case import Case, actor_data
from hub.domain.deadlines import Clock, ClockStatus, deemed_accepted
from hub.domain.lifecycle import CaseState
from hub.domain.pii import mask_applicant
from hub.domain.values import (
    ApplicantKind,
    IdType,
    IssueKind,
    Mode,
    Outcome,
    Party,
    ProcedureKind,
    RatingLevel,
    RectificationOutcome,
    ResultMethod,
    Role,
)
from tongban.v1 import case_pb2 as pb

DOMAIN_ENUMS: dict[str, type[Enum]] = {
    "tongban.v1.CaseState": CaseState,
    "tongban.v1.Mode": Mode,
    "tongban.v1.Role": Role,
    "tongban.v1.Party": Party,
    "tongban.v1.ApplicantKind": ApplicantKind,
    "tongban.v1.IdType": IdType,
    "tongban.v1.Outcome": Outcome,
    "tongban.v1.ResultMethod": ResultMethod,
    "tongban.v1.ProcedureKind": ProcedureKind,
    "tongban.v1.IssueKind": IssueKind,
    "tongban.v1.RectificationOutcome": RectificationOutcome,
    "tongban.v1.ClockStatus": ClockStatus,
    "tongban.v1.DueFilter": DueFilter,
}
_INVALID_ENUM = "\x00invalid"


def enum_prefix(descriptor: EnumDescriptor) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", descriptor.name).upper() + "_"


def request_data(message: Message) -> dict[str, Any]:
    """The fields a client set, as a dict of domain values (unset and UNSPECIFIED are left out)."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        else:
            converted = _value(field, value)
            if converted is not None:
                out[field.name] = converted
    return out


def _value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return request_data(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        return domain_value(field.enum_type, value)
    return value


def domain_value(descriptor: EnumDescriptor, number: int) -> str | None:
    """Wire enum number -> domain enum value; None for UNSPECIFIED, a marker that fails validation
    for numbers this version does not know."""
    if number == 0:
        return None
    known = descriptor.values_by_number.get(number)
    domain = DOMAIN_ENUMS.get(descriptor.full_name)
    if known is None or domain is None:
        return _INVALID_ENUM
    member = known.name.removeprefix(enum_prefix(descriptor))
    return str(domain[member].value) if member in domain.__members__ else _INVALID_ENUM


def wire_enum(descriptor: EnumDescriptor, member: Enum | None) -> int:
    if member is None:
        return 0
    return int(descriptor.values_by_name[enum_prefix(descriptor) + member.name].number)


def timestamp(at: datetime | None) -> Timestamp | None:
    if at is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def actor_message(actor: Mapping[str, str]) -> pb.Actor:
    """An event's stored actor (staff id, role value, site, name) for the wire."""
    role = actor.get("role", "")
    return pb.Actor(
        staff_id=actor.get("staff_id", ""),
        role=wire_enum(pb.Role.DESCRIPTOR, Role(role)) if role else 0,
        site=actor.get("site", ""),
        name=actor.get("name", ""),
    )


def clock_message(clock: Clock) -> pb.Clock:
    return pb.Clock(
        code=clock.code,
        label=clock.label,
        holder=wire_enum(pb.Party.DESCRIPTOR, clock.holder),
        status=wire_enum(pb.ClockStatus.DESCRIPTOR, clock.status),
        started_at=timestamp(clock.started_at),
        due_date=clock.due.isoformat() if clock.due else "",
        warn_from=clock.warn_from.isoformat() if clock.warn_from else "",
        limit_workdays=clock.limit_days or 0,
        provisional=clock.provisional,
        stopped_at=timestamp(clock.stopped_at),
        subject=clock.subject,
    )


def case_message(case: Case, clocks: list[Clock]) -> pb.Case:
    """A case for the wire; the applicant's PII is always masked here."""
    applicant = mask_applicant(case.applicant)
    message = pb.Case(
        case_id=str(case.id),
        case_number=case.case_number,
        version=case.version,
        state=wire_enum(pb.CaseState.DESCRIPTOR, case.state),
        state_label=case.state.label,
        item_code=str(case.item["code"]),
        item_name=str(case.item["name"]),
        mode=wire_enum(pb.Mode.DESCRIPTOR, case.mode),
        receiving_site=case.receiving_site,
        handling_site=case.handling_site,
        co_handling_sites=case.co_handling_sites,
        department=str(case.item["department"]),
        applicant=pb.Applicant(
            kind=wire_enum(pb.ApplicantKind.DESCRIPTOR, ApplicantKind(applicant["kind"])),
            name=applicant["name"],
            id_type=wire_enum(pb.IdType.DESCRIPTOR, IdType(applicant["id_type"])),
            id_number=applicant["id_number"],
            phone=applicant.get("phone", ""),
            address=applicant.get("address", ""),
        ),
        materials=[pb.Material(**m) for m in case.materials],
        received_at=timestamp(case.created_on),
        updated_at=timestamp(case.modified_on),
        committed_days=case.committed_days or 0,
        outcome=wire_enum(pb.Outcome.DESCRIPTOR, case.outcome),
        clocks=[clock_message(c) for c in clocks],
        issues=[
            pb.Issue(
                issue_id=issue_id,
                kind=wire_enum(pb.IssueKind.DESCRIPTOR, IssueKind(issue["kind"])),
                description=issue["description"],
                responsible=wire_enum(
                    pb.Party.DESCRIPTOR, Party(issue["responsible"]) if issue["responsible"] else None
                ),
                resolved=issue["resolved"],
                resolution=issue["resolution"],
                raised_at=timestamp(issue["raised_at"]),
            )
            for issue_id, issue in case.issues.items()
        ],
        result_reference=case.result.get("licence_reference") or case.result.get("tracking_number", ""),
        deemed_accepted=deemed_accepted(clocks),
        conflicts=[f"{c['type']}@{c['origin']}: {c['reason']}" for c in case.conflicts],
    )
    if case.rating is not None:
        rating = case.rating
        feedback = rating.get("feedback") or {}
        message.rating.CopyFrom(
            pb.Rating(
                score=rating["score"],
                label=RatingLevel.from_score(rating["score"]).label,
                reason=rating["reason"],
                about=wire_enum(pb.Party.DESCRIPTOR, Party(rating["about"])),
                bad_review=rating["bad_review"],
                callback_done=rating["callback_done"],
                outcome=wire_enum(
                    pb.RectificationOutcome.DESCRIPTOR,
                    RectificationOutcome(rating["outcome"]) if rating["outcome"] else None,
                ),
                feedback_recorded=bool(feedback),
                feedback_satisfied=bool(feedback.get("satisfied", False)),
            )
        )
    return message


def history_message(item: HistoryItem) -> pb.HistoryEntry:
    return pb.HistoryEntry(
        version=item.version,
        step=item.step,
        step_label=item.label,
        actor=actor_message(actor_data(item.actor)),
        at=timestamp(item.at),
        state_after=wire_enum(pb.CaseState.DESCRIPTOR, item.state_after),
        details=item.details,
        origin_site=item.origin,
        seq=item.seq,
        event_id=item.event_id,
        event_hash=item.event_hash,
    )


def receipt_message(receipt: dict[str, Any]) -> Any:
    from tongban.v1 import case_service_pb2 as svc

    return svc.DeliveryReceipt(
        partner_site=str(receipt["partner"]),
        origin_site=str(receipt["origin"]),
        stored_through_seq=int(receipt["stored_through"]),
        chain_head=str(receipt["chain_head"]),
        matched=bool(receipt["matched"]),
        status=str(receipt["status"]),
        channel=str(receipt["channel"]),
        recorded_at=timestamp(receipt.get("recorded_at")),
    )


def summary_message(row: CaseRow, as_of: date) -> Any:
    from tongban.v1 import case_service_pb2 as svc

    state = CaseState(row.state)
    return svc.CaseSummary(
        case_id=row.case_id,
        case_number=row.case_number,
        state=wire_enum(pb.CaseState.DESCRIPTOR, state),
        state_label=state.label,
        item_code=row.item_code,
        item_name=row.item_name,
        receiving_site=row.receiving_site,
        handling_site=row.handling_site,
        version=row.version,
        next_due_date=row.next_due.isoformat() if row.next_due else "",
        due_status=wire_enum(pb.ClockStatus.DESCRIPTOR, due_status(row, as_of)),
        received_at=row.received_at,
    )
