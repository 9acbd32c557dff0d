"""The partner as a reconcile run sees it, over gRPC: reconcile rounds and descriptions on
ReconcileService, event fetch and delivery on ExchangeService (the normal exchange path).
Counts the bytes each way as they go on the wire."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from adapters.exchange.grpc_client import GrpcPartner
from adapters.reconcile.wire import (
    counts_message,
    description_from,
    params_from,
    params_message,
    range_from,
    range_message,
)
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent
from reconciliation.messages import CaseCounts, CaseDescription, Message, Params
from tongban.v1 import reconcile_pb2 as pb
from tongban.v1 import reconcile_pb2_grpc


class GrpcReconcilePeer:
    def __init__(self, exchange: GrpcPartner, timeout: float = 30.0) -> None:
        self.exchange, self.timeout = exchange, timeout
        self.partner = exchange.partner
        self.stub = reconcile_pb2_grpc.ReconcileServiceStub(exchange.channel)
        self.bytes_sent = self.bytes_received = 0

    def reconcile(self, session: str, params: Params | None, message: Message) -> tuple[str, Params, Message]:
        request = pb.ReconcileRequest(session_id=session, ranges=[range_message(r) for r in message.ranges],
                                      more=message.more)
        if params is not None:
            request.params.CopyFrom(params_message(params))
        response = self.exchange.retrying(self.stub.Reconcile, request, timeout=self.timeout)
        self.bytes_sent += request.ByteSize()
        self.bytes_received += response.ByteSize()
        ranges = tuple(range_from(m, f"ranges.{i}") for i, m in enumerate(response.ranges))
        return response.session_id, params_from(response.params), Message(ranges, response.consumed)

    def describe(self, session: str, cases: Sequence[CaseCounts]) -> list[CaseDescription]:
        request = pb.DescribeCasesRequest(session_id=session, cases=[counts_message(c) for c in cases])
        response = self.exchange.retrying(self.stub.DescribeCases, request, timeout=self.timeout)
        self.bytes_sent += request.ByteSize()
        self.bytes_received += response.ByteSize()
        return [description_from(m, f"cases.{i}") for i, m in enumerate(response.cases)]

    def fetch(self, case_id: UUID, origin: str, from_seq: int) -> list[SharedEvent]:
        return self.exchange.fetch(case_id, origin, from_seq)

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        return self.exchange.deliver(events)
