"""ReconcileService: a partner's reconcile rounds, answered from our digest index (mutual TLS)."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import structlog

from adapters.grpc.errors import translate_errors
from adapters.reconcile.wire import (
    counts_from,
    description_message,
    params_from,
    params_message,
    range_message,
    ranges_from,
)
from hub.domain.errors import InvalidInput, NotPermitted
from reconciliation.messages import Message
from reconciliation.responder import Responder
from tongban.v1 import reconcile_pb2 as pb
from tongban.v1 import reconcile_pb2_grpc

log = structlog.get_logger("tongban.reconcile")
MAX_DESCRIBE = 1000


class ReconcileServicer(reconcile_pb2_grpc.ReconcileServiceServicer):
    def __init__(self, responder: Responder, identify: Callable[[grpc.ServicerContext], str | None],
                 partners: frozenset[str]) -> None:
        self.responder, self.identify, self.partners = responder, identify, partners

    def _caller(self, context: grpc.ServicerContext) -> str:
        caller = self.identify(context)
        if caller is None or caller not in self.partners:
            log.warning("reconcile_refused", caller=caller)
            raise NotPermitted(f"站点 {caller} 不是本站的对账伙伴")
        return caller

    @translate_errors
    def Reconcile(self, request: pb.ReconcileRequest, context: grpc.ServicerContext) -> pb.ReconcileResponse:
        caller = self._caller(context)
        params = params_from(request.params) if request.HasField("params") else None
        try:
            session, agreed, reply = self.responder.round(
                caller, request.session_id, params, Message(ranges_from(request.ranges), more=request.more))
        except InvalidInput as refused:
            log.warning("reconcile_message_refused", partner=caller, reason=refused.message)
            raise
        return pb.ReconcileResponse(session_id=session, params=params_message(agreed),
                                    ranges=[range_message(r) for r in reply.ranges], consumed=reply.consumed)

    @translate_errors
    def DescribeCases(
        self, request: pb.DescribeCasesRequest, context: grpc.ServicerContext
    ) -> pb.DescribeCasesResponse:
        caller = self._caller(context)
        if len(request.cases) > MAX_DESCRIBE:
            raise InvalidInput.one("cases", f"一次最多询问 {MAX_DESCRIBE} 个办件")
        asked = [counts_from(m, f"cases.{i}") for i, m in enumerate(request.cases)]
        described = self.responder.describe(caller, request.session_id, asked)
        return pb.DescribeCasesResponse(cases=[description_message(d) for d in described])
