"""Composition root: the one place that turns Settings into a running site, servers included.

Nothing is opened at import time; everything is built here, in order, from the settings object, and
whoever builds a thing closes it: ``build_site`` hands the site the closers of what it built, and
closes them itself if building fails half way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

import grpc
import psycopg
import structlog
from psycopg import sql

from adapters.audit.chain_store import PostgresChainStore, SqliteChainStore
from adapters.audit.servicer import AuditServicer, ReadOnlyInterceptor
from adapters.audit.signing import Checkpointer, load_or_create_key
from adapters.audit.site_chain import SiteChain
from adapters.auth.authenticator import Authenticator
from adapters.auth.directory import SqlStaffDirectory, postgres_directory, sqlite_directory
from adapters.auth.interceptor import AuthInterceptor
from adapters.auth.oidc import OidcVerifier
from adapters.auth.servicer import AuthServicer
from adapters.auth.throttle import LoginThrottle
from adapters.auth.tokens import TokenSigner, load_or_create_signing_key
from adapters.background import ChainFollower, CheckpointSigner, ParkedCounter, ReadinessWatch
from adapters.calendar_notices import load_notices
from adapters.exchange.channel import Channel
from adapters.exchange.grpc_client import GrpcPartner
from adapters.exchange.grpc_service import ExchangeServicer
from adapters.exchange.nats_channel import NatsInbox, NatsPartner, Sealer
from adapters.exchange.relay import Relay
from adapters.grpc.case_servicer import CaseServicer
from adapters.grpc.interceptors import LoggingInterceptor
from adapters.grpc.server import MAX_MESSAGE_BYTES, PortServer, SiteServer, secure_server
from adapters.index_follower import IndexFollower
from adapters.metering import case_counts
from adapters.metrics_http import MetricsEndpoint
from adapters.nats.access import NatsAccess
from adapters.reconcile.grpc_client import GrpcReconcilePeer
from adapters.reconcile.grpc_service import ReconcileServicer
from adapters.reconcile.schedule import ReconcileSchedule
from adapters.settings import PostgresSettings, Settings
from adapters.site import Service, Site
from adapters.store.digest_index import PostgresDigestIndex, SqliteDigestIndex, ensure_digests
from adapters.store.postgres_index import PostgresCaseIndex
from adapters.store.sqlite_index import SqliteCaseIndex
from adapters.tls import (
    TlsFiles,
    channel_credentials,
    peer_identity,
    peer_site,
    server_credentials,
    staff_server_credentials,
)
from audit.chain import Finding
from audit.ledger import CheckpointLedger
from audit.ports import ChainStore
from hub.application.case_clocks import CaseClocks
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.application.group_commit import GroupCommitter
from hub.application.partner_intake import IntakeBounds, PartnerIntake
from hub.application.ports import CaseIndex, StoreObserver
from hub.application.read_model import CaseReadModel
from hub.domain.receipts import CaseReceipt
from hub.domain.workdays import WorkCalendar
from ops.metrics import SiteMetrics
from reconciliation.messages import Params
from reconciliation.ports import DigestIndex
from reconciliation.reconciler import Policy as ReconcilePolicy
from reconciliation.reconciler import Reconciler
from reconciliation.responder import Responder
from routing.agreements import Agreements, SiteAgreements
from routing.catalogue import Catalogue
from routing.regions import RegionDirectory
from routing.router import Router
from tongban.v1 import audit_pb2_grpc, case_service_pb2_grpc, exchange_pb2_grpc, reconcile_pb2_grpc

log = structlog.get_logger("tongban.site")
PARKED_CHECK_SECONDS = 15.0
PARTNER_WORKERS, AUDIT_WORKERS = 8, 4


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
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return SqliteCaseIndex(settings.data_dir / "case_index.sqlite3")
    return PostgresCaseIndex(conninfo(settings.postgres), settings.postgres.schema)


def build_chain_store(settings: Settings) -> ChainStore:
    """Where the site-wide audit chain is kept: beside the event store."""
    if settings.store == "sqlite":
        return SqliteChainStore(settings.data_dir / "audit_chain.sqlite3")
    return PostgresChainStore(conninfo(settings.postgres), settings.postgres.schema)


def build_digest_index(settings: Settings) -> DigestIndex:
    """The reconciliation digest index: the tables the event store's recorder keeps beside the events."""
    if settings.store == "sqlite":
        return SqliteDigestIndex(settings.data_dir / "events.sqlite3")
    return PostgresDigestIndex(conninfo(settings.postgres), settings.postgres.schema)


def reconcile_policy(settings: Settings) -> ReconcilePolicy:
    r = settings.reconcile
    params = Params(branching=r.branching, id_list_threshold=r.id_list_threshold, max_frame_bytes=r.max_frame_bytes)
    return ReconcilePolicy(params=params, breaker_share=r.breaker_share, breaker_floor=r.breaker_floor,
                           pending_grace=timedelta(seconds=r.pending_grace))


def build_clocks(settings: Settings, hub: CaseHub) -> CaseClocks:
    """Deadlines on the official calendar: the State Council's notices if the site has them."""
    notices = load_notices(settings.calendar_dir) if settings.calendar_dir else []
    return CaseClocks(WorkCalendar(notices), settings.policy, hub.now)


@dataclass(frozen=True)
class Reference:
    """The site's reference data, read and cross-checked once: the routing and the partner port share it."""

    catalogue: Catalogue
    regions: RegionDirectory
    agreements: Agreements

    @classmethod
    def load(cls, settings: Settings) -> Reference:
        catalogue, regions = Catalogue.load(), RegionDirectory.load()
        agreements = Agreements.load(settings.agreements_file)
        agreements.check_references(catalogue=catalogue, regions=regions)
        return cls(catalogue, regions, agreements)


def build_intake(settings: Settings, reference: Reference) -> PartnerIntake:
    """The partner port's checks: the configured partners, the agreements we hold, our catalogue, the
    [exchange] bounds. The clock is the real one, like the clock that stamps every event, whatever
    ``hub.now`` says."""
    bounds = IntakeBounds(max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
                          max_lamport_jump=settings.max_lamport_jump)
    return PartnerIntake(settings.site, partners=frozenset(p.site for p in settings.partners),
                         agreements=SiteAgreements(settings.site, reference.agreements),
                         catalogue=reference.catalogue, bounds=bounds)


def build_hub(
    settings: Settings, observer: StoreObserver | None = None, reference: Reference | None = None
) -> CaseHub:
    """The site's store and commands, routing by the catalogue, region codes and agreements. The
    caller closes it."""
    if settings.store == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    else:
        ensure_postgres_schema(settings.postgres)
    ref = reference or Reference.load(settings)
    catalogue, regions, agreements = ref.catalogue, ref.regions, ref.agreements
    return CaseHub(
        site=settings.site,
        catalogue=catalogue,
        regions=regions,
        env=settings.event_store_env(),
        router=Router(settings.site, catalogue, regions, agreements),
        snapshot_interval=settings.snapshot_interval,
        also_snapshot=(CheckpointLedger,),  # long-lived: one event per checkpoint, loaded every minute
        observer=observer,
    )


def build_directory(settings: Settings) -> SqlStaffDirectory:
    """The site's staff directory, beside its other stores (`tongban staff` opens the same)."""
    if settings.store == "sqlite":
        return sqlite_directory(settings.data_dir / "staff.sqlite3", settings.site)
    ensure_postgres_schema(settings.postgres)
    return postgres_directory(conninfo(settings.postgres), settings.postgres.schema, settings.site)


@dataclass
class StaffIdentity:
    """How the staff port knows its callers: the gate's authenticator, the Login service, the directory."""

    authenticator: Authenticator
    login: AuthServicer
    directory: SqlStaffDirectory | None

    def close(self) -> None:
        if self.directory is not None:
            self.directory.close()


def build_identity(settings: Settings) -> StaffIdentity:
    """Embedded (the site's staff directory and token key, created on first start) or OIDC. The caller
    closes it."""
    a, site = settings.auth, settings.site
    by_staff = LoginThrottle(a.login_max_failures, a.login_lockout, a.login_lockout_max)
    by_peer = LoginThrottle(4 * a.login_max_failures, a.login_lockout, a.login_lockout_max)
    if a.mode == "oidc":
        assert a.oidc is not None, "settings check: oidc mode has [auth.oidc]"
        auth = Authenticator(site, oidc=OidcVerifier(site, a.oidc), services=a.services)
        return StaffIdentity(auth, AuthServicer(None, None, by_staff, by_peer), None)
    directory = build_directory(settings)
    try:
        key = load_or_create_signing_key(a.token_key_file or settings.data_dir / "staff-token.pem")
    except BaseException:
        directory.close()
        raise
    signer = TokenSigner(site, key, timedelta(seconds=a.token_ttl))
    auth = Authenticator(site, signer=signer, directory=directory, services=a.services,
                         active_ttl=a.active_cache_seconds)
    return StaffIdentity(auth, AuthServicer(signer, directory, by_staff, by_peer), directory)


def staff_server(
    hub: CaseHub, read_model: CaseReadModel, clocks: CaseClocks, listen: str, *, identity: StaffIdentity,
    workers: int = 16, metrics: SiteMetrics | None = None, committer: GroupCommitter | None = None,
    credentials: grpc.ServerCredentials | None = None,
) -> SiteServer:
    """The staff port over a built hub (its writes through ``committer`` when group commit is on): every
    call but health, reflection and Login passes the credential gate first."""
    servicer = CaseServicer(hub, read_model, clocks, metrics, committer)
    interceptors = [LoggingInterceptor(hub.site, metrics), AuthInterceptor(identity.authenticator)]
    return SiteServer(servicer, identity.login, listen, workers, interceptors, credentials)


def nats_access(settings: Settings) -> NatsAccess:
    """How the site reaches NATS: with credentials, mutual TLS from the certs dir and its nkey."""
    assert settings.nats_url is not None, "settings check: NATS needs nats_url"
    secured = settings.nats_credentials is not None and settings.certs_dir is not None
    tls = TlsFiles.for_site(settings.certs_dir, settings.site) if secured and settings.certs_dir else None
    return NatsAccess(settings.nats_url, settings.site, tls, settings.nats_credentials)


class BootingInbox:
    """The NATS inbox as a site service: the site boots while NATS is down, and the inbox keeps trying."""

    def __init__(self, inbox: NatsInbox) -> None:
        self.inbox = inbox

    def start(self) -> None:
        self.inbox.start(wait=None)

    def stop(self) -> None:
        self.inbox.stop()


def build_site(settings: Settings) -> Site:
    """Everything a site runs, built from its settings; ``Site.start`` starts it."""
    closers: list[Callable[[], None]] = []
    try:
        return _build_site(settings, closers)
    except BaseException:
        for close in reversed(closers):
            try:
                close()
            except Exception as error:  # keep closing the rest; the build error is what matters
                log.warning("close_failed", error=f"{type(error).__name__}: {error}")
        raise


def _build_site(settings: Settings, closers: list[Callable[[], None]]) -> Site:
    site = settings.site
    metrics = SiteMetrics(site)
    reference = Reference.load(settings)
    hub = build_hub(settings, observer=metrics, reference=reference)
    closers.append(hub.close)
    clocks = build_clocks(settings, hub)
    index = build_index(settings)
    closers.append(index.close)
    read_model = CaseReadModel(hub, index, clocks)
    metrics.watch_cases(case_counts(read_model))
    sharing = CaseSharing(hub, intake=build_intake(settings, reference))
    committer = None
    if settings.group_commit_max > 1:
        committer = GroupCommitter(hub, settings.group_commit_max, settings.group_commit_window_ms / 1000)
        closers.append(committer.close)
    identity = build_identity(settings)
    closers.append(identity.close)
    staff_tls = None
    if settings.staff_tls:
        assert settings.certs_dir is not None, "settings check: [server] tls needs certs_dir"
        staff_tls = staff_server_credentials(TlsFiles.for_site(settings.certs_dir, site),
                                             settings.staff_client_certs == "required")
    staff = staff_server(hub, read_model, clocks, settings.listen, identity=identity, workers=settings.staff_workers,
                         metrics=metrics, committer=committer, credentials=staff_tls)
    chain_store = build_chain_store(settings)
    closers.append(chain_store.close)
    chain = SiteChain(hub, chain_store)
    key_file = settings.audit_key_file or settings.data_dir / "audit-signing.pem"
    checkpointer = Checkpointer(hub, chain, load_or_create_key(key_file), settings.certs_dir)
    digests = build_digest_index(settings)
    if ensure_digests(hub):
        log.info("digest_index_rebuilt")
    policy = reconcile_policy(settings)
    reconciler = Reconciler(hub, sharing, digests, policy, now=hub.now)

    tls = TlsFiles.for_site(settings.certs_dir, site) if settings.certs_dir else None
    credentials = channel_credentials(tls) if tls is not None else None
    clients: dict[str, GrpcPartner] = {}  # per partner with a partner port: relay, countersign, reconcile
    for partner in settings.partners:
        if partner.address:
            clients[partner.site] = GrpcPartner(site, partner.site, partner.address, credentials,
                                                retry=settings.retry.grpc, observer=metrics)
            closers.append(clients[partner.site].close)
    relays: list[Relay] = []
    nats_sealer = Sealer.for_site(settings.certs_dir, site) if settings.nats_url and settings.certs_dir else None
    for partner in settings.partners:
        channel: Channel
        if partner.channel == "nats":
            assert nats_sealer is not None, "settings check: a NATS partner needs nats_url and certs_dir"
            nats = NatsPartner(site, partner.site, nats_access(settings), nats_sealer)
            closers.append(nats.close)
            channel = nats
        else:
            channel = clients[partner.site]
        relays.append(Relay(sharing, channel, observer=metrics, backoff=settings.retry.relay))

    def fill_gap(receipt: CaseReceipt) -> None:
        """A gap reported over NATS: each NATS relay of the case's partners sends the events again (the
        receipt does not say which partner; repeats are dropped)."""
        sites = sharing.sites_of(receipt.case_id)  # remembered per case: a case's sites never change
        for relay in relays:
            if relay.channel.channel_name == "nats" and relay.channel.partner in sites:
                relay.fill_gap(receipt)

    services: list[Service] = []
    if settings.metrics_listen:
        services.append(MetricsEndpoint(settings.metrics_listen, metrics.registry))
    services.append(staff)
    audit_port = 0
    if settings.audit_listen:
        assert tls is not None, "settings check: the audit port needs certs_dir"

        def verify(case_id: UUID | None) -> tuple[int, list[Finding]]:
            """Chain the newest events, then check every chained event against the store."""
            chain.extend()
            findings = chain.verify()
            if case_id is not None:
                findings = [f for f in findings if str(f.originator_id) == str(case_id)]
            head = chain.head()
            return (head.position if head else 0), list(findings)

        audit_servicer = AuditServicer(hub, read_model, clocks, peer_identity, verify, checkpointer.export)
        reads = CaseServicer(hub, read_model, clocks)
        audit = secure_server(
            "audit", settings.audit_listen, server_credentials(tls), AUDIT_WORKERS,
            [LoggingInterceptor(site, metrics), ReadOnlyInterceptor(peer_identity)],
            [lambda s: audit_pb2_grpc.add_AuditServiceServicer_to_server(audit_servicer, s),
             lambda s: case_service_pb2_grpc.add_CaseServiceServicer_to_server(reads, s)],
        )
        services.append(audit)
        audit_port = audit.port
    readiness = ReadinessWatch(hub, settings.health_interval, staff.set_ready)
    services.append(readiness)
    services.append(ChainFollower(chain, settings.health_interval, lambda: readiness.ready))
    services.append(CheckpointSigner(checkpointer, list(clients.values()), settings.checkpoint_interval,
                                     settings.health_interval, lambda: readiness.ready))
    services.append(IndexFollower(read_model, backoff=settings.retry.index))
    if nats_sealer is not None:  # partners may deliver to us over NATS; our NATS partners' receipts come back there
        inbox = NatsInbox(sharing, nats_access(settings), nats_sealer, resend=fill_gap, observer=metrics)
        readiness.nats_ready = lambda: inbox.ready
        services.append(BootingInbox(inbox))
        services.append(ParkedCounter(nats_access(settings), site, metrics, PARKED_CHECK_SECONDS,
                                      lambda: readiness.ready))
    partner_port = 0
    if settings.exchange_listen:
        assert tls is not None, "settings check: the partner port needs certs_dir"
        exchange = ExchangeServicer(sharing, peer_site, checkpointer.countersign_for, observer=metrics)
        answering = ReconcileServicer(Responder(hub, digests, policy.params), peer_site,
                                      frozenset(p.site for p in settings.partners))
        partner_server: PortServer = secure_server(
            "partner", settings.exchange_listen, server_credentials(tls), PARTNER_WORKERS,
            [LoggingInterceptor(site, metrics)],
            [lambda s: exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(exchange, s),
             lambda s: reconcile_pb2_grpc.add_ReconcileServiceServicer_to_server(answering, s)],
            max_receive=MAX_MESSAGE_BYTES,
        )
        services.append(partner_server)
        partner_port = partner_server.port
    services.extend(relays)
    services.append(ReconcileSchedule(reconciler, [GrpcReconcilePeer(c) for c in clients.values()], metrics,
                                      settings.reconcile.interval))
    return Site(settings, staff, services, closers, partner_port=partner_port, audit_port=audit_port,
                partners=[r.channel.partner for r in relays])
