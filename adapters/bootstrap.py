"""Composition root: the one place that turns Settings into a running CaseHub.

Nothing is opened at import time; everything is built here, in order, from the settings object.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from adapters.calendar_notices import load_notices
from adapters.settings import PostgresSettings, Settings
from adapters.store.digest_index import PostgresDigestIndex, SqliteDigestIndex
from adapters.store.postgres_index import PostgresCaseIndex
from adapters.store.sqlite_index import SqliteCaseIndex
from audit.ledger import CheckpointLedger
from hub.application.ports import CaseIndex
from hub.application.service import CaseHub
from hub.domain.workdays import WorkCalendar
from reconciliation.messages import Params
from reconciliation.ports import DigestIndex
from reconciliation.reconciler import Policy
from routing.agreements import Agreements
from routing.catalogue import Catalogue
from routing.regions import RegionDirectory
from routing.router import Router


def conninfo(pg: PostgresSettings) -> str:
    return psycopg.conninfo.make_conninfo(
        host=pg.host, port=pg.port, dbname=pg.dbname, user=pg.user, password=pg.password or None
    )


def ensure_postgres_schema(pg: PostgresSettings) -> None:
    """The event store expects its schema to exist; create it (idempotent) before the library connects."""
    with psycopg.connect(conninfo(pg), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(pg.schema)))


def build_index(settings: Settings) -> CaseIndex:
    if settings.store == "sqlite":
        return SqliteCaseIndex(settings.data_dir / "case_index.sqlite3")
    return PostgresCaseIndex(conninfo(settings.postgres), settings.postgres.schema)


def build_chain_store(settings: Settings) -> Any:
    """Where the site-wide audit chain is kept: beside the event store."""
    from adapters.audit.chain_store import PostgresChainStore, SqliteChainStore

    if settings.store == "sqlite":
        return SqliteChainStore(settings.data_dir / "audit_chain.sqlite3")
    return PostgresChainStore(conninfo(settings.postgres), settings.postgres.schema)


def build_digest_index(settings: Settings) -> DigestIndex:
    """The reconciliation digest index: the tables the event store's recorder keeps beside the events."""
    if settings.store == "sqlite":
        return SqliteDigestIndex(settings.data_dir / "events.sqlite3")
    return PostgresDigestIndex(conninfo(settings.postgres), settings.postgres.schema)


def reconcile_policy(settings: Settings) -> Policy:
    r = settings.reconcile
    params = Params(branching=r.branching, id_list_threshold=r.id_list_threshold, max_frame_bytes=r.max_frame_bytes)
    return Policy(params=params, breaker_share=r.breaker_share, breaker_floor=r.breaker_floor,
                  pending_grace=timedelta(seconds=r.pending_grace))


def build_hub(settings: Settings) -> CaseHub:
    if settings.store == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    else:
        ensure_postgres_schema(settings.postgres)
    notices = load_notices(settings.calendar_dir) if settings.calendar_dir else []
    catalogue, regions = Catalogue.load(), RegionDirectory.load()
    agreements = Agreements.load(settings.agreements_file)
    agreements.check_references(catalogue=catalogue, regions=regions)
    return CaseHub(
        site=settings.site,
        catalogue=catalogue,
        regions=regions,
        index=build_index(settings),
        calendar=WorkCalendar(notices),
        policy=settings.policy,
        env=settings.event_store_env(),
        router=Router(settings.site, catalogue, regions, agreements),
        snapshot_interval=settings.snapshot_interval,
        also_snapshot=(CheckpointLedger,),  # loaded on every checkpoint tick, and it grows for years
    )
