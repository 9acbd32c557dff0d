"""Genuine partner events of every type, as our own hubs record them: the material the partner-port
tests check and mutate (tests/unit/test_partner_intake.py, tests/integration/test_partner_port.py)."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.partner_intake import PartnerIntake
from hub.domain.case import EVENT_TYPES
from hub.domain.shared import SharedEvent
from routing.agreements import Agreements, SiteAgreements
from routing.catalogue import Catalogue
from tests.builders import CLERK, HANDLER, HANDLING, RECEIVING, SUPERVISOR, actor_data, receive_request
from tests.memory_sites import hub, relay, step


def intake(site: str, partners: frozenset[str] = frozenset({RECEIVING, HANDLING})) -> PartnerIntake:
    """The intake as the composition root builds it: configured partners, the seed agreements."""
    return PartnerIntake(site, partners=partners - {site}, agreements=SiteAgreements(site, Agreements.load()),
                         catalogue=Catalogue.load())


@dataclass
class Lifecycle:
    """Two in-memory sites that took cases through every event type, relaying after each step."""

    a: CaseHub  # RECEIVING
    b: CaseHub  # HANDLING
    cases: list[UUID]

    def events(self) -> list[SharedEvent]:
        return [e for case_id in self.cases for e in self.a.get_case(case_id).shared_events()]

    def by_type(self) -> dict[str, SharedEvent]:
        return {e.type: e for e in self.events()}


def lifecycle() -> Lifecycle:
    a, b = hub(RECEIVING), hub(HANDLING)
    clerk, handler = actor_data(CLERK), actor_data(HANDLER)

    def at(h: CaseHub, command: type[c.CaseCommand], case_id: UUID, actor: dict[str, str], **fields: object) -> None:
        step(h, command, case_id, actor, **fields)
        relay(a, b)
        relay(b, a)

    def new(request_id: str) -> UUID:
        case, _ = a.receive(c.parse(c.ReceiveCase, receive_request(request_id)))
        relay(a, b)
        return case.id

    full = new("life-full")
    at(a, c.ForwardCase, full, clerk, courier="EMS", tracking_number="1173945026718")
    at(b, c.SignCase, full, handler)
    at(b, c.RequestSupplement, full, handler, missing_materials=["参保缴费凭证"], note="请补充")
    at(a, c.SubmitSupplement, full, clerk, materials=[{"name": "参保缴费凭证", "copies": 2}])
    at(b, c.AcceptCase, full, handler)  # the item's usual commitment is filled in
    at(b, c.SuspendCase, full, handler, reason="等待协查")
    at(b, c.ResumeCase, full, handler)
    at(b, c.StartSpecialProcedure, full, handler, kind="expert_review", reason="需专家评审")
    at(b, c.EndSpecialProcedure, full, handler, conclusion="通过")
    at(a, c.RaiseIssue, full, clerk, kind="lost_parcel", description="材料寄递丢失\n已报快递公司")
    at(b, c.AssignResponsibility, full, actor_data(SUPERVISOR), issue_id=f"Q1-{RECEIVING}", party="courier", note="")
    at(b, c.ResolveIssue, full, handler, issue_id=f"Q1-{RECEIVING}", resolution="已补寄")
    at(b, c.DecideCase, full, handler, outcome="approved", decision_number="苏人社〔2026〕1号")
    at(b, c.DispatchResult, full, handler, method="courier_to_applicant", courier="EMS", tracking_number="EMS1")
    at(a, c.ConfirmDelivery, full, clerk, received_by="王建国")
    at(b, c.ArchiveCase, full, handler)
    at(a, c.RateCase, full, clerk, score=2, reason="太慢", about="handling_place")
    at(b, c.RecordCallback, full, handler, note="已回访")
    at(b, c.CloseBadReview, full, handler, outcome="rectified", note="已整改")
    at(a, c.RecordFeedback, full, clerk, satisfied=True)

    refused = new("life-refused")
    at(a, c.RefuseIntake, refused, clerk, reasons=["材料不齐且无法当场补正"])
    rejected = new("life-rejected")
    at(a, c.ForwardCase, rejected, clerk)
    at(b, c.SignCase, rejected, handler)
    at(b, c.RejectCase, rejected, handler, reason="不属于本机关职权范围")
    returned = new("life-returned")
    at(a, c.ForwardCase, returned, clerk)
    at(b, c.SignCase, returned, handler)
    at(b, c.ReturnCase, returned, handler, reason="流转错误")
    at(a, c.WithdrawCase, returned, clerk, reason="申请人主动撤回")
    life = Lifecycle(a, b, [full, refused, rejected, returned])
    assert set(life.by_type()) == set(EVENT_TYPES), set(EVENT_TYPES) - set(life.by_type())
    return life
