"""The site's periodic background jobs, one small class each, started and stopped with the site.

Each runs ``tick`` on its own thread every ``interval`` seconds (the first after ``first``) until
stopped; a tick that fails is logged and the next one tries again: none of them can lose anything,
they only catch up (the chain, the checkpoints) or report (readiness, the parked count).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence

import structlog

from adapters.audit.signing import Checkpointer
from adapters.audit.site_chain import SiteChain
from adapters.exchange.grpc_client import GrpcPartner
from adapters.exchange.nats_channel import list_parked
from adapters.nats.access import NatsAccess
from hub.application.ports import SiteLog
from ops.metrics import SiteMetrics

log = structlog.get_logger("tongban.site")


class Periodic:
    """A thread calling ``tick`` every ``interval`` seconds (first after ``first``, default ``interval``)."""

    name = "periodic"
    failure_event = "periodic_failed"  # the log line of a failed tick (the next tick tries again)

    def __init__(self, interval: float, first: float | None = None) -> None:
        self.interval, self.first = interval, interval if first is None else first
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def tick(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        wait = self.first
        while not self._stopping.wait(wait):
            wait = self.interval
            try:
                self.tick()
            except Exception as error:  # the next tick tries again
                log.warning(self.failure_event, error=f"{type(error).__name__}: {error}")


class ReadinessWatch(Periodic):
    """Turns readiness off while the store (or NATS, when the site uses it) is unreachable."""

    name = "health-watch"

    def __init__(
        self, store: SiteLog, interval: float, on_change: Callable[[bool], None],
        nats_ready: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(interval)
        self.store, self.on_change, self.nats_ready = store, on_change, nats_ready
        self.ready = False
        self._was: bool | None = None

    def probe(self) -> bool:
        try:
            self.store.head()
        except Exception:
            return False
        return self.nats_ready is None or self.nats_ready()

    def tick(self) -> None:
        self.ready = self.probe()
        if self.ready != self._was:
            self.on_change(self.ready)
            log.info("readiness_changed", ready=self.ready)
            self._was = self.ready


class ChainFollower(Periodic):
    """Chains the newest stored events into the site's audit chain."""

    name = "audit-chain"
    failure_event = "chain_extend_failed"  # the chain catches up on the next tick

    def __init__(self, chain: SiteChain, interval: float, ready: Callable[[], bool]) -> None:
        super().__init__(interval)
        self.chain, self.ready = chain, ready

    def tick(self) -> None:
        if self.ready():
            self.chain.extend()


class CheckpointSigner(Periodic):
    """Signs a checkpoint of the chain head, and has every partner countersign our latest one (asked
    again each time until it has)."""

    name = "checkpoints"
    failure_event = "checkpoint_failed"  # the next checkpoint catches up

    def __init__(
        self, checkpointer: Checkpointer, partners: Sequence[GrpcPartner], interval: float, first: float,
        ready: Callable[[], bool],
    ) -> None:
        super().__init__(interval, first)
        self.checkpointer, self.partners, self.ready = checkpointer, list(partners), ready

    def tick(self) -> None:
        if not self.ready():
            return
        signed = self.checkpointer.checkpoint()
        if signed is not None:
            log.info("checkpoint_signed", position=signed["checkpoint"]["position"])
        self.countersign_latest()

    def countersign_latest(self) -> None:
        checkpoints = self.checkpointer.ledger().checkpoints
        if not checkpoints:
            return
        signed = checkpoints[-1]
        position = int(signed["checkpoint"]["position"])
        done = {c["signer"] for c in signed["countersignatures"]}
        for client in self.partners:
            if client.partner in done:
                continue
            try:
                answer = client.countersign(json.dumps(signed, sort_keys=True))
                self.checkpointer.record_countersignature(position, answer)
            except Exception as error:  # the next checkpoint asks again
                log.warning("countersign_failed", partner=client.partner, position=position,
                            error=f"{type(error).__name__}: {error}")


class ParkedCounter(Periodic):
    """Counts the messages parked in the site's NATS stream, for the parked-messages gauge and alert."""

    name = "parked-count"
    failure_event = "parked_count_failed"

    def __init__(
        self, nats: NatsAccess, site: str, metrics: SiteMetrics, interval: float, ready: Callable[[], bool]
    ) -> None:
        super().__init__(interval)
        self.nats, self.site, self.metrics, self.ready = nats, site, metrics, ready

    def tick(self) -> None:
        if not self.ready():
            return
        self.metrics.parked.set(len(list_parked(self.nats, self.site)))
