"""CaseService: the site API for window staff and local systems.

Every lifecycle RPC has the same shape (request -> command -> writer -> case message): each is a
one-line method over ``_step``. The request messages carry exactly the command's fields, and a
request is validated by its command model before any case is loaded; reads are written out.

Who acts is the authenticated caller (adapters/auth: the gate runs each call inside
``acting_as(caller)``), never the request: a request's ``actor``, when set, must name the same staff
id, role and site as the credential (else PERMISSION_DENIED ACTOR_MISMATCH); left empty, the
credential's actor is used.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

import grpc

from adapters.auth.caller import current_caller
from adapters.auth.errors import Refused, Unauthenticated
from adapters.grpc.errors import parse_uuid, translate_errors
from adapters.grpc.translate import case_message, history_message, receipt_message, request_data, summary_message
from hub.application import commands as c
from hub.application.case_clocks import CaseClocks
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.application.history import case_history
from hub.application.read_model import CaseReadModel
from hub.domain.errors import InvalidInput
from hub.domain.identifiers import LOCAL_TZ
from ops.metrics import SiteMetrics
from tongban.v1 import case_pb2, case_service_pb2_grpc
from tongban.v1 import case_service_pb2 as svc


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

    def _step(self, command: type[c.CaseCommand], request: Any) -> case_pb2.Case:
        """Validate the request as ``command``, have the writer take it, and answer with the case."""
        return self._case(self.writer.execute(c.parse(command, acting(request))))

    @translate_errors
    def ReceiveCase(self, request: svc.ReceiveCaseRequest, context: grpc.ServicerContext) -> svc.ReceiveCaseResponse:
        command = c.parse(c.ReceiveCase, acting(request), self.reference)
        case, created = self.writer.receive(command)
        return svc.ReceiveCaseResponse(case=self._case(case), created=created)

    @translate_errors
    def RefuseIntake(self, request: svc.RefuseIntakeRequest, context: grpc.ServicerContext) -> svc.RefuseIntakeResponse:
        return svc.RefuseIntakeResponse(case=self._step(c.RefuseIntake, request))

    @translate_errors
    def ForwardCase(self, request: svc.ForwardCaseRequest, context: grpc.ServicerContext) -> svc.ForwardCaseResponse:
        return svc.ForwardCaseResponse(case=self._step(c.ForwardCase, request))

    @translate_errors
    def SignCase(self, request: svc.SignCaseRequest, context: grpc.ServicerContext) -> svc.SignCaseResponse:
        return svc.SignCaseResponse(case=self._step(c.SignCase, request))

    @translate_errors
    def RequestSupplement(
        self, request: svc.RequestSupplementRequest, context: grpc.ServicerContext
    ) -> svc.RequestSupplementResponse:
        case = self._step(c.RequestSupplement, request)
        if self.metrics is not None:
            self.metrics.supplement_requests.inc()
        return svc.RequestSupplementResponse(case=case)

    @translate_errors
    def SubmitSupplement(
        self, request: svc.SubmitSupplementRequest, context: grpc.ServicerContext
    ) -> svc.SubmitSupplementResponse:
        return svc.SubmitSupplementResponse(case=self._step(c.SubmitSupplement, request))

    @translate_errors
    def RejectCase(self, request: svc.RejectCaseRequest, context: grpc.ServicerContext) -> svc.RejectCaseResponse:
        return svc.RejectCaseResponse(case=self._step(c.RejectCase, request))

    @translate_errors
    def ReturnCase(self, request: svc.ReturnCaseRequest, context: grpc.ServicerContext) -> svc.ReturnCaseResponse:
        return svc.ReturnCaseResponse(case=self._step(c.ReturnCase, request))

    @translate_errors
    def AcceptCase(self, request: svc.AcceptCaseRequest, context: grpc.ServicerContext) -> svc.AcceptCaseResponse:
        return svc.AcceptCaseResponse(case=self._step(c.AcceptCase, request))

    @translate_errors
    def SuspendCase(self, request: svc.SuspendCaseRequest, context: grpc.ServicerContext) -> svc.SuspendCaseResponse:
        return svc.SuspendCaseResponse(case=self._step(c.SuspendCase, request))

    @translate_errors
    def ResumeCase(self, request: svc.ResumeCaseRequest, context: grpc.ServicerContext) -> svc.ResumeCaseResponse:
        return svc.ResumeCaseResponse(case=self._step(c.ResumeCase, request))

    @translate_errors
    def StartSpecialProcedure(
        self, request: svc.StartSpecialProcedureRequest, context: grpc.ServicerContext
    ) -> svc.StartSpecialProcedureResponse:
        return svc.StartSpecialProcedureResponse(case=self._step(c.StartSpecialProcedure, request))

    @translate_errors
    def EndSpecialProcedure(
        self, request: svc.EndSpecialProcedureRequest, context: grpc.ServicerContext
    ) -> svc.EndSpecialProcedureResponse:
        return svc.EndSpecialProcedureResponse(case=self._step(c.EndSpecialProcedure, request))

    @translate_errors
    def DecideCase(self, request: svc.DecideCaseRequest, context: grpc.ServicerContext) -> svc.DecideCaseResponse:
        return svc.DecideCaseResponse(case=self._step(c.DecideCase, request))

    @translate_errors
    def DispatchResult(
        self, request: svc.DispatchResultRequest, context: grpc.ServicerContext
    ) -> svc.DispatchResultResponse:
        return svc.DispatchResultResponse(case=self._step(c.DispatchResult, request))

    @translate_errors
    def ConfirmDelivery(
        self, request: svc.ConfirmDeliveryRequest, context: grpc.ServicerContext
    ) -> svc.ConfirmDeliveryResponse:
        return svc.ConfirmDeliveryResponse(case=self._step(c.ConfirmDelivery, request))

    @translate_errors
    def ArchiveCase(self, request: svc.ArchiveCaseRequest, context: grpc.ServicerContext) -> svc.ArchiveCaseResponse:
        return svc.ArchiveCaseResponse(case=self._step(c.ArchiveCase, request))

    @translate_errors
    def WithdrawCase(self, request: svc.WithdrawCaseRequest, context: grpc.ServicerContext) -> svc.WithdrawCaseResponse:
        return svc.WithdrawCaseResponse(case=self._step(c.WithdrawCase, request))

    @translate_errors
    def RaiseIssue(self, request: svc.RaiseIssueRequest, context: grpc.ServicerContext) -> svc.RaiseIssueResponse:
        return svc.RaiseIssueResponse(case=self._step(c.RaiseIssue, request))

    @translate_errors
    def AssignResponsibility(
        self, request: svc.AssignResponsibilityRequest, context: grpc.ServicerContext
    ) -> svc.AssignResponsibilityResponse:
        return svc.AssignResponsibilityResponse(case=self._step(c.AssignResponsibility, request))

    @translate_errors
    def ResolveIssue(self, request: svc.ResolveIssueRequest, context: grpc.ServicerContext) -> svc.ResolveIssueResponse:
        return svc.ResolveIssueResponse(case=self._step(c.ResolveIssue, request))

    @translate_errors
    def RateCase(self, request: svc.RateCaseRequest, context: grpc.ServicerContext) -> svc.RateCaseResponse:
        return svc.RateCaseResponse(case=self._step(c.RateCase, request))

    @translate_errors
    def RecordCallback(
        self, request: svc.RecordCallbackRequest, context: grpc.ServicerContext
    ) -> svc.RecordCallbackResponse:
        return svc.RecordCallbackResponse(case=self._step(c.RecordCallback, request))

    @translate_errors
    def CloseBadReview(
        self, request: svc.CloseBadReviewRequest, context: grpc.ServicerContext
    ) -> svc.CloseBadReviewResponse:
        return svc.CloseBadReviewResponse(case=self._step(c.CloseBadReview, request))

    @translate_errors
    def RecordFeedback(
        self, request: svc.RecordFeedbackRequest, context: grpc.ServicerContext
    ) -> svc.RecordFeedbackResponse:
        return svc.RecordFeedbackResponse(case=self._step(c.RecordFeedback, request))

    @translate_errors
    def GetCase(self, request: svc.GetCaseRequest, context: grpc.ServicerContext) -> svc.GetCaseResponse:
        case = self.hub.get_case(parse_uuid(request.case_id, "case_id"))
        return svc.GetCaseResponse(case=self._case(case, _as_of(request)))

    @translate_errors
    def GetCaseHistory(
        self, request: svc.GetCaseHistoryRequest, context: grpc.ServicerContext
    ) -> svc.GetCaseHistoryResponse:
        case_id = parse_uuid(request.case_id, "case_id")
        entries = [history_message(item) for item in case_history(self.hub, case_id)]
        receipts = [receipt_message(r) for r in CaseSharing(self.hub).receipts(case_id)]
        return svc.GetCaseHistoryResponse(
            case=self._case(self.hub.get_case(case_id), _as_of(request)), entries=entries, receipts=receipts
        )

    @translate_errors
    def ListCases(self, request: svc.ListCasesRequest, context: grpc.ServicerContext) -> svc.ListCasesResponse:
        as_of = (_as_of(request) or datetime.now(LOCAL_TZ)).astimezone(LOCAL_TZ).date()
        query = c.parse(c.ListCasesQuery, {**request_data(request), "as_of": as_of}).to_query()
        rows = self.read_model.list_cases(query)
        token = c.page_token(rows[-1].case_id) if len(rows) == query.page_size else ""
        return svc.ListCasesResponse(cases=[summary_message(r, as_of) for r in rows], next_page_token=token)


ACTOR_FIELDS = ("staff_id", "role", "site")


def acting(request: Any) -> dict[str, Any]:
    """The request's fields with the actor taken from the credential of the call being served."""
    caller = current_caller()
    if caller is None:
        raise Unauthenticated("UNAUTHENTICATED", "未登录：请先登录（tongban login）")
    data = request_data(request)
    ours = caller.actor()
    claimed = data.get("actor") or {}
    for key in ACTOR_FIELDS:
        if claimed.get(key) and claimed[key] != ours[key]:
            raise Refused("ACTOR_MISMATCH", f"请求中的操作人（{key}）与登录身份不一致",
                          {"field": key, "credential": ours[key]})
    data["actor"] = ours
    return data
# "As of" days a staff client may ask about: checked before conversion (beyond the Timestamp range
# ToDatetime raises; near its ends the local date overflows) and far wider than any case's life.
AS_OF_EARLIEST, AS_OF_LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


def _as_of(request: Any) -> datetime | None:
    if not request.HasField("as_of"):
        return None
    stamp = request.as_of
    if not (int(AS_OF_EARLIEST.timestamp()) <= stamp.seconds < int(AS_OF_LATEST.timestamp())
            and 0 <= stamp.nanos <= 999_999_999):
        raise InvalidInput.one("as_of", f"须在 {AS_OF_EARLIEST.date()} 与 {AS_OF_LATEST.date()} 之间（不含后者）")
    return stamp.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]
