"""The digest index contract, for every store (memory fake, SQLite, PostgreSQL): written in the
save's own transaction, equal to digests recomputed from the cases, readable from a snapshot
that later saves do not move, and rebuilt from the log to the same bytes."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from adapters.bootstrap import build_digest_index, build_hub
from adapters.settings import PostgresSettings, Settings
from adapters.store.digest_index import MemoryDigestIndex, ensure_digests
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.domain.digests import DAY_MS, HOUR_MS, bucket_of, pair_digest, xor
from hub.domain.values import Actor
from reconciliation.ports import DigestIndex
from routing.catalogue import Catalogue
from routing.regions import RegionDirectory
from tests.builders import CLERK, HANDLER, HANDLING, RECEIVING, actor_data, receive_request

MEMORY_STORE = "adapters.store.digest_index:MemoryDigestFactory"


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[CaseHub, DigestIndex]]:
    if request.param == "memory":
        hub = CaseHub(site=RECEIVING, catalogue=Catalogue.load(), regions=RegionDirectory.load(),
                      env={"PERSISTENCE_MODULE": MEMORY_STORE})
        yield hub, MemoryDigestIndex(hub.recorder)  # type: ignore[arg-type]
        return
    settings = Settings(site=RECEIVING, data_dir=tmp_path / "data")
    if request.param == "postgres":
        postgres: PostgresSettings = request.getfixturevalue("postgres_schema")
        settings = replace(settings, store="postgres", postgres=postgres)
    hub = build_hub(settings)
    yield hub, build_digest_index(settings)
    hub.close()


def step(hub: CaseHub, command: type[c.CaseCommand], case_id: Any, actor: Actor, **fields: object) -> None:
    hub.execute(c.parse(command, {"case_id": str(case_id), "actor": actor_data(actor), **fields}))


def expected(hub: CaseHub, case_ids: list[Any]) -> dict[bytes, bytes]:
    out = {}
    for case_id in case_ids:
        case = hub.get_case(case_id)
        heads = {o: (case.last_seq(o), case.chain_head(o)) for o in case.chains}
        out[case_id.bytes] = pair_digest(case_id, (RECEIVING, HANDLING), heads)
    return out


Totals = list[tuple[int, int, bytes]]


def read(index: DigestIndex) -> tuple[dict[bytes, bytes], tuple[Totals, Totals]]:
    with index.snapshot(HANDLING) as snap:
        return dict(snap.items(b"", None)), (snap.days(), snap.hours())


def day_totals(items: dict[bytes, bytes]) -> tuple[Totals, Totals]:
    """Per day and per hour: count and XOR of the digests, as the store must keep them."""
    out = []
    for size in (DAY_MS, HOUR_MS):
        units: dict[int, tuple[int, bytes]] = {}
        for key, digest in items.items():
            n, fp = units.get(bucket_of(key, size), (0, bytes(16)))
            units[bucket_of(key, size)] = (n + 1, xor(fp, digest))
        out.append(sorted((u, n, fp) for u, (n, fp) in units.items()))
    return out[0], out[1]


def populate(hub: CaseHub) -> list[Any]:
    ids = []
    for i in range(4):
        case, _ = hub.receive(c.parse(c.ReceiveCase, receive_request(f"d-{i}")))
        step(hub, c.ForwardCase, case.id, CLERK)
        ids.append(case.id)
    partner = CaseHub(site=HANDLING, catalogue=hub.catalogue, regions=hub.regions,
                      env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    CaseSharing(partner).ingest(RECEIVING, [e for i in ids for e in hub.get_case(i).shared_events()])
    step(partner, c.SignCase, ids[0], HANDLER)
    CaseSharing(hub).ingest(HANDLING, partner.get_case(ids[0]).shared_events(HANDLING))  # the partner's event
    return ids


def test_the_index_equals_digests_recomputed_from_the_cases(store: tuple[CaseHub, DigestIndex]) -> None:
    hub, index = store
    ids = populate(hub)
    items, days = read(index)
    assert items == expected(hub, ids)
    assert days == day_totals(items)


def test_a_save_that_fails_leaves_the_index_as_it_was(store: tuple[CaseHub, DigestIndex]) -> None:
    hub, index = store
    ids = populate(hub)
    stale = hub.get_case(ids[1])
    step(hub, c.RaiseIssue, ids[1], CLERK, kind="dispute", description="争议")
    stale.raise_issue(kind=c.IssueKind.DISPUTE, description="另一次", actor=CLERK, site=hub.site)
    with pytest.raises(IntegrityError):
        hub.save(stale)
    items, days = read(index)
    assert items == expected(hub, ids) and days == day_totals(items)


def test_a_snapshot_does_not_move_while_cases_are_saved(store: tuple[CaseHub, DigestIndex]) -> None:
    hub, index = store
    ids = populate(hub)
    with index.snapshot(HANDLING) as snap:
        before = dict(snap.items(b"", None)), (snap.days(), snap.hours())
        step(hub, c.RaiseIssue, ids[2], CLERK, kind="dispute", description="争议")
        new, _ = hub.receive(c.parse(c.ReceiveCase, receive_request("d-new")))
        assert (dict(snap.items(b"", None)), (snap.days(), snap.hours())) == before
    items, _days = read(index)
    assert items == expected(hub, [*ids, new.id]) and items != before[0]


def test_rebuilding_from_the_log_gives_the_same_index(store: tuple[CaseHub, DigestIndex]) -> None:
    hub, index = store
    populate(hub)
    incremental = read(index)
    assert ensure_digests(hub) is False  # present: nothing to do
    assert ensure_digests(hub, force=True) is True
    assert read(index) == incremental


def test_items_read_a_page_from_a_key_on(store: tuple[CaseHub, DigestIndex]) -> None:
    """What reconciliation pages a dense hour with: the first ``limit`` items from ``lo``, in key order."""
    hub, index = store
    populate(hub)
    with index.snapshot(HANDLING) as snap:
        every = snap.items(b"", None)
        assert len(every) >= 3
        assert snap.items(b"", None, 2) == every[:2]
        assert snap.items(every[1][0], None, 2) == every[1:3]
        assert snap.items(every[1][0], every[2][0], 5) == every[1:2]


def test_batched_reads_agree_with_the_items(store: tuple[CaseHub, DigestIndex]) -> None:
    """What reconciliation asks of a message's ranges: many ranges' items, counts and XORs at once, and a
    range cut by rank, the same whether the database answers in one query or they are read range by range."""
    hub, index = store
    populate(hub)
    with index.snapshot(HANDLING) as snap:
        every = snap.items(b"", None)
        keys = [k for k, _ in every]
        ranges = [(b"", None), (keys[1], None), (b"", keys[-1]), (keys[1], keys[2]), (keys[2], keys[2])]

        def inside(lo: bytes, hi: bytes | None) -> list[tuple[bytes, bytes]]:
            return [(k, d) for k, d in every if k >= lo and (hi is None or k < hi)]

        assert snap.summaries(ranges) == [
            (len(inside(lo, hi)), functools.reduce(xor, (d for _, d in inside(lo, hi)), bytes(16)))
            for lo, hi in ranges]
        assert snap.summaries([]) == []
        assert snap.item_lists(ranges) == [inside(lo, hi) for lo, hi in ranges]
        assert snap.item_lists([]) == []
        cuts = [(b"", None, 1, 2), (keys[1], None, 0, 1), (b"", keys[-1], 5, 3), (keys[2], keys[2], 0, 1)]
        wanted = []
        for lo, hi, first, each in cuts:
            expected: dict[int, list[tuple[bytes, bytes]]] = {}
            for rank, item in enumerate(inside(lo, hi)):
                expected.setdefault(0 if rank < first else 1 + (rank - first) // each, []).append(item)
            wanted.append([(i, len(seg), functools.reduce(xor, (d for _, d in seg), bytes(16)), seg[0][0], seg[-1][0])
                           for i, seg in sorted(expected.items())])
        assert snap.segments(cuts) == wanted
        assert snap.segments([]) == []
