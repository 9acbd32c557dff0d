"""The audit port: AuditService plus the staff API's reads, for auditors and partner sites, read-only.

Who may do what is decided from the verified client certificate (adapters/tls.py): an auditor
reads everything and writes nothing; a partner site reads only the cases shared with it, through
AuditService only. Anything else is PERMISSION_DENIED and logged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import grpc
import structlog

from adapters.grpc.errors import parse_uuid, translate_errors
from adapters.grpc.translate import actor_message, case_message, wire_enum
from audit.trace import overdue, trace
from hub.application.case_clocks import CaseClocks
from hub.application.case_sharing import CaseSharing
from hub.application.ports import CaseQuery, SiteLog
from hub.application.read_model import CaseReadModel
from hub.domain.errors import NotPermitted
from hub.domain.identifiers import LOCAL_TZ
from hub.domain.values import Party
from tongban.v1 import audit_pb2, audit_pb2_grpc
from tongban.v1 import case_pb2 as pb

log = structlog.get_logger("tongban.audit")
Identity = tuple[str, str]
AUDIT_READS = frozenset({"GetCase", "ListCases", "GetCaseHistory"})


class ReadOnlyInterceptor(grpc.ServerInterceptor):
    """Refuses every write on the audit port, and the staff reads to anyone but an auditor."""

    def __init__(self, identify: Callable[[Any], Identity | None]) -> None:
        self.identify = identify

    def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        service, _, method = details.method.rpartition("/")
        if handler is None or service.endswith("AuditService"):
            return handler
        if service.endswith("CaseService") and method in AUDIT_READS:
            return _only_auditors(handler, self.identify, method)
        return _deny(handler, f"{method} is not allowed on the audit port (read-only)")


def _deny(handler: Any, message: str) -> Any:
    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        log.warning("audit_write_refused", reason=message)
        context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    return grpc.unary_unary_rpc_method_handler(
        refuse, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


def _only_auditors(handler: Any, identify: Callable[[Any], Identity | None], method: str) -> Any:
    inner = handler.unary_unary

    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        who = identify(context)
        if who is None or who[0] != "auditor":
            log.warning("audit_read_refused", caller=str(who), method=method)
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "only auditors may read cases on the audit port")
        return inner(request, context)

    return grpc.unary_unary_rpc_method_handler(
        guarded, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    def __init__(
        self, log: SiteLog, read_model: CaseReadModel, clocks: CaseClocks, identify: Callable[[Any], Identity | None],
        verify: Callable[[UUID | None], tuple[int, list[Any]]],
        export: Callable[[UUID], str] | None = None,
    ) -> None:
        self.export = export
        self.log, self.read_model, self.clocks = log, read_model, clocks
        self.sharing = CaseSharing(log)
        self.identify = identify
        self.verify = verify

    def _caller(self, context: grpc.ServicerContext) -> Identity:
        who = self.identify(context)
        if who is None:
            raise NotPermitted("no verified certificate")
        return who

    def _case(self, who: Identity, case_id: str) -> Any:
        case = self.log.get_case(parse_uuid(case_id, "case_id"))
        if who[0] == "site" and who[1] not in case.sites:
            log.warning("audit_read_refused", caller=who[1], case_id=case_id)
            raise NotPermitted(f"办件 {case_id} 未与站点 {who[1]} 共享")
        return case

    @translate_errors
    def TraceCase(self, request: audit_pb2.TraceCaseRequest, context: grpc.ServicerContext) -> Any:
        case = self._case(self._caller(context), request.case_id)
        clocks = self.clocks(case)
        receipts = self.sharing.receipts(case.id)
        steps = []
        for item in trace(case, clocks, receipts, self.log.site):
            e = item.event
            step = audit_pb2.TraceStep(
                order=item.order, step=e.type, step_label=item.label, site=e.origin, seq=e.seq,
                actor=actor_message(e.actor),
                responsible=wire_enum(pb.Party.DESCRIPTOR, item.responsible),
                clock_label=item.clock.label if item.clock else "",
                deadline=wire_enum(pb.ClockStatus.DESCRIPTOR, item.clock.status if item.clock else None),
                due_date=item.clock.due.isoformat() if item.clock and item.clock.due else "",
                receipted_by=list(item.receipted_by), event_hash=e.hash(),
            )
            step.at.FromDatetime(e.occurred_at.astimezone(UTC))
            steps.append(step)
        heads = {origin: case.chain_head(origin) for origin in case.chains}
        return audit_pb2.TraceCaseResponse(case=case_message(case, clocks), steps=steps, chain_heads=heads)

    @translate_errors
    def ListAccountability(self, request: audit_pb2.ListAccountabilityRequest, context: grpc.ServicerContext) -> Any:
        who = self._caller(context)
        partner = who[1] if who[0] == "site" else (request.partner or None)
        items = []
        after: str | None = None
        today = datetime.now(LOCAL_TZ).date()
        while True:
            rows = self.read_model.list_cases(CaseQuery(as_of=today, partner=partner, page_size=500, after=after))
            for row in rows:
                case = self.log.get_case(UUID(row.case_id))
                clocks = self.clocks(case)
                for issue_id, issue in case.issues.items():
                    if not issue["resolved"]:
                        holder = issue["responsible"] or issue["raised_by_party"]
                        items.append(audit_pb2.AccountabilityItem(
                            case_id=row.case_id, case_number=row.case_number, kind="issue", subject=issue_id,
                            label=issue["description"], holder=wire_enum(pb.Party.DESCRIPTOR, _party(holder))))
                for clock in overdue(case, clocks):
                    items.append(audit_pb2.AccountabilityItem(
                        case_id=row.case_id, case_number=row.case_number, kind="overdue", subject=clock.code,
                        label=clock.label, holder=wire_enum(pb.Party.DESCRIPTOR, clock.holder),
                        due_date=clock.due.isoformat() if clock.due else "",
                        status=wire_enum(pb.ClockStatus.DESCRIPTOR, clock.status)))
            if len(rows) < 500:
                break
            after = rows[-1].case_id
        return audit_pb2.ListAccountabilityResponse(items=items)

    @translate_errors
    def VerifyChain(self, request: audit_pb2.VerifyChainRequest, context: grpc.ServicerContext) -> Any:
        who = self._caller(context)
        case_id = self._case(who, request.case_id).id if request.case_id else None
        if case_id is None and who[0] != "auditor":
            raise NotPermitted("only auditors may verify the whole site chain")
        checked, findings = self.verify(case_id)
        return audit_pb2.VerifyChainResponse(
            intact=not findings, checked_through=checked,
            findings=[audit_pb2.ChainFinding(kind=f.kind, position=f.position, case_id=str(f.originator_id),
                                             version=f.version, detail=f.detail) for f in findings],
        )


    @translate_errors
    def ExportCase(self, request: audit_pb2.ExportCaseRequest, context: grpc.ServicerContext) -> Any:
        case = self._case(self._caller(context), request.case_id)
        if self.export is None:
            raise NotPermitted("this site does not export proof bundles")
        return audit_pb2.ExportCaseResponse(bundle_json=self.export(case.id))


def _party(value: str) -> Party:
    return Party(value)
