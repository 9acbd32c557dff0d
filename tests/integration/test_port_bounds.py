"""Never INTERNAL for bad input at the other doors: the staff port's ``as_of`` (GetCase, GetCaseHistory,
ListCases), a partner's IngestEvents stream with a time beyond the Timestamp range, and a checkpoint to
countersign nested 100,000 deep. Each over a real gRPC server."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from adapters.audit.chain_store import MemoryChainStore
from adapters.audit.signing import Checkpointer
from adapters.audit.site_chain import SiteChain
from adapters.bootstrap import build_hub
from adapters.exchange.grpc_service import ExchangeServicer
from adapters.exchange.wire import event_message
from adapters.grpc.errors import error_info, field_violations
from adapters.settings import Settings
from audit import checkpoints
from hub.application import commands as c
from hub.application.case_sharing import CaseSharing
from tests.builders import HANDLING, RECEIVING
from tests.builders import receive_request as receipt_data
from tests.integration.conftest import RunningSite
from tests.integration.test_grpc_site import receive_request
from tests.memory_sites import hub as memory_hub
from tests.partner_events import intake
from tongban.v1 import case_service_pb2 as svc
from tongban.v1 import exchange_pb2, exchange_pb2_grpc

OUT_OF_RANGE = [
    Timestamp(seconds=-62_135_596_801), Timestamp(seconds=253_402_300_800), Timestamp(seconds=0, nanos=-1),
    Timestamp(seconds=253_402_300_799),  # 9999-12-31: in the Timestamp range, its local date is not
    Timestamp(seconds=-62_135_596_800),  # 0001-01-01
]


@pytest.mark.parametrize("as_of", OUT_OF_RANGE, ids=["before-year-1", "after-9999", "negative-nanos", "9999", "1"])
def test_an_as_of_outside_the_range_is_invalid_argument_on_every_read(site: RunningSite, as_of: Timestamp) -> None:
    case_id = site.stub.ReceiveCase(receive_request(), timeout=10).case.case_id
    calls = [
        lambda: site.stub.GetCase(svc.GetCaseRequest(case_id=case_id, as_of=as_of), timeout=10),
        lambda: site.stub.GetCaseHistory(svc.GetCaseHistoryRequest(case_id=case_id, as_of=as_of), timeout=10),
        lambda: site.stub.ListCases(svc.ListCasesRequest(as_of=as_of), timeout=10),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as refused:
            call()
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "as_of" in field_violations(refused.value)


def test_an_as_of_within_the_range_still_reads(site: RunningSite) -> None:
    case_id = site.stub.ReceiveCase(receive_request(), timeout=10).case.case_id
    late = Timestamp(seconds=4_102_444_799)  # 2099-12-31T23:59:59Z
    assert site.stub.GetCase(svc.GetCaseRequest(case_id=case_id, as_of=late), timeout=10).case.case_id == case_id
    assert site.stub.ListCases(svc.ListCasesRequest(as_of=Timestamp(seconds=0)), timeout=10).cases


@pytest.fixture
def partner_port(tmp_path: Path) -> Iterator[tuple[exchange_pb2_grpc.ExchangeServiceStub, Checkpointer]]:
    """苏州's partner port (caller: 平顶山), countersigning with a real checkpointer."""
    hub = build_hub(Settings(site=HANDLING, data_dir=tmp_path))
    checkpointer = Checkpointer(hub, SiteChain(hub, MemoryChainStore()), checkpoints.generate_key(), None)
    servicer = ExchangeServicer(CaseSharing(hub, intake=intake(HANDLING)), lambda _context: RECEIVING,
                                checkpointer.countersign_for)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.so_reuseport", 0)])
    exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield exchange_pb2_grpc.ExchangeServiceStub(channel), checkpointer
    channel.close()
    server.stop(1).wait()
    hub.close()


def test_a_time_beyond_the_timestamp_range_ends_an_ingest_stream_as_invalid_argument(
    partner_port: tuple[exchange_pb2_grpc.ExchangeServiceStub, Checkpointer],
) -> None:
    stub, _ = partner_port
    window = memory_hub(RECEIVING)  # receipts as a window makes them, of the catalogue's items
    good, bad = (event_message(window.receive(c.parse(c.ReceiveCase, receipt_data(f"bounds-{i}")))[0]
                               .shared_events()[0]) for i in range(2))
    bad.occurred_at.seconds = 253_402_300_800
    requests = [exchange_pb2.IngestEventsRequest(batch_id=i, sender_site=RECEIVING, events=[m])
                for i, m in enumerate([good, bad])]
    answers = stub.IngestEvents(iter(requests), timeout=10)
    first = next(answers)
    assert first.receipts[0].stored_through_seq == 1
    with pytest.raises(grpc.RpcError) as refused:
        next(answers)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (info := error_info(refused.value)) is not None and info.reason == "TIMESTAMP_OUT_OF_RANGE"


@pytest.mark.parametrize("document", ['{"checkpoint":' + "[" * 100_000 + "]" * 100_000 + "}", "[" * 20 + "]" * 20,
                                      '{"checkpoint": 1e999}', "not json"])
def test_a_checkpoint_to_countersign_that_is_not_bounded_json_is_invalid_argument(
    partner_port: tuple[exchange_pb2_grpc.ExchangeServiceStub, Checkpointer], document: str,
) -> None:
    stub, _ = partner_port
    with pytest.raises(grpc.RpcError) as refused:
        stub.CountersignCheckpoint(exchange_pb2.CountersignCheckpointRequest(signed_checkpoint_json=document),
                                   timeout=10)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "signed_checkpoint_json" in field_violations(refused.value)
