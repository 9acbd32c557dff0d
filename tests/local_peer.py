"""A partner in the same process, for unit tests: the Responder and exchange of another hub, called
directly. The same Reconciler runs against the gRPC peer (adapters/reconcile/grpc_client.py) in the
end-to-end tests. Bytes are the messages' estimated sizes: there is no wire in between."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from hub.application.case_sharing import CaseSharing
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent
from reconciliation.messages import CaseCounts, CaseDescription, Message, Params
from reconciliation.responder import Responder


class LocalPeer:
    def __init__(self, responder: Responder, asker: str) -> None:
        self.responder, self.asker = responder, asker
        self.partner = responder.log.site
        self.exchange = CaseSharing(responder.log)
        self.bytes_sent = self.bytes_received = 0

    def reconcile(self, session: str, params: Params | None, message: Message) -> tuple[str, Params, Message]:
        session, agreed, reply = self.responder.round(self.asker, session, params, message)
        self.bytes_sent += message.size()
        self.bytes_received += reply.size()
        return session, agreed, reply

    def describe(self, session: str, cases: Sequence[CaseCounts]) -> list[CaseDescription]:
        return self.responder.describe(self.asker, session, cases)

    def fetch(self, case_id: UUID, origin: str, from_seq: int) -> list[SharedEvent]:
        return self.exchange.events_for(self.asker, case_id, origin, from_seq)

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        return self.exchange.ingest(self.asker, events)
