"""Sites' hubs on in-memory stores, wired to each other without any channel: for unit tests of the
exchange, the relay and snapshots."""

from __future__ import annotations

from uuid import UUID

from adapters.store.memory_index import MemoryCaseIndex
from hub.application import commands as c
from hub.application.exchange import Exchange
from hub.application.service import CaseHub
from routing.catalogue import Catalogue
from routing.regions import RegionDirectory

CATALOGUE, REGIONS = Catalogue.load(), RegionDirectory.load()


def hub(site: str) -> CaseHub:
    return CaseHub(site=site, catalogue=CATALOGUE, regions=REGIONS, index=MemoryCaseIndex(),
                   env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


def relay(source: CaseHub, target: CaseHub, channel: str = "grpc") -> int:
    """One relay pass: outbound batch, partner ingest, receipts stored with the new position."""
    out, into = Exchange(source), Exchange(target)
    batch = out.outbound(target.site, out.position(target.site, channel))
    receipts = into.ingest(source.site, batch.events) if batch.events else []
    out.record_receipts(target.site, channel, receipts, batch.through)
    return len(batch.events)


def step(h: CaseHub, command: type[c.CaseCommand], case_id: UUID, actor: dict[str, str], **fields: object) -> None:
    h.execute(c.parse(command, {"case_id": str(case_id), "actor": actor, **fields}))
