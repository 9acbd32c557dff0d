"""The partner port under hostile input: a schema-aware property test over the real gRPC ExchangeService.

Every example is a genuine event of our own hubs (every event type, both directions) mutated the way
a broken or hostile partner would: data keys that override identity, another actor site, unknown
type versions, huge Lamport clocks and seqs, timestamps at and beyond the edges, control characters,
deep or huge JSON, wrong types, missing and extra fields. It is delivered to a site that holds the
case exactly as it did just before the genuine event arrived. Whatever the mutation: never INTERNAL;
a refusal stores nothing (the notification id is unchanged) and says why; the case is still readable;
and the genuine event is still accepted afterwards, so the relay keeps moving.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent import futures
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.exchange.grpc_service import ExchangeServicer
from adapters.exchange.wire import event_message, receipt_from
from adapters.grpc.errors import error_info
from hub.application.case_clocks import CaseClocks
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.application.history import case_history
from hub.application.partner_intake import REFUSAL_REASONS, RESERVED_KEYS
from hub.domain.case import EVENT_TYPES, Case
from hub.domain.receipts import ReceiptStatus
from hub.domain.shared import SharedEvent
from ops.metrics import SiteMetrics
from tests.builders import HANDLING, RECEIVING
from tests.memory_sites import hub
from tests.partner_events import Lifecycle, intake, lifecycle
from tongban.v1 import exchange_pb2, exchange_pb2_grpc

REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.FAILED_PRECONDITION}
SITES = {RECEIVING: HANDLING, HANDLING: RECEIVING}  # origin -> the partner that receives its events


@dataclasses.dataclass
class Port:
    """One site's partner port on a real gRPC server; ``target`` is swapped for a fresh site per example."""

    servicer: ExchangeServicer
    stub: exchange_pb2_grpc.ExchangeServiceStub
    metrics: SiteMetrics

    def deliver(self, sender: str, messages: list[exchange_pb2.SharedEvent]) -> exchange_pb2.DeliverEventsResponse:
        request = exchange_pb2.DeliverEventsRequest(sender_site=sender, events=messages)
        return self.stub.DeliverEvents(request, timeout=10)


@pytest.fixture(scope="module")
def life() -> Lifecycle:
    return lifecycle()


@pytest.fixture(scope="module")
def ports() -> Iterator[dict[str, Port]]:
    """A partner port per receiving site (its caller is always the partner: the certificate's word)."""
    servers, out = [], {}
    for origin, site in SITES.items():
        metrics = SiteMetrics(site)
        servicer = ExchangeServicer(CaseSharing(hub(site)), lambda _context, sender=origin: sender, observer=metrics)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.so_reuseport", 0)])
        exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        servers.append((server, channel))
        out[origin] = Port(servicer, exchange_pb2_grpc.ExchangeServiceStub(channel), metrics)
    yield out
    for server, channel in servers:
        channel.close()
        server.stop(1).wait()


def site_before(life: Lifecycle, event: SharedEvent) -> CaseHub:
    """A fresh copy of the receiving site holding the event's case as it was just before ``event`` arrived."""
    source = life.a if SITES[event.origin] == RECEIVING else life.b
    version = next(e.version for e in source.get_case(event.case_id).log if e.shared.event_id == event.event_id)
    fresh = hub(source.site)
    stored = source.recorder.select_events(event.case_id, lte=version - 1)
    if stored:
        fresh.recorder.insert_events(list(stored))
    return fresh


# ------------------------------------------------------------------------------------------ mutations
def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value (a key of an object, an index of a list), the value itself first."""
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out += paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out += paths(child, (*prefix, index))
    return out


def replaced(value: Any, path: tuple[Any, ...], new: Any, delete: bool = False) -> Any:
    if not path:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    head, rest = path[0], path[1:]
    if delete and not rest:
        del copy[head]
    else:
        copy[head] = replaced(copy[head], rest, new, delete)
    return copy


json_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 5, 6, 99, 365, 366, 2**31, 2**63 - 1]),
    st.text(max_size=30), st.text(st.characters(max_codepoint=0x9F), min_size=1, max_size=5),
    st.sampled_from(["", " ", "a" * 501, "a" * 65, "other\x00", "proxy", "Q1", "320500", "\u2028", "\ufeff"]),
)
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=8)


@st.composite
def mutated(draw: st.DrawFn, events: list[SharedEvent]) -> tuple[SharedEvent, exchange_pb2.SharedEvent, str]:
    """(the genuine event, the message a partner sends instead, what was done)."""
    event = draw(st.sampled_from(events))
    kind = draw(st.sampled_from([
        "identity_key", "actor_site", "actor_field", "actor_role", "type_version", "lamport", "seq", "occurred_at",
        "wire_time", "leaf", "delete", "extra", "type", "nested", "huge", "control",
    ]))
    forged, data = event, event.data
    if kind == "identity_key":
        data = {**data, draw(st.sampled_from(sorted(RESERVED_KEYS))): draw(json_values)}
    elif kind == "actor_site":
        forged = dataclasses.replace(event, actor={**event.actor, "site": draw(st.sampled_from(
            [SITES[event.origin], "440300", "", "41040", "410400\x00"]))})
    elif kind == "actor_field":
        field = draw(st.sampled_from(["staff_id", "name"]))
        forged = dataclasses.replace(event, actor={**event.actor, field: draw(st.text(max_size=70))})
    elif kind == "type_version":
        forged = dataclasses.replace(event, type_version=draw(st.integers(-(2**31), 2**31 - 1)))
    elif kind == "lamport":
        forged = dataclasses.replace(event, lamport=draw(st.one_of(
            st.integers(1, 2**63 - 1), st.sampled_from([2**63 - 1, 2**62, event.seq + 100_001, event.lamport + 1]))))
    elif kind == "seq":
        forged = dataclasses.replace(event, seq=draw(st.integers(1, 2**63 - 1)))
    elif kind == "occurred_at":
        forged = dataclasses.replace(event, occurred_at=draw(st.one_of(
            st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)),
            st.sampled_from([datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
                             datetime(2019, 12, 31, 23, 59, tzinfo=UTC)]))))
    elif kind in ("leaf", "delete", "control"):
        path = draw(st.sampled_from([p for p in paths(data) if p]))
        if kind == "delete":
            data = replaced(data, path, None, delete=True)
        elif kind == "control":
            text = draw(st.text(st.characters(max_codepoint=0x9F, categories=["Cc"]), min_size=1, max_size=3))
            data = replaced(data, path, f"x{text}")
        else:
            data = replaced(data, path, draw(json_values))
    elif kind == "extra":
        where = [p for p in paths(data) if isinstance(_at(data, p), dict)]
        path = draw(st.sampled_from(where))
        data = replaced(data, path, {**_at(data, path), draw(st.text(min_size=1, max_size=12)): draw(json_values)})
    elif kind == "type":
        forged = dataclasses.replace(event, type=draw(st.one_of(st.sampled_from(sorted(EVENT_TYPES)),
                                                                st.text(max_size=20))))
    forged = dataclasses.replace(forged, data=data)
    message = event_message(forged)
    if kind == "actor_role":  # the wire carries a role as an enum number
        message.actor.role = draw(st.integers(-(2**31), 2**31 - 1))
    elif kind == "wire_time":
        message.occurred_at.seconds = draw(st.one_of(
            st.integers(-(2**63), 2**63 - 1), st.sampled_from([-62_135_596_801, 253_402_300_800, 0])))
        message.occurred_at.nanos = draw(st.integers(-(2**31), 2**31 - 1))
    elif kind == "nested":
        depth = draw(st.integers(10, 100_000))
        message.data_json = b'{"details":' + b"[" * depth + b"]" * depth + b"}"
    elif kind == "huge":
        message.data_json = b'{"note":"' + b"x" * draw(st.integers(60_000, 300_000)) + b'"}'
    return event, message, kind


def _at(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


# ------------------------------------------------------------------------------------------ the property
@pytest.fixture(scope="module")
def events(life: Lifecycle) -> list[SharedEvent]:
    return life.events()


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_partner_port_never_fails_and_refusals_store_nothing(
    life: Lifecycle, ports: dict[str, Port], events: list[SharedEvent], data: st.DataObject
) -> None:
    genuine, message, kind = data.draw(mutated(events))
    port = ports[genuine.origin]
    target = site_before(life, genuine)
    port.servicer.sharing = CaseSharing(target, intake=intake(target.site))
    before = target.head()
    try:
        port.deliver(genuine.origin, [message])
        event(f"{kind}: accepted")
    except grpc.RpcError as error:
        assert error.code() in REFUSALS, (error.code(), error.details())
        info = error_info(error)
        assert info is not None and info.reason in REFUSAL_REASONS, error.details()  # every refusal says why
        assert target.head() == before  # nothing stored
        event(f"{kind}: {info.reason}")
    if target.find(genuine.case_id, Case) is not None:  # still readable, its clocks and history too
        CaseClocks(now=target.now)(target.get_case(genuine.case_id))
        case_history(target, genuine.case_id)
    [receipt] = port.deliver(genuine.origin, [event_message(genuine)]).receipts
    assert receipt_from(receipt).status in (ReceiptStatus.STORED, ReceiptStatus.FORK)


def test_refusals_are_counted_per_partner_and_reason(ports: dict[str, Port]) -> None:
    """After the property test (same module): the counter holds only the bounded reason codes."""
    counted = {(s.labels["partner"], s.labels["reason"])
               for p in ports.values() for metric in p.metrics.registry.collect()
               if metric.name == "tongban_exchange_events_refused"
               for s in metric.samples if s.name.endswith("_total") and s.value}
    assert {partner for partner, _ in counted} == {RECEIVING, HANDLING}
    assert {reason for _, reason in counted} <= REFUSAL_REASONS


def test_a_genuine_redelivery_after_refusals_is_stored_once(life: Lifecycle, ports: dict[str, Port]) -> None:
    genuine = life.a.get_case(life.cases[0]).shared_events(RECEIVING)[1]
    target = site_before(life, genuine)
    port = ports[RECEIVING]
    port.servicer.sharing = CaseSharing(target, intake=intake(target.site))
    with pytest.raises(grpc.RpcError) as refused:
        port.deliver(RECEIVING, [event_message(dataclasses.replace(genuine, data={**genuine.data, "seq": 7}))])
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (info := error_info(refused.value)) is not None and info.reason == "IDENTITY_OVERRIDE"
    for _ in range(2):
        [receipt] = port.deliver(RECEIVING, [event_message(genuine)]).receipts
        assert (receipt.stored_through_seq, receipt.status) == (2, exchange_pb2.RECEIPT_STATUS_STORED)
