"""CaseService: the site API for window staff and local systems.

Every lifecycle RPC has the same shape (request -> command -> hub -> case), so they are built from
one table instead of twenty-four hand-written methods; reads are written out.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import grpc

from adapters.grpc.errors import translate_errors
from adapters.grpc.translate import case_message, history_message, receipt_message, request_data, summary_message
from hub.application import commands as c
from hub.application.case_clocks import CaseClocks
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.application.history import case_history
from hub.application.ports import CaseQuery, DueFilter
from hub.application.read_model import CaseReadModel
from hub.domain.errors import InvalidInput
from hub.domain.identifiers import LOCAL_TZ
from hub.domain.lifecycle import CaseState
from ops.metrics import SiteMetrics
from tongban.v1 import case_pb2, case_service_pb2_grpc
from tongban.v1 import case_service_pb2 as svc

# RPC name -> command. The request messages carry exactly the command's fields.
STEP_RPCS: dict[str, type[c.CaseCommand]] = {
    name: getattr(c, name)
    for name in (
        "RefuseIntake", "ForwardCase", "SignCase", "RequestSupplement", "SubmitSupplement", "RejectCase",
        "ReturnCase", "AcceptCase", "SuspendCase", "ResumeCase", "StartSpecialProcedure",
        "EndSpecialProcedure", "DecideCase", "DispatchResult", "ConfirmDelivery", "ArchiveCase",
        "WithdrawCase", "RaiseIssue", "AssignResponsibility", "ResolveIssue", "RateCase", "RecordCallback",
        "CloseBadReview", "RecordFeedback",
    )
}
MAX_PAGE = 500
_DUE = {1: DueFilter.WARNING_OR_BREACHED, 2: DueFilter.BREACHED}


class Writer(Protocol):
    """Where the servicer sends writes: the hub itself, or a GroupCommitter in front of it."""

    def receive(self, cmd: c.ReceiveCase) -> tuple[Any, bool]: ...

    def execute(self, cmd: c.CaseCommand) -> Any: ...


class CaseServicer(case_service_pb2_grpc.CaseServiceServicer):
    def __init__(
        self, hub: CaseHub, read_model: CaseReadModel, clocks: CaseClocks, metrics: SiteMetrics | None = None,
        writer: Writer | None = None,
    ) -> None:
        self.hub = hub
        self.read_model, self.clocks = read_model, clocks
        self.metrics = metrics
        self.writer: Writer = writer or hub
        self.reference = c.ReferenceData(hub.catalogue, hub.regions)

    def _case(self, case: Any, as_of: datetime | None = None) -> case_pb2.Case:
        return case_message(case, self.clocks(case, as_of))

    @translate_errors
    def ReceiveCase(self, request: svc.ReceiveCaseRequest, context: grpc.ServicerContext) -> svc.ReceiveCaseResponse:
        command = c.parse(c.ReceiveCase, request_data(request), self.reference)
        case, created = self.writer.receive(command)
        return svc.ReceiveCaseResponse(case=self._case(case), created=created)

    @translate_errors
    def GetCase(self, request: svc.GetCaseRequest, context: grpc.ServicerContext) -> svc.GetCaseResponse:
        case = self.hub.get_case(_case_id(request.case_id))
        return svc.GetCaseResponse(case=self._case(case, _as_of(request)))

    @translate_errors
    def GetCaseHistory(
        self, request: svc.GetCaseHistoryRequest, context: grpc.ServicerContext
    ) -> svc.GetCaseHistoryResponse:
        case_id = _case_id(request.case_id)
        entries = [history_message(item) for item in case_history(self.hub, case_id)]
        receipts = [receipt_message(r) for r in CaseSharing(self.hub).receipts(case_id)]
        return svc.GetCaseHistoryResponse(
            case=self._case(self.hub.get_case(case_id), _as_of(request)), entries=entries, receipts=receipts
        )

    @translate_errors
    def ListCases(self, request: svc.ListCasesRequest, context: grpc.ServicerContext) -> svc.ListCasesResponse:
        if request.page_size < 0 or request.page_size > MAX_PAGE:
            raise InvalidInput.one("page_size", f"须在 0 到 {MAX_PAGE} 之间")
        states = frozenset(
            CaseState[case_pb2.CaseState.Name(s).removeprefix("CASE_STATE_")].value
            for s in request.states
            if s != 0 and s in case_pb2.CaseState.values()
        )
        if len(states) != len({s for s in request.states if s != 0}):
            raise InvalidInput.one("states", "包含未知的状态")
        if request.due not in (0, *_DUE):
            raise InvalidInput.one("due", "取值无效")
        if request.partner and not (len(request.partner) == 6 and request.partner.isdigit()):
            raise InvalidInput.one("partner", "须为 6 位行政区划代码")
        as_of = (_as_of(request) or datetime.now(LOCAL_TZ)).astimezone(LOCAL_TZ).date()
        page_size = request.page_size or 50
        query = CaseQuery(
            as_of=as_of,
            states=states,
            due=_DUE.get(request.due),
            partner=request.partner or None,
            page_size=page_size,
            after=_decode_token(request.page_token),
        )
        rows = self.read_model.list_cases(query)
        token = _encode_token(rows[-1].case_id) if len(rows) == page_size else ""
        return svc.ListCasesResponse(cases=[summary_message(r, as_of) for r in rows], next_page_token=token)


def _step_rpc(name: str, command: type[c.CaseCommand]) -> Any:
    response_type = getattr(svc, f"{name}Response")

    @translate_errors
    def handler(self: CaseServicer, request: Any, context: grpc.ServicerContext) -> Any:
        case = self.writer.execute(c.parse(command, request_data(request)))
        if command is c.RequestSupplement and self.metrics is not None:
            self.metrics.supplement_requests.inc()
        return response_type(case=self._case(case))

    handler.__name__ = name
    return handler


for _name, _command in STEP_RPCS.items():
    setattr(CaseServicer, _name, _step_rpc(_name, _command))


def _as_of(request: Any) -> datetime | None:
    if not request.HasField("as_of"):
        return None
    return request.as_of.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


def _case_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput.one("case_id", "不是有效的办件编号(UUID)") from None


def _encode_token(case_id: str) -> str:
    return base64.urlsafe_b64encode(case_id.encode()).decode()


def _decode_token(token: str) -> str | None:
    if not token:
        return None
    try:
        return str(UUID(base64.urlsafe_b64decode(token.encode()).decode()))
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput.one("page_token", "无效的分页标记") from None
