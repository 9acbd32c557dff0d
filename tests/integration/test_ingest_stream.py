"""IngestEvents (bulk delivery as a stream) and the pipelined relay, over real mutual-TLS gRPC into a
real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
import structlog.testing

from adapters.bootstrap import build_hub
from adapters.exchange.grpc_client import GrpcPartner
from adapters.exchange.grpc_service import ExchangeServicer
from adapters.exchange.relay import Relay
from adapters.launcher import make_certs
from adapters.settings import PostgresSettings, Settings
from adapters.tls import TlsFiles, channel_credentials, peer_site, server_credentials
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.domain.shared import SharedEvent
from routing.catalogue import Catalogue
from routing.regions import RegionDirectory
from tests.builders import HANDLING, OTHER, RECEIVING, receive_request
from tongban.v1 import exchange_pb2_grpc


@dataclass
class Receiver:
    hub: CaseHub
    address: str
    certs: Path

    def client(self, site: str = RECEIVING, certificate_of: str | None = None) -> GrpcPartner:
        tls = TlsFiles.for_site(self.certs, certificate_of or site)
        return GrpcPartner(site, HANDLING, self.address, channel_credentials(tls))

    def versions(self, events: list[SharedEvent]) -> dict[str, int]:
        return {str(e.case_id): self.hub.get_case(e.case_id).version for e in events}


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    return make_certs(tmp_path / "certs", RECEIVING, HANDLING, OTHER)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def receiver(request: pytest.FixtureRequest, tmp_path: Path, certs: Path) -> Iterator[Receiver]:
    settings = Settings(site=HANDLING, data_dir=tmp_path / "b")
    if request.param == "postgres":
        postgres: PostgresSettings = request.getfixturevalue("postgres_schema")
        settings = replace(settings, store="postgres", postgres=postgres)
    hub = build_hub(settings)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(ExchangeServicer(CaseSharing(hub), peer_site), server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(TlsFiles.for_site(certs, HANDLING)))
    server.start()
    yield Receiver(hub, f"127.0.0.1:{port}", certs)
    server.stop(1).wait()
    hub.close()


@pytest.fixture
def sender() -> CaseHub:
    return CaseHub(site=RECEIVING, catalogue=Catalogue.load(), regions=RegionDirectory.load(),
                   env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def opened(hub: CaseHub, count: int, handling_site: str = HANDLING) -> list[SharedEvent]:
    """The receipts of ``count`` new cases at the sending site, as shared events."""
    requests = [receive_request(uuid.uuid4().hex, handling_site=handling_site) for _ in range(count)]
    cases = [hub.receive(c.parse(c.ReceiveCase, request))[0] for request in requests]
    return [case.shared_events()[0] for case in cases]


def batches_of(events: list[SharedEvent], size: int) -> list[list[SharedEvent]]:
    return [events[i:i + size] for i in range(0, len(events), size)]


def test_batches_are_stored_and_answered_in_order_with_at_most_the_window_unanswered(
    receiver: Receiver, sender: CaseHub
) -> None:
    events = opened(sender, 30)
    built: list[int] = []

    def lazily() -> Iterator[list[SharedEvent]]:
        for number, batch in enumerate(batches_of(events, 3), 1):
            built.append(number)
            yield batch

    client = receiver.client()
    answers = []
    built_at_first_answer = None
    for number, receipts in client.ingest_stream(lazily(), in_flight=2):
        built_at_first_answer = built_at_first_answer or len(built)
        answers.append((number, receipts))
    client.close()
    assert [n for n, _ in answers] == list(range(1, 11))
    assert all(len(r) == 3 and all(x.status == "stored" and x.stored_through == 1 for x in r) for _, r in answers)
    assert client.most_in_flight <= 2
    # The loader is held back: two in flight, one built and waiting for a slot, and one more if the
    # first answer freed a slot before we looked (an unbounded loader would have built all ten).
    assert built_at_first_answer is not None and built_at_first_answer <= 4
    assert set(receiver.versions(events).values()) == {1}


def test_sending_a_stream_again_stores_nothing_twice_and_gives_the_same_receipts(
    receiver: Receiver, sender: CaseHub
) -> None:
    events = opened(sender, 8)
    client = receiver.client()
    first = list(client.ingest_stream(batches_of(events, 4)))
    again = list(client.ingest_stream(batches_of(events, 4)))
    client.close()
    assert first == again
    assert set(receiver.versions(events).values()) == {1}


def test_a_batch_for_a_case_not_routed_to_us_ends_the_stream_and_earlier_batches_stay(
    receiver: Receiver, sender: CaseHub
) -> None:
    ours, elsewhere = opened(sender, 4), opened(sender, 1, handling_site=OTHER)
    later = opened(sender, 2)
    client = receiver.client()
    answered = []
    with pytest.raises(grpc.RpcError) as refused:
        for number, _receipts in client.ingest_stream([ours, elsewhere, later], in_flight=1):
            answered.append(number)
    client.close()
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert answered == [1]
    assert set(receiver.versions(ours).values()) == {1}
    assert receiver.hub.find(elsewhere[0].case_id, object) is None
    assert receiver.hub.find(later[0].case_id, object) is None


def test_a_sender_claiming_another_site_is_refused(receiver: Receiver, sender: CaseHub) -> None:
    client = receiver.client(site=OTHER, certificate_of=RECEIVING)
    with pytest.raises(grpc.RpcError) as refused:
        list(client.ingest_stream([opened(sender, 1)]))
    client.close()
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_the_pipelined_relay_delivers_every_case_once_and_stores_matching_receipts(
    receiver: Receiver, sender: CaseHub
) -> None:
    events = opened(sender, 40)
    exchange = CaseSharing(sender)
    relay = Relay(exchange, receiver.client(), batch=9, window=12)  # 3 cases a batch, 4 batches in flight
    most_unacknowledged = 0
    while relay.pump():
        most_unacknowledged = max(most_unacknowledged, relay.unacknowledged)
    relay.channel.close()
    assert 0 < most_unacknowledged <= 12
    assert exchange.position(HANDLING, "grpc") == sender.recorder.max_notification_id()
    assert set(receiver.versions(events).values()) == {1}
    for event in events:
        (receipt,) = exchange.receipts(event.case_id)
        assert receipt["matched"] and receipt["stored_through"] == 1


def test_a_sender_that_goes_away_mid_stream_is_not_a_server_error(receiver: Receiver, sender: CaseHub) -> None:
    """A relay that is stopped (or loses its link) mid-stream cancels the call: the receiver logs it as
    a cancelled call, not as ``rpc_failed`` with a traceback for SREs to chase."""
    events = opened(sender, 6)
    client = receiver.client()
    with structlog.testing.capture_logs() as logs:
        stream = client.ingest_stream(iter(batches_of(events, 3)), in_flight=1)
        next(stream)  # the first batch is stored and answered; then the sender goes away
        stream.close()
        client.close()
        deadline = time.monotonic() + 10  # until the receiver has noticed (it may also just end the call)
        while not any(e["event"] in ("rpc_cancelled", "rpc_failed") for e in logs) and time.monotonic() < deadline:
            time.sleep(0.02)
    assert not any(e["event"] == "rpc_failed" for e in logs)
    assert all(e["method"] == "IngestEvents" for e in logs if e["event"] == "rpc_cancelled")
