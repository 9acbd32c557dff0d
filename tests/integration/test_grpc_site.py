"""A site over real gRPC on SQLite and PostgreSQL: lifecycle, restart, races, bad input, idempotency.

Every step is taken by staff signed in at the site that may take it: the receiving site's clerk at
410400's staff port, the handler at 320500's (a second site), the events relayed between them.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from adapters.grpc.errors import error_info, field_violations
from tests.builders import CLERK, HANDLER, HANDLING, ID_NUMBER, RECEIVING
from tests.integration.conftest import APPLICANT_CHANNEL, RunningSite, SitePair
from tongban.v1 import case_pb2 as pb
from tongban.v1 import case_service_pb2 as svc

WIRE_CLERK = pb.Actor(staff_id=CLERK.staff_id, role=pb.ROLE_WINDOW_CLERK, site=RECEIVING, name=CLERK.name)
WIRE_HANDLER = pb.Actor(staff_id=HANDLER.staff_id, role=pb.ROLE_HANDLER, site=HANDLING, name=HANDLER.name)
WIRE_APPLICANT = pb.Actor(staff_id=APPLICANT_CHANNEL.staff_id, role=pb.ROLE_APPLICANT, site=RECEIVING)


def receive_request(request_id: str | None = None, **changes: Any) -> svc.ReceiveCaseRequest:
    request = svc.ReceiveCaseRequest(
        request_id=uuid.uuid4().hex if request_id is None else request_id,
        actor=WIRE_CLERK,
        item_code="KSTB-006",
        mode=pb.MODE_PROXY,
        handling_site=HANDLING,
        applicant=pb.Applicant(kind=pb.APPLICANT_KIND_PERSON, name="王建国", id_type=pb.ID_TYPE_RESIDENT_ID,
                               id_number=ID_NUMBER, phone="13837512345", address="平顶山市新华区建设路 18 号"),
        materials=[pb.Material(name="居民身份证", copies=1)],
        applicant_consent=True,
        identity_verified=True,
    )
    for key, value in changes.items():
        if value is None:
            request.ClearField(key)
        elif isinstance(value, pb.Applicant | pb.Actor):
            getattr(request, key).CopyFrom(value)
        else:
            setattr(request, key, value)
    return request


def call(site: RunningSite, rpc: str, **fields: Any) -> pb.Case:
    """``rpc`` signed in as the request's actor at ``site`` (its first account when none is named)."""
    actor = fields.get("actor")
    stub = site.stubs[actor.staff_id] if actor is not None else site.stub
    return getattr(stub, rpc)(getattr(svc, f"{rpc}Request")(**fields), timeout=10).case


def take(pair: SitePair, rpc: str, actor: pb.Actor, **fields: Any) -> pb.Case:
    """A step at the actor's own site, after both sites have each other's events."""
    pair.sync()
    return call(pair.at(actor.site), rpc, actor=actor, **fields)


def stored_events(site: RunningSite) -> int:
    return int(site.hub.recorder.max_notification_id() or 0)


LIFECYCLE: list[tuple[str, pb.Actor, dict[str, Any], int]] = [
    ("ForwardCase", WIRE_CLERK, {"courier": "EMS", "tracking_number": "1173945026718"}, pb.CASE_STATE_FORWARDED),
    ("SignCase", WIRE_HANDLER, {}, pb.CASE_STATE_PENDING_ACCEPTANCE),
    ("RequestSupplement", WIRE_HANDLER, {"missing_materials": ["参保缴费凭证"]}, pb.CASE_STATE_AWAITING_SUPPLEMENT),
    ("SubmitSupplement", WIRE_CLERK, {"materials": [pb.Material(name="参保缴费凭证", copies=1)]},
     pb.CASE_STATE_PENDING_ACCEPTANCE),
    ("AcceptCase", WIRE_HANDLER, {"committed_days": 10}, pb.CASE_STATE_IN_REVIEW),
    ("SuspendCase", WIRE_HANDLER, {"reason": "等待原参保地协查"}, pb.CASE_STATE_SUSPENDED),
    ("ResumeCase", WIRE_HANDLER, {}, pb.CASE_STATE_IN_REVIEW),
    ("StartSpecialProcedure", WIRE_HANDLER, {"kind": pb.PROCEDURE_KIND_EXPERT_REVIEW}, pb.CASE_STATE_SPECIAL_PROCEDURE),
    ("EndSpecialProcedure", WIRE_HANDLER, {"conclusion": "通过"}, pb.CASE_STATE_IN_REVIEW),
    ("DecideCase", WIRE_HANDLER, {"outcome": pb.OUTCOME_APPROVED}, pb.CASE_STATE_DECIDED),
    ("DispatchResult", WIRE_HANDLER, {"method": pb.RESULT_METHOD_ELECTRONIC_LICENCE, "licence_reference": "DZZZ-1"},
     pb.CASE_STATE_RESULT_IN_TRANSIT),
    ("ConfirmDelivery", WIRE_CLERK, {"received_by": "王建国"}, pb.CASE_STATE_DELIVERED),
    ("ArchiveCase", WIRE_HANDLER, {}, pb.CASE_STATE_ARCHIVED),
    ("RateCase", WIRE_APPLICANT, {"score": 1, "reason": "等太久", "about": pb.PARTY_HANDLING_PLACE},
     pb.CASE_STATE_ARCHIVED),
    ("RecordCallback", WIRE_HANDLER, {"note": "已回访"}, pb.CASE_STATE_ARCHIVED),
    ("CloseBadReview", WIRE_HANDLER, {"outcome": pb.RECTIFICATION_OUTCOME_EXPLAINED, "note": "协查耗时已解释"},
     pb.CASE_STATE_ARCHIVED),
    ("RecordFeedback", WIRE_CLERK, {"satisfied": True}, pb.CASE_STATE_ARCHIVED),
]


def run_lifecycle(pair: SitePair) -> tuple[str, pb.Case]:
    """Receive at 410400, then every LIFECYCLE step at its actor's site; answers the case id and the last case."""
    received = pair.receiving.stub.ReceiveCase(receive_request(), timeout=10)
    assert received.created and received.case.state == pb.CASE_STATE_RECEIVED
    case_id, case = received.case.case_id, received.case
    for rpc, actor, fields, state in LIFECYCLE:
        case = take(pair, rpc, actor, case_id=case_id, **fields)
        assert case.state == state, rpc
    pair.sync()
    return case_id, case


def test_full_lifecycle_survives_a_restart(site_factory: Callable[[], RunningSite], handling_site: RunningSite) -> None:
    site = site_factory()
    received = site.stub.ReceiveCase(receive_request(), timeout=10)
    assert received.case.applicant.id_number != ID_NUMBER and received.case.applicant.id_number.endswith("2416")
    case_id, case = run_lifecycle(SitePair(site, handling_site))
    issue = call(site, "RaiseIssue", case_id=case_id, actor=WIRE_CLERK, kind=pb.ISSUE_KIND_DISPUTE, description="争议")
    assert issue.issues[0].issue_id == "Q1-410400"
    assert case.rating.outcome == pb.RECTIFICATION_OUTCOME_EXPLAINED and case.rating.feedback_satisfied
    history = site.stub.GetCaseHistory(svc.GetCaseHistoryRequest(case_id=case_id), timeout=10)
    steps = [e.step for e in history.entries]
    assert steps[:3] == ["CaseReceived", "CaseForwarded", "CaseSignedIn"] and steps[-1] == "IssueRaised"
    assert all(e.actor.staff_id and e.actor.site and e.at.seconds for e in history.entries)
    version = history.case.version
    site.stop()

    again = site_factory()
    after = again.stub.GetCaseHistory(svc.GetCaseHistoryRequest(case_id=case_id), timeout=10)
    assert after.case.version == version and [e.step for e in after.entries] == steps
    assert after.case == history.case or after.case.clocks == history.case.clocks
    listed = again.stub.ListCases(svc.ListCasesRequest(states=[pb.CASE_STATE_ARCHIVED]), timeout=10)
    assert [c.case_id for c in listed.cases] == [case_id]


def test_two_concurrent_updates_one_wins_the_other_is_aborted(pair: SitePair) -> None:
    case = pair.receiving.stub.ReceiveCase(receive_request(), timeout=10).case
    take(pair, "ForwardCase", WIRE_CLERK, case_id=case.case_id)
    signed = take(pair, "SignCase", WIRE_HANDLER, case_id=case.case_id)
    site = pair.handling
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def attempt(rpc: str, fields: dict[str, Any]) -> None:
        barrier.wait()
        try:
            results[rpc] = call(site, rpc, case_id=case.case_id, actor=WIRE_HANDLER,
                                expected_version=signed.version, **fields)
        except grpc.RpcError as error:
            results[rpc] = error

    threads = [
        threading.Thread(target=attempt, args=("AcceptCase", {"committed_days": 5})),
        threading.Thread(target=attempt, args=("RequestSupplement", {"missing_materials": ["户口簿"]})),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    errors = [r for r in results.values() if isinstance(r, grpc.RpcError)]
    winners = [r for r in results.values() if isinstance(r, pb.Case)]
    assert len(winners) == 1 and len(errors) == 1
    assert errors[0].code() == grpc.StatusCode.ABORTED
    final = site.stub.GetCase(svc.GetCaseRequest(case_id=case.case_id), timeout=10).case
    assert final.version == signed.version + 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"handling_site": "999999"}, "handling_site"),
        ({"handling_site": "32050"}, "handling_site"),
        ({"applicant": pb.Applicant(kind=pb.APPLICANT_KIND_PERSON, name="王建国", id_type=pb.ID_TYPE_RESIDENT_ID,
                                    id_number="410402199003072417")}, "applicant.id_number"),
        ({"applicant": pb.Applicant(kind=pb.APPLICANT_KIND_ORGANISATION, name="某公司",
                                    id_type=pb.ID_TYPE_CREDIT_CODE, id_number="91410400MA3X12345")},
         "applicant.id_number"),
        ({"item_code": ""}, "item_code"),
        ({"item_code": "NO-SUCH-ITEM"}, "item_code"),
        ({"mode": pb.MODE_UNSPECIFIED}, "mode"),
        ({"mode": 99}, "mode"),
        ({"request_id": ""}, "request_id"),
        ({"note": "长" * 501}, "note"),
        ({"applicant": pb.Applicant(kind=pb.APPLICANT_KIND_PERSON, name="王" * 101, id_type=pb.ID_TYPE_RESIDENT_ID,
                                    id_number=ID_NUMBER)}, "applicant.name"),
    ],
)
def test_malformed_receipt_names_the_field_and_stores_nothing(
    site: RunningSite, changes: dict[str, Any], field: str
) -> None:
    before = stored_events(site)
    with pytest.raises(grpc.RpcError) as refused:
        site.stub.ReceiveCase(receive_request(**changes), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(refused.value), field_violations(refused.value)
    assert stored_events(site) == before


def test_bad_case_id_and_an_empty_actor_taken_from_the_credential(site: RunningSite) -> None:
    # Changed on purpose (staff identity): a request without an actor acts as the signed-in caller, so
    # the missing actor is no longer a field violation; the bad case id still is.
    with pytest.raises(grpc.RpcError) as refused:
        site.stub.ForwardCase(svc.ForwardCaseRequest(case_id="not-a-uuid"), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(refused.value)) == {"case_id"}
    with pytest.raises(grpc.RpcError) as missing:
        call(site, "ForwardCase", case_id=str(uuid.uuid4()), actor=WIRE_CLERK)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    case = site.stub.ReceiveCase(receive_request(), timeout=10).case
    forwarded = site.stub.ForwardCase(svc.ForwardCaseRequest(case_id=case.case_id), timeout=10).case
    history = site.stub.GetCaseHistory(svc.GetCaseHistoryRequest(case_id=forwarded.case_id), timeout=10)
    assert history.entries[-1].actor == WIRE_CLERK


def test_illegal_step_is_failed_precondition_naming_state_and_step(site: RunningSite) -> None:
    case = site.stub.ReceiveCase(receive_request(), timeout=10).case
    before = stored_events(site)
    with pytest.raises(grpc.RpcError) as refused:
        # a step the clerk may take, but not yet: the state table refuses it (a step of another role is
        # refused before that, for the role: tests/unit/test_authorization.py)
        call(site, "ConfirmDelivery", case_id=case.case_id, actor=WIRE_CLERK, received_by="王建国")
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = error_info(refused.value)
    assert info is not None and info.reason == "ILLEGAL_STEP"
    assert dict(info.metadata) == {"state": "received", "step": "confirm_delivery"}
    assert "已收件" in refused.value.details() and "送达" in refused.value.details()
    assert stored_events(site) == before


def test_same_request_id_gives_the_same_case(site: RunningSite) -> None:
    first = site.stub.ReceiveCase(receive_request("window-7-0001"), timeout=10)
    again = site.stub.ReceiveCase(receive_request("window-7-0001"), timeout=10)
    assert first.created and not again.created and again.case.case_id == first.case.case_id
    with pytest.raises(grpc.RpcError) as reused:
        site.stub.ReceiveCase(receive_request("window-7-0001", note="different"), timeout=10)
    assert reused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(reused.value).reason == "REQUEST_ID_REUSED"  # type: ignore[union-attr]


def test_concurrent_resubmissions_create_one_case(site: RunningSite) -> None:
    barrier = threading.Barrier(4)
    ids: list[str] = []

    def submit() -> None:
        barrier.wait()
        ids.append(site.stub.ReceiveCase(receive_request("burst-1"), timeout=10).case.case_id)

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(ids) == 4 and len(set(ids)) == 1


def test_list_cases_filters_and_pages(site: RunningSite) -> None:
    created = [site.stub.ReceiveCase(receive_request(), timeout=10).case.case_id for _ in range(5)]
    call(site, "ForwardCase", case_id=created[0], actor=WIRE_CLERK)
    page1 = site.stub.ListCases(svc.ListCasesRequest(page_size=3), timeout=10)
    page2 = site.stub.ListCases(svc.ListCasesRequest(page_size=3, page_token=page1.next_page_token), timeout=10)
    assert [c.case_id for c in page1.cases] + [c.case_id for c in page2.cases] == created[::-1]
    forwarded = site.stub.ListCases(svc.ListCasesRequest(states=[pb.CASE_STATE_FORWARDED]), timeout=10)
    assert [c.case_id for c in forwarded.cases] == [created[0]]
    by_partner = site.stub.ListCases(svc.ListCasesRequest(partner="330100"), timeout=10)
    assert list(by_partner.cases) == []
    overdue = site.stub.ListCases(svc.ListCasesRequest(due=svc.DUE_FILTER_BREACHED), timeout=10)
    assert list(overdue.cases) == []
    with pytest.raises(grpc.RpcError) as bad:
        site.stub.ListCases(svc.ListCasesRequest(page_size=10_000), timeout=10)
    assert "page_size" in field_violations(bad.value)


def test_health_and_reflection_are_served(site: RunningSite) -> None:
    health = health_pb2_grpc.HealthStub(site.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service="tongban.v1.CaseService"), timeout=10)
    assert status.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(site.channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert "tongban.v1.CaseService" in names


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"handling_site": "310101"}, "NO_AGREEMENT"),  # 上海: no point-to-point agreement with 平顶山
        ({"handling_site": "410402"}, "LOCAL_MATTER"),  # our own county
        ({"handling_site": "330102", "item_code": "KSTB-020"}, "ITEM_NOT_COVERED"),
    ],
)
def test_unroutable_receipt_is_refused_with_the_reason(site: RunningSite, changes: dict[str, Any], reason: str) -> None:
    before = stored_events(site)
    with pytest.raises(grpc.RpcError) as refused:
        site.stub.ReceiveCase(receive_request(**changes), timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(refused.value).reason == reason, refused.value.details()  # type: ignore[union-attr]
    assert stored_events(site) == before


def test_a_county_routes_to_its_city_site_and_the_route_is_recorded(site: RunningSite) -> None:
    case = site.stub.ReceiveCase(receive_request(handling_site="320505"), timeout=10).case
    assert case.handling_site == "320500"
    stored = site.hub.get_case(uuid.UUID(case.case_id))
    assert stored.route["agreement_id"] == "PDS-SZ-2026" and stored.route["agreement_version"] >= 1
