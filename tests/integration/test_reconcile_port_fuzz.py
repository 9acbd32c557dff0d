"""The reconcile port under hostile input, over real gRPC: whatever a partner sends in a Reconcile round
or a DescribeCases question (any params, ranges of any mode, bounds, counts and bytes; any case ids and
origin counts), the answer is an answer or a refusal (INVALID_ARGUMENT, FAILED_PRECONDITION,
PERMISSION_DENIED, NOT_FOUND), never INTERNAL or UNKNOWN; and the port still answers a well-formed
round afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.reconcile.grpc_service import ReconcileServicer
from adapters.store.digest_index import MemoryDigestIndex, MemoryDigestRecorder
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from reconciliation.responder import Responder
from routing.catalogue import Catalogue
from routing.regions import RegionDirectory
from tests.builders import HANDLING, RECEIVING, receive_request
from tongban.v1 import reconcile_pb2 as pb
from tongban.v1 import reconcile_pb2_grpc

ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND}
U32, U64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)
BYTES = st.binary(max_size=64)


@pytest.fixture(scope="module")
def stub() -> Iterator[reconcile_pb2_grpc.ReconcileServiceStub]:
    """平顶山's reconcile port, holding a few cases shared with 苏州 (the caller)."""
    a = CaseHub(site=RECEIVING, catalogue=Catalogue.load(), regions=RegionDirectory.load(),
                env={"PERSISTENCE_MODULE": "adapters.store.digest_index:MemoryDigestFactory"})
    for i in range(3):
        a.receive(c.parse(c.ReceiveCase, receive_request(f"fuzz-{i}")))
    assert isinstance(a.recorder, MemoryDigestRecorder)
    servicer = ReconcileServicer(Responder(a, MemoryDigestIndex(a.recorder)), lambda _context: HANDLING,
                                 frozenset({HANDLING}))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.so_reuseport", 0)])
    reconcile_pb2_grpc.add_ReconcileServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield reconcile_pb2_grpc.ReconcileServiceStub(channel)
    finally:
        channel.close()
        server.stop(1).wait()
        a.close()


ranges = st.builds(
    pb.ReconcileRange, lower=BYTES, upper=BYTES, open_ended=st.booleans(), mode=st.integers(0, 7),
    count=U64, fingerprint=BYTES, items=st.binary(max_size=256), missing=st.binary(max_size=256),
)
params = st.builds(pb.ReconcileParams, digest_version=U32, branching=U32, id_list_threshold=U32,
                   max_frame_bytes=U32, max_rounds=U32)
rounds = st.builds(pb.ReconcileRequest, session_id=st.one_of(st.just(""), st.text(max_size=40)),
                   params=st.one_of(st.none(), params), ranges=st.lists(ranges, max_size=6), more=st.booleans())
origins = st.builds(pb.OriginCount, origin_site=st.text(max_size=8), count=st.integers(-(2**63), 2**63 - 1),
                    chain_head=st.text(max_size=70), head_at_your_count=st.text(max_size=70))
questions = st.builds(pb.DescribeCasesRequest, session_id=st.text(max_size=40), cases=st.lists(
    st.builds(pb.CaseCounts, case_id=st.one_of(st.uuids().map(str), st.text(max_size=40)),
              origins=st.lists(origins, max_size=4)), max_size=5))


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(request=rounds)
def test_any_reconcile_round_is_answered_or_refused(
    stub: reconcile_pb2_grpc.ReconcileServiceStub, request: pb.ReconcileRequest,
) -> None:
    assert code_of(lambda: stub.Reconcile(request, timeout=10)) in ANSWERS


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(request=questions)
def test_any_describe_question_is_answered_or_refused(
    stub: reconcile_pb2_grpc.ReconcileServiceStub, request: pb.DescribeCasesRequest,
) -> None:
    assert code_of(lambda: stub.DescribeCases(request, timeout=10)) in ANSWERS


def test_a_well_formed_round_is_still_answered_after_the_fuzzing(
    stub: reconcile_pb2_grpc.ReconcileServiceStub,
) -> None:
    opened = stub.Reconcile(pb.ReconcileRequest(params=pb.ReconcileParams(
        digest_version=1, branching=16, id_list_threshold=32, max_frame_bytes=1 << 20, max_rounds=64)), timeout=10)
    assert opened.session_id
