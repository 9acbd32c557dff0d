"""A partner's events are checked whole before anything is stored (hub/application/partner_intake.py):
one test per way a partner was seen to store what it must not, each through the wire decoding
(adapters/exchange/wire.py) into CaseSharing.ingest, as the partner port does."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters import bounded_json
from adapters.exchange.wire import event_from, event_message
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.application.event_schema import DATA_SCHEMAS
from hub.application.partner_intake import (
    REFUSAL_REASONS,
    EventInvalid,
    EventNotPermitted,
    EventNotUnderstood,
    PartnerIntake,
)
from hub.domain.case import EVENT_TYPES, Case
from hub.domain.errors import HubError, RuleViolation
from hub.domain.shared import SharedEvent
from tests.builders import CLERK, HANDLING, RECEIVING, actor_data, receive_request
from tests.memory_sites import hub
from tests.partner_events import Lifecycle, intake, lifecycle

OUTSIDER_SITE = "440300"  # 深圳: no agreement with 苏州 in the seed file, and not a configured partner


@pytest.fixture(scope="module")
def life() -> Lifecycle:
    return lifecycle()


@pytest.fixture
def b() -> CaseHub:
    """A fresh 苏州 site that has not seen any of the lifecycle's events."""
    return hub(HANDLING)


def deliver(into: CaseHub, events: list[SharedEvent], sender: str = RECEIVING) -> None:
    """Over the wire's encoding (the hash is the one the forger computes) into the partner port's ingest."""
    CaseSharing(into, intake=intake(into.site)).ingest(sender, [event_from(event_message(e)) for e in events])


def refused(into: CaseHub, events: list[SharedEvent], kind: type[HubError], reason: str) -> None:
    before = into.head()
    with pytest.raises(kind) as caught:
        deliver(into, events)
    assert caught.value.reason == reason
    assert reason in REFUSAL_REASONS
    assert into.head() == before  # nothing stored


def opening(life: Lifecycle) -> list[SharedEvent]:
    """The full case's receipt and its forwarding, as 平顶山 sends them."""
    return life.a.get_case(life.cases[0]).shared_events(RECEIVING)[:2]


def with_data(event: SharedEvent, **changes: Any) -> SharedEvent:
    return dataclasses.replace(event, data={**event.data, **changes})


# --------------------------------------------------------------------------- genuine events pass
def test_every_genuine_event_of_every_type_passes_the_partners_checks(life: Lifecycle) -> None:
    checks = {RECEIVING: intake(HANDLING), HANDLING: intake(RECEIVING)}  # each origin's events, at its partner
    for event in life.events():
        checks[event.origin].check(event.origin, [event_from(event_message(event))])


def test_a_genuine_case_still_flows_through_the_checked_port(life: Lifecycle, b: CaseHub) -> None:
    deliver(b, opening(life))
    assert b.get_case(life.cases[0]).last_seq(RECEIVING) == 2


# --------------------------------------------------------------------------- the reproduced cases
@pytest.mark.parametrize("key", ["seq", "originator_version", "origin", "lamport", "event_id", "actor", "timestamp"])
def test_data_keys_that_override_identity_are_refused(life: Lifecycle, b: CaseHub, key: str) -> None:
    received, forwarded = opening(life)
    deliver(b, [received])
    refused(b, [with_data(forwarded, **{key: 7})], EventInvalid, "IDENTITY_OVERRIDE")
    assert b.get_case(received.case_id).last_seq(RECEIVING) == 1


def test_an_event_whose_actor_works_for_another_site_is_refused(life: Lifecycle, b: CaseHub) -> None:
    received, forwarded = opening(life)
    deliver(b, [received])
    ours = dataclasses.replace(forwarded, actor={**forwarded.actor, "site": HANDLING})  # "taken by our staff"
    refused(b, [ours], EventNotPermitted, "ACTOR_NOT_ORIGIN")


def test_a_receipt_from_a_site_with_no_agreement_that_is_not_a_partner_is_refused(b: CaseHub) -> None:
    stranger = hub(OUTSIDER_SITE)
    actor = {**actor_data(CLERK), "site": OUTSIDER_SITE}
    case, _ = stranger.receive(c.parse(c.ReceiveCase, receive_request("sz-1", actor=actor)))
    [received] = case.shared_events()
    before = b.head()
    with pytest.raises(EventNotPermitted) as caught:
        CaseSharing(b, intake=intake(HANDLING)).ingest(OUTSIDER_SITE, [event_from(event_message(received))])
    assert caught.value.reason == "NOT_A_PARTNER" and b.head() == before
    configured = intake(HANDLING, frozenset({RECEIVING, OUTSIDER_SITE}))  # a partner, but no agreement
    with pytest.raises(EventNotPermitted) as caught:
        CaseSharing(b, intake=configured).ingest(OUTSIDER_SITE, [event_from(event_message(received))])
    assert caught.value.reason == "NO_AGREEMENT" and b.head() == before


def test_a_receipt_for_an_item_or_mode_the_agreement_does_not_cover_is_refused(life: Lifecycle, b: CaseHub) -> None:
    received, _ = opening(life)
    uncovered_item = with_data(received, item={**received.data["item"], "code": "KSTB-001"})
    refused(b, [uncovered_item], EventNotPermitted, "NO_AGREEMENT")
    uncovered_mode = with_data(received, mode="self_service")
    refused(b, [uncovered_mode], EventNotPermitted, "NO_AGREEMENT")


@pytest.mark.parametrize("forge", [
    pytest.param(lambda e: with_data(e, details="not an object"), id="details-not-an-object"),
    pytest.param(lambda e: with_data(e, details={"courier": 5}), id="details-wrong-type"),
])
def test_step_details_that_would_make_the_case_unreadable_are_refused(life: Lifecycle, b: CaseHub, forge: Any) -> None:
    received, forwarded = opening(life)
    deliver(b, [received])
    refused(b, [forge(forwarded)], EventInvalid, "BAD_DATA")
    assert b.get_case(received.case_id).state.value == "received"  # still readable


def test_a_rating_score_out_of_range_is_refused(life: Lifecycle) -> None:
    rated = life.by_type()["CaseRated"]
    with pytest.raises(EventInvalid) as caught:
        intake(HANDLING).check(RECEIVING, [with_data(rated, score=99)])
    assert caught.value.reason == "BAD_DATA" and caught.value.violations[0].field == "data.score"


@pytest.mark.parametrize("kind", ["other\x00", "lost_parcel\x00", "nonsense"])
def test_an_issue_kind_with_a_nul_byte_or_unknown_is_refused(life: Lifecycle, kind: str) -> None:
    raised = life.by_type()["IssueRaised"]
    with pytest.raises(EventInvalid, match="kind") as caught:
        intake(HANDLING).check(RECEIVING, [with_data(raised, kind=kind)])
    assert caught.value.reason == "BAD_DATA"


def test_control_characters_in_free_text_are_refused_but_line_breaks_are_kept(life: Lifecycle) -> None:
    raised = life.by_type()["IssueRaised"]
    assert "\n" in raised.data["description"]
    intake(HANDLING).check(RECEIVING, [raised])
    with pytest.raises(EventInvalid):
        intake(HANDLING).check(RECEIVING, [with_data(raised, description="丢失\x07")])


def test_a_type_version_we_do_not_know_is_refused_with_its_reason(life: Lifecycle, b: CaseHub) -> None:
    received, forwarded = opening(life)
    deliver(b, [received])
    refused(b, [dataclasses.replace(forwarded, type_version=7)], EventNotUnderstood, "UNKNOWN_TYPE_VERSION")
    deliver(b, [forwarded])  # the genuine one afterwards: stored, and an identical redelivery is no fork
    [receipt] = CaseSharing(b, intake=intake(HANDLING)).ingest(RECEIVING, [forwarded])
    assert receipt.status.value == "stored" and receipt.stored_through == 2


def test_an_unknown_event_type_with_a_correct_hash_is_refused(life: Lifecycle, b: CaseHub) -> None:
    _received, forwarded = opening(life)
    refused(b, [dataclasses.replace(forwarded, type="CaseTeleported")], EventNotUnderstood, "UNKNOWN_EVENT_TYPE")


@pytest.mark.parametrize("lamport", [2**63 - 1, 2**62, 100_003])
def test_a_lamport_clock_far_ahead_of_its_seq_is_refused(life: Lifecycle, b: CaseHub, lamport: int) -> None:
    received, forwarded = opening(life)
    deliver(b, [received])
    refused(b, [dataclasses.replace(forwarded, lamport=lamport)], EventInvalid, "BAD_LAMPORT")


def test_a_lamport_clock_behind_its_seq_and_a_receipt_not_at_one_are_refused(life: Lifecycle, b: CaseHub) -> None:
    received, forwarded = opening(life)
    refused(b, [dataclasses.replace(received, lamport=5)], EventInvalid, "BAD_SEQ")
    deliver(b, [received])
    refused(b, [dataclasses.replace(forwarded, lamport=1)], EventInvalid, "BAD_LAMPORT")


@pytest.mark.parametrize("year", [1, 2019, 9999])
def test_an_occurred_at_in_year_1_or_9999_is_refused(life: Lifecycle, b: CaseHub, year: int) -> None:
    received, forwarded = opening(life)
    deliver(b, [received])
    odd = dataclasses.replace(forwarded, occurred_at=forwarded.occurred_at.replace(year=year))
    refused(b, [odd], EventInvalid, "TIMESTAMP_OUT_OF_RANGE" if year < 2020 else "CLOCK_SKEW")


def test_the_clock_skew_window_is_a_setting_and_old_events_pass(life: Lifecycle) -> None:
    received, forwarded = opening(life)
    checker = intake(HANDLING)
    checker.check(RECEIVING, [dataclasses.replace(forwarded, occurred_at=datetime(2020, 1, 2, tzinfo=UTC))])
    late = dataclasses.replace(received, occurred_at=datetime(2020, 1, 2, tzinfo=UTC))
    ahead = dataclasses.replace(received, occurred_at=datetime.now(UTC) + timedelta(seconds=200))
    checker.check(RECEIVING, [ahead])
    strict = dataclasses.replace(checker, bounds=dataclasses.replace(checker.bounds,
                                                                     max_clock_skew=timedelta(seconds=60)))
    with pytest.raises(EventInvalid, match="60"):
        strict.check(RECEIVING, [ahead])
    with pytest.raises(EventNotPermitted):  # an old date is no reason to refuse, but the agreement was not in force
        checker.check(RECEIVING, [late])


def test_missing_and_extra_fields_and_null_commitment_are_refused(life: Lifecycle) -> None:
    types = life.by_type()
    checker = intake(RECEIVING)
    accepted = types["CaseAccepted"]
    for forged in (
        with_data(accepted, details={"committed_days": None}),
        with_data(accepted, details={}),
        with_data(accepted, details={**accepted.data["details"], "extra": 1}),
        with_data(types["CaseDecided"], details={"reason": ""}),
        with_data(accepted, details={"committed_days": True}),
    ):
        with pytest.raises(EventInvalid) as caught:
            checker.check(HANDLING, [forged])
        assert caught.value.reason == "BAD_DATA"


@pytest.mark.parametrize("sites", [["3205"], "320500", [320500], ["320500", None], ["32050\x00"], ["320500"] * 6])
def test_malformed_co_handling_sites_are_refused(life: Lifecycle, sites: Any) -> None:
    received, _ = opening(life)
    with pytest.raises(EventInvalid) as caught:
        intake(HANDLING).check(RECEIVING, [with_data(received, co_handling_sites=sites)])
    assert caught.value.reason == "BAD_DATA"


# --------------------------------------------------------------------------- the wire's own bounds
def test_json_nested_100000_deep_is_refused_without_recursion(life: Lifecycle) -> None:
    message = event_message(opening(life)[1])
    message.data_json = b'{"details":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(EventInvalid) as caught:
        event_from(message)
    assert caught.value.reason in ("JSON_TOO_DEEP", "JSON_TOO_LARGE")
    message.data_json = b'{"details":' + b"[" * 40 + b"]" * 40 + b"}"
    with pytest.raises(EventInvalid) as caught:
        event_from(message)
    assert caught.value.reason == "JSON_TOO_DEEP"


def test_the_bounded_loader_measures_depth_and_size() -> None:
    assert bounded_json.depth({"a": [1, {"b": []}]}) == 4 and bounded_json.depth(1) == 0
    with pytest.raises(bounded_json.JsonRefused, match="bytes"):
        bounded_json.loads(json.dumps({"a": "x" * 100}), max_bytes=50)
    with pytest.raises(bounded_json.JsonRefused) as caught:
        bounded_json.loads("[" * 2000 + "]" * 2000)
    assert caught.value.reason == "JSON_TOO_DEEP"


@pytest.mark.parametrize(("seconds", "nanos"), [(-62_135_596_801, 0), (253_402_300_800, 0), (0, -1), (0, 10**9)])
def test_timestamps_outside_the_protobuf_range_are_refused_before_conversion(
    life: Lifecycle, seconds: int, nanos: int
) -> None:
    message = event_message(opening(life)[1])
    message.occurred_at.seconds, message.occurred_at.nanos = seconds, nanos
    with pytest.raises(EventInvalid) as caught:
        event_from(message)
    assert caught.value.reason == "TIMESTAMP_OUT_OF_RANGE"


def test_an_unknown_role_number_or_value_is_refused(life: Lifecycle) -> None:
    forwarded = opening(life)[1]
    message = event_message(forwarded)
    message.actor.role = 99
    with pytest.raises(EventInvalid):
        event_from(message)
    with pytest.raises(EventInvalid) as caught:
        intake(HANDLING).check(RECEIVING, [dataclasses.replace(forwarded, actor={**forwarded.actor, "role": "boss"})])
    assert caught.value.reason == "BAD_ACTOR"


def test_replaying_our_store_is_never_checked(life: Lifecycle) -> None:
    """The checks apply to what arrives, not to what we hold: a stored case loads whatever the checks say now."""
    strict = PartnerIntake(RECEIVING, partners=frozenset())
    assert isinstance(CaseSharing(life.a, intake=strict).log.get_case(life.cases[0]), Case)


def test_each_schema_names_exactly_the_fields_of_its_event_class() -> None:
    """An event class cannot be built without each of its fields: the schema requires the same ones."""
    base = set(Case.Event.__annotations__) | {"originator_topic"}
    for name, cls in EVENT_TYPES.items():
        own = {f for klass in cls.__mro__ if issubclass(klass, Case.Event)
               for f in getattr(klass, "__annotations__", {})} - base - {"STEP"}
        fields = DATA_SCHEMAS[name].model_fields
        assert set(fields) == own, name
        assert all(f.is_required() for f in fields.values()), name


def test_the_bounds_come_from_the_exchange_section_of_the_settings() -> None:
    from adapters.bootstrap import Reference, build_intake
    from adapters.settings import ConfigError, settings_from

    raw = {"site": {"code": HANDLING}, "exchange": {"max_clock_skew_seconds": 60, "max_lamport_jump": 500},
           "partners": [{"site": RECEIVING, "channel": "grpc", "address": "127.0.0.1:1"}]}
    built = build_intake(settings_from(raw), Reference.load(settings_from(raw)))
    assert built.bounds.max_clock_skew == timedelta(seconds=60) and built.bounds.max_lamport_jump == 500
    assert built.partners == frozenset({RECEIVING})
    defaults = settings_from({"site": {"code": HANDLING}})
    assert build_intake(defaults, Reference.load(defaults)).bounds.max_clock_skew == timedelta(seconds=300)
    for bad in ({"max_clock_skew_seconds": -1}, {"max_clock_skew_seconds": "5"}, {"max_lamport_jump": 0}):
        with pytest.raises(ConfigError, match="exchange"):
            settings_from({"site": {"code": HANDLING}, "exchange": bad})


# --------------------------------------------------------------------------- found by the adversarial pass
@pytest.mark.parametrize(("change", "why"), [
    (lambda d: {"co_handling_sites": [HANDLING]}, "the handling site as its own co-handling site"),
    (lambda d: {"co_handling_sites": [RECEIVING]}, "the receiving site as a co-handling site"),
    (lambda d: {"mode": "joint"}, "joint handling with no co-handling site"),
    (lambda d: {"co_handling_sites": ["330100"]}, "a co-handling site outside joint handling"),
    (lambda d: {"item": {**d["item"], "legal_days": 1, "committed_days": 365}}, "a commitment beyond the limit"),
    (lambda d: {"item": {**d["item"], "legal_days": 0, "committed_days": 0}}, "no legal limit at all"),
    (lambda d: {"case_number": HANDLING + d["case_number"][6:]}, "a case number under our region code"),
    (lambda d: {"route": {"handling_site": "330100", "co_handling_sites": [], "department": "人社局",
                          "agreement_id": "A-1", "agreement_version": 1}}, "a route to somewhere else"),
    (lambda d: {"applicant": {**d["applicant"], "id_number": "123"}}, "an ID number that fails its check"),
])
def test_a_receipt_the_window_would_refuse_is_refused_from_a_partner(
    life: Lifecycle, b: CaseHub, change: Any, why: str,
) -> None:
    received, _ = opening(life)
    refused(b, [with_data(received, **change(received.data))], EventInvalid, "BAD_DATA")


@pytest.mark.parametrize(("item", "reason"), [
    (lambda i: {**i, "legal_days": i["legal_days"] + 5}, "ITEM_MISMATCH"),  # a longer limit than the item has
    (lambda i: {**i, "committed_days": i["committed_days"] - 1}, "ITEM_MISMATCH"),
    (lambda i: {**i, "name": "另一个名称"}, "ITEM_MISMATCH"),
])
def test_the_items_limits_come_from_our_catalogue_not_the_partners_copy(
    life: Lifecycle, b: CaseHub, item: Any, reason: str,
) -> None:
    received, _ = opening(life)
    refused(b, [with_data(received, item=item(received.data["item"]))], EventNotPermitted, reason)


@pytest.mark.parametrize("behind", [0, 1])
def test_an_event_whose_clock_does_not_grow_with_its_origins_is_refused(
    life: Lifecycle, b: CaseHub, behind: int,
) -> None:
    """At or below the origin's own previous clock (still within the envelope's bounds): it cannot have
    seen what it follows, and would be folded before it, or win a conflict it lost."""
    ours = life.a.get_case(life.cases[0]).shared_events(RECEIVING)
    k = next(i for i in range(2, len(ours)) if ours[i - 1].lamport - behind >= ours[i].seq)
    deliver(b, ours[:k])
    late = dataclasses.replace(ours[k], lamport=ours[k - 1].lamport - behind)
    refused(b, [late], RuleViolation, "OUT_OF_ORDER")
    assert b.get_case(ours[0].case_id).last_seq(RECEIVING) == k
    deliver(b, [ours[k]])  # the genuine one still arrives
    assert b.get_case(ours[0].case_id).last_seq(RECEIVING) == k + 1


def test_an_acceptance_committing_beyond_the_items_legal_limit_is_refused(life: Lifecycle) -> None:
    """The handling site's commitment rule holds for what it tells its partner it committed to, too: the
    receiving site's copy of the case checks 苏州's acceptance against the item's legal limit."""
    case = life.a.get_case(life.cases[0])
    accepted = next(e for e in case.shared_events(HANDLING) if e.type == "CaseAccepted")
    legal = int(case.item["legal_days"])
    case.admit(accepted)  # the genuine acceptance passes
    beyond = with_data(accepted, details={**accepted.data["details"], "committed_days": legal + 1})
    with pytest.raises(RuleViolation) as caught:
        case.admit(beyond)
    assert caught.value.reason == "COMMITMENT_EXCEEDS_LEGAL_LIMIT"
