"""A running site: the staff API, the partner API over mutual TLS, one relay per partner, the NATS
inbox, /metrics, and a watcher that turns readiness off while the store or NATS is unreachable.

`tongban serve`, the demo and the multi-site tests all start sites through this one class, so what
is tested is what runs.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent import futures
from typing import Any
from uuid import UUID

import grpc
import structlog
from prometheus_client import start_http_server

from adapters.audit.servicer import AuditServicer, ReadOnlyInterceptor
from adapters.audit.signing import Checkpointer, load_or_create_key
from adapters.audit.site_chain import SiteChain
from adapters.bootstrap import build_chain_store, build_digest_index, build_hub, reconcile_policy
from adapters.exchange.grpc_client import GrpcPartner
from adapters.exchange.grpc_service import ExchangeServicer
from adapters.exchange.nats_channel import NatsChannelError, NatsInbox, NatsPartner, list_parked
from adapters.exchange.relay import Channel, Relay
from adapters.grpc.case_servicer import CaseServicer
from adapters.grpc.interceptors import LoggingInterceptor
from adapters.grpc.server import MAX_MESSAGE_BYTES, SiteServer
from adapters.index_follower import IndexFollower
from adapters.metering import MeteredExchange, case_counts, meter_store
from adapters.reconcile.grpc_client import GrpcReconcilePeer
from adapters.reconcile.grpc_service import ReconcileServicer
from adapters.reconcile.schedule import ReconcileSchedule
from adapters.settings import PartnerSettings, Settings
from adapters.store.digest_index import ensure_digests
from adapters.tls import TlsFiles, channel_credentials, peer_identity, peer_site, server_credentials
from hub.application.exchange import CaseReceipt, Exchange
from hub.application.group_commit import GroupCommitter
from ops.metrics import SiteMetrics
from reconciliation.reconciler import Reconciler
from reconciliation.responder import Responder
from tongban.v1 import audit_pb2_grpc, case_service_pb2_grpc, exchange_pb2_grpc, reconcile_pb2_grpc

log = structlog.get_logger("tongban.site")
PARKED_CHECK_SECONDS = 15.0


class Site:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.hub = build_hub(settings)
        self.metrics = SiteMetrics(settings.site)
        meter_store(self.hub, self.metrics)
        self.metrics.watch_cases(case_counts(self.hub))
        self.exchange = Exchange(self.hub)
        self.committer = (
            GroupCommitter(self.hub, settings.group_commit_max, settings.group_commit_window_ms / 1000)
            if settings.group_commit_max > 1 else None
        )
        self.staff = SiteServer(self.hub, settings.listen, settings.staff_workers, self.metrics, self.committer)
        self.metrics_server: Any = None
        self._partner_client_list: list[GrpcPartner] | None = None
        self._meters: dict[str, MeteredExchange] = {}
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="health-watch", daemon=True)
        self.index_follower = IndexFollower(self.hub)
        self.chain = SiteChain(self.hub, build_chain_store(settings))
        key_file = settings.audit_key_file or settings.data_dir / "audit-signing.pem"
        self.checkpointer = Checkpointer(self.hub, self.chain, load_or_create_key(key_file), settings.certs_dir)
        self.digests = build_digest_index(settings)
        if ensure_digests(self.hub):
            log.info("digest_index_rebuilt")
        self.reconciler = Reconciler(self.hub, self.digests, reconcile_policy(settings))
        self.partner_server: grpc.Server | None = None
        self.partner_port = 0
        if settings.exchange_listen:
            self.partner_server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="partner"),
                interceptors=[LoggingInterceptor(settings.site, self.metrics)],
                options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.so_reuseport", 0)],
            )
            exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(
                ExchangeServicer(self._metered("grpc"), peer_site, self.checkpointer.countersign_for),
                self.partner_server
            )
            reconcile_pb2_grpc.add_ReconcileServiceServicer_to_server(
                ReconcileServicer(Responder(self.hub, self.digests, self.reconciler.policy.params), peer_site,
                                  frozenset(p.site for p in settings.partners)),
                self.partner_server,
            )
            self.partner_port = self.partner_server.add_secure_port(
                settings.exchange_listen, server_credentials(self._tls())
            )
        self.audit_server: grpc.Server | None = None
        self.audit_port = 0
        if settings.audit_listen:
            self.audit_server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="audit"),
                interceptors=[LoggingInterceptor(settings.site, self.metrics), ReadOnlyInterceptor(peer_identity)],
                options=[("grpc.so_reuseport", 0)],  # two servers must never share a port by accident
            )
            audit_pb2_grpc.add_AuditServiceServicer_to_server(
                AuditServicer(self.hub, peer_identity, self._verify, self.checkpointer.export), self.audit_server
            )
            case_service_pb2_grpc.add_CaseServiceServicer_to_server(CaseServicer(self.hub), self.audit_server)
            self.audit_port = self.audit_server.add_secure_port(settings.audit_listen, server_credentials(self._tls()))
        self.relays = [
            Relay(self._metered(p.channel), self._channel(p), metrics=self.metrics)  # type: ignore[arg-type]
            for p in settings.partners
        ]
        self.inbox: NatsInbox | None = None
        if settings.nats_url:  # partners may deliver to us over NATS; our NATS partners' receipts come back there
            self.inbox = NatsInbox(self._metered("nats"), settings.nats_url, resend=self._resend)  # type: ignore

        self.reconcile_schedule = ReconcileSchedule(
            self.reconciler, [GrpcReconcilePeer(c) for c in self._partner_clients()], self.metrics,
            settings.reconcile.interval,
        )

    def _metered(self, channel: str) -> MeteredExchange:
        if channel not in self._meters:
            self._meters[channel] = MeteredExchange(self.exchange, self.metrics, channel)
        return self._meters[channel]

    def _tls(self) -> TlsFiles:
        assert self.settings.certs_dir is not None
        return TlsFiles.for_site(self.settings.certs_dir, self.settings.site)

    def _channel(self, partner: PartnerSettings) -> Channel:
        if partner.channel == "nats":
            assert self.settings.nats_url is not None
            return NatsPartner(self.settings.site, partner.site, self.settings.nats_url)
        credentials = channel_credentials(self._tls()) if self.settings.certs_dir else None
        retries = self.metrics.retries.labels(partner.site, "grpc")
        return GrpcPartner(self.settings.site, partner.site, partner.address, credentials, on_retry=retries.inc)

    def _resend(self, receipt: CaseReceipt) -> None:
        """A partner reported a gap over NATS: send the missing events again on our NATS channels
        (to each NATS partner of the case: the receipt does not say which one; repeats are dropped)."""
        sites = self.hub.get_case(receipt.case_id).sites
        for relay in self.relays:
            if isinstance(relay.channel, NatsPartner) and relay.channel.partner in sites:
                relay.channel.resend(self.exchange, receipt)

    def start(self) -> None:
        if self.settings.metrics_listen:
            host, port = self.settings.metrics_listen.rsplit(":", 1)
            self.metrics_server, _thread = start_http_server(int(port), addr=host, registry=self.metrics.registry)
        self.staff.start()
        if self.audit_server is not None:
            self.audit_server.start()
        self._watcher.start()
        self.index_follower.start()
        if self.inbox is not None:
            self.inbox.start(wait=None)  # boot even while NATS is down; the inbox keeps trying
        if self.partner_server is not None:
            self.partner_server.start()
        for relay in self.relays:
            self.hub.listeners.append(relay.wake.set)
            relay.start()
        self.reconcile_schedule.start()
        log.info("site_running", staff_port=self.staff.port, partner_port=self.partner_port,
                 partners=[r.channel.partner for r in self.relays])

    def _verify(self, case_id: UUID | None) -> tuple[int, list[Any]]:
        """Chain the newest events, then check every chained event against the store."""
        self.chain.extend()
        findings = self.chain.verify()
        if case_id is not None:
            findings = [f for f in findings if str(f.originator_id) == str(case_id)]
        head = self.chain.head()
        return (head.position if head else 0), findings

    def _partner_clients(self) -> list[GrpcPartner]:
        """A gRPC client to every partner's partner port: the relay's own, or one made for countersigning
        and reconciliation (a partner we send events to over NATS still has a partner port)."""
        if self._partner_client_list is None:
            by_relay = {r.channel.partner: r.channel for r in self.relays if isinstance(r.channel, GrpcPartner)}
            self._partner_client_list = [
                by_relay.get(p.site) or GrpcPartner(
                    self.settings.site, p.site, p.address,
                    channel_credentials(self._tls()) if self.settings.certs_dir else None,
                )
                for p in self.settings.partners if p.address
            ]
        return self._partner_client_list

    def _countersign_latest(self) -> None:
        """Have every partner countersign our latest checkpoint (asked again each tick until it has)."""
        checkpoints = self.checkpointer.ledger().checkpoints
        if not checkpoints:
            return
        signed = checkpoints[-1]
        position = int(signed["checkpoint"]["position"])
        done = {c["signer"] for c in signed["countersignatures"]}
        for client in self._partner_clients():
            if client.partner in done:
                continue
            try:
                answer = client.countersign(json.dumps(signed, sort_keys=True))
                self.checkpointer.record_countersignature(position, answer)
            except Exception as error:  # the next checkpoint asks again
                log.warning("countersign_failed", partner=client.partner, position=position,
                            error=f"{type(error).__name__}: {error}")

    def ready(self) -> bool:
        """The store answers, and NATS (when this site uses it) is connected."""
        try:
            self.hub.recorder.max_notification_id()
        except Exception:
            return False
        return self.inbox is None or self.inbox.ready

    def _watch(self) -> None:
        was: bool | None = None
        last_parked_check = last_checkpoint = 0.0
        while not self._stopping.wait(self.settings.health_interval):
            ready = self.ready()
            if ready:
                try:
                    self.chain.extend()
                    if time.monotonic() - last_checkpoint >= self.settings.checkpoint_interval:
                        last_checkpoint = time.monotonic()
                        signed = self.checkpointer.checkpoint()
                        if signed is not None:
                            log.info("checkpoint_signed", position=signed["checkpoint"]["position"])
                        self._countersign_latest()
                except Exception as error:  # the chain and checkpoints catch up on the next tick
                    log.warning("chain_extend_failed", error=f"{type(error).__name__}: {error}")
            if ready != was:
                self.staff.set_ready(ready)
                log.info("readiness_changed", ready=ready)
                was = ready
            if self.settings.nats_url and ready and time.monotonic() - last_parked_check > PARKED_CHECK_SECONDS:
                last_parked_check = time.monotonic()
                try:
                    self.metrics.parked.set(len(list_parked(self.settings.nats_url, self.settings.site)))
                except NatsChannelError as error:
                    log.warning("parked_count_failed", error=str(error))

    def stop(self, grace: float = 5.0) -> None:
        self._stopping.set()
        self.reconcile_schedule.stop()
        self.index_follower.stop()
        if self._watcher.is_alive():
            self._watcher.join(5)
        if self.audit_server is not None:
            self.audit_server.stop(grace).wait()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        for relay in self.relays:
            relay.stop()
        channels = [r.channel for r in self.relays]
        for client in self._partner_client_list or []:
            if client not in channels:
                client.close()
        if self.inbox is not None:
            self.inbox.stop()
        if self.partner_server is not None:
            self.partner_server.stop(grace).wait()
        self.staff.stop(grace)
