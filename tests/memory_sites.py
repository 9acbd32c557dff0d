"""Sites' hubs on in-memory stores, wired to each other without any channel: for unit tests of the
exchange, the relay and snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from adapters.exchange.channel import Pending, answered
from adapters.store.memory_index import MemoryCaseIndex
from hub.application import commands as c
from hub.application.case_clocks import CaseClocks
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.application.read_model import CaseReadModel
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent
from routing.catalogue import Catalogue
from routing.regions import RegionDirectory

CATALOGUE, REGIONS = Catalogue.load(), RegionDirectory.load()


def hub(site: str) -> CaseHub:
    return CaseHub(site=site, catalogue=CATALOGUE, regions=REGIONS,
                   env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def read_model(h: CaseHub) -> CaseReadModel:
    """The site's case read model on an empty in-memory index (it folds from the log's start)."""
    return CaseReadModel(h, MemoryCaseIndex(), CaseClocks(now=h.now))


class DirectChannel:
    """A channel that hands events straight to the partner's CaseSharing (no wire): the unit tests' fake,
    held to the same contract as the gRPC and NATS channels (tests/integration/test_channel_contract.py)."""

    channel_name = "direct"

    def __init__(self, partner: CaseSharing, sender: str) -> None:
        self.target, self.sender, self.partner = partner, sender, partner.site

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        return self.target.ingest(self.sender, events)

    def deliver_async(self, events: Sequence[SharedEvent]) -> Pending:
        return answered(self.deliver, events)

    def resend(self, events: Sequence[SharedEvent], receipt: CaseReceipt) -> list[CaseReceipt]:
        return self.deliver(events)

    def close(self) -> None:
        return None


def relay(source: CaseHub, target: CaseHub, channel: str = "grpc") -> int:
    """One relay pass: outbound batch, partner ingest, receipts stored with the new position."""
    out, into = CaseSharing(source), CaseSharing(target)
    batch = out.outbound(target.site, out.position(target.site, channel))
    receipts = into.ingest(source.site, batch.events) if batch.events else []
    out.record_receipts(target.site, channel, receipts, batch.through)
    return len(batch.events)


def step(h: CaseHub, command: type[c.CaseCommand], case_id: UUID, actor: dict[str, str], **fields: object) -> None:
    h.execute(c.parse(command, {"case_id": str(case_id), "actor": actor, **fields}))
