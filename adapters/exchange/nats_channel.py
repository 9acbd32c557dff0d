"""The NATS JetStream channel between sites: a durable mailbox per site instead of a direct call.

Each site S owns stream ``TONGBAN_S`` over ``tongban.S.>`` (see docs/partner-api.md): partners publish
their events to ``tongban.S.events``, S answers with receipts on ``tongban.<partner>.receipts``, and
what S cannot apply is parked on ``tongban.S.parked`` for an operator. The stream is a work queue:
a message leaves it once acknowledged, so its size is the backlog plus what is parked.

Delivery is at least once everywhere, and exactly once in effect: publishers set ``Nats-Msg-Id``
(the server drops a repeat within the 10-minute duplicate window) and the receiving hub ignores any
(case, origin, seq) it already holds. So every failure is answered by doing the same thing again:
the relay re-publishes a whole batch, the inbox lets a message come back (``nak``) instead of
acknowledging it. Only a message that can never succeed (undecodable, refused, forged) or that has
used up its deliveries is parked, and parked means kept, not lost: ``replay_parked`` sends it again.
"""

from __future__ import annotations

import asyncio
import functools
import re
import threading
import urllib.parse
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar
from uuid import UUID

import structlog
from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RawStreamMsg,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError

from adapters.exchange.wire import event_from, event_message, receipt_from, receipt_message
from adapters.nats.loop import LoopThread
from hub.application.exchange import CaseReceipt, Exchange, NotRouted
from hub.domain.errors import ConcurrentUpdate, HubError
from hub.domain.shared import SharedEvent
from tongban.v1 import exchange_pb2

__all__ = [
    "MSG_ID", "PARKED_FROM", "PARK_REASON", "SENDER",
    "DeliveryFailed", "NatsChannelError", "NatsInbox", "NatsPartner", "NatsUnavailable", "NotParked",
    "ParkedMessage", "Redelivery", "StreamMissing", "ensure_stream", "list_parked", "replay_parked",
    "stream_name", "subject",
]

log = structlog.get_logger("tongban.nats")

MSG_ID = "Nats-Msg-Id"
SENDER = "Tongban-Sender"
PARK_REASON = "Tongban-Park-Reason"
PARKED_FROM = "Tongban-Parked-From"
PARKED_SEQ = "Tongban-Parked-Seq"
ORIGINAL_MSG_ID = "Tongban-Original-Msg-Id"
EVENTS_CONSUMER, RECEIPTS_CONSUMER = "hub-events", "hub-receipts"
DUPLICATE_WINDOW = 600.0  # seconds: a re-publish within it is dropped by the server
_PARKING_SPARE = 2  # deliveries the consumer allows beyond the inbox's limit, so a failed park is retried
_SITE = re.compile(r"\d{6}")
_T = TypeVar("_T")
Kind = Literal["events", "receipts", "parked"]


# ---------------------------------------------------------------------------------------------- errors
class NatsChannelError(Exception):
    """Root of the NATS channel's errors."""


class NatsUnavailable(NatsChannelError):
    """The NATS server could not be reached (or did not answer) in time."""

    def __init__(self, where: str, cause: str) -> None:
        super().__init__(f"NATS at {where} is unreachable: {cause}")
        self.where, self.cause = where, cause


class DeliveryFailed(NatsChannelError):
    """Some events of a batch got no publish acknowledgement; the relay sends the batch again."""

    def __init__(self, partner: str, failed: int, total: int, cause: str) -> None:
        super().__init__(f"{failed} of {total} events to {partner} not acknowledged: {cause}")
        self.partner, self.failed, self.total, self.cause = partner, failed, total, cause


class StreamMissing(NatsChannelError):
    """The site's stream does not exist (the site never started its inbox on this server)."""

    def __init__(self, site: str) -> None:
        super().__init__(f"stream {stream_name(site)} does not exist on this NATS server")
        self.site = site


class NotParked(NatsChannelError):
    """The stream sequence given is not a parked message of the site."""

    def __init__(self, site: str, stream_seq: int) -> None:
        super().__init__(f"message {stream_seq} of {stream_name(site)} is not a parked message")
        self.site, self.stream_seq = site, stream_seq


# ------------------------------------------------------------------------------------ subjects, stream
def _checked(site: str) -> str:
    """Site codes become subject tokens, and a sender's code comes from a header: only 6 digits pass."""
    if not _SITE.fullmatch(site):
        raise ValueError(f"not a site code: {site!r}")
    return site


def stream_name(site: str) -> str:
    return f"TONGBAN_{_checked(site)}"


def subject(site: str, kind: Kind) -> str:
    return f"tongban.{_checked(site)}.{kind}"


async def ensure_stream(js: JetStreamContext, site: str) -> StreamInfo:
    """Create the site's stream, or bring an existing one to our subjects and duplicate window.

    Idempotent, and safe when two processes race. Settings an operator tuned (limits, replicas) are
    kept: only the fields this channel depends on are compared and updated.
    """
    name, subjects = stream_name(site), [f"tongban.{site}.>"]
    for _attempt in range(3):
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            try:
                return await js.add_stream(StreamConfig(
                    name=name, subjects=subjects, storage=StorageType.FILE, retention=RetentionPolicy.WORK_QUEUE,
                    duplicate_window=DUPLICATE_WINDOW,
                ))
            except JetStreamError:  # created by someone else meanwhile: look again
                continue
        config = info.config
        if config.subjects == subjects and config.duplicate_window == DUPLICATE_WINDOW:
            return info
        return await js.update_stream(replace(config, subjects=subjects, duplicate_window=DUPLICATE_WINDOW))
    raise NatsChannelError(f"could not create or read stream {name}")


# ---------------------------------------------------------------------------------------- connections
def _where(url: str) -> str:
    """host:port only: a URL may carry credentials, which never reach a log or an error message."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname}:{parts.port or 4222}"


class _Connection:
    """One NATS connection, opened on first use on the calling loop.

    Once connected it reconnects forever by itself (subscriptions and consumers survive). The first
    connect is bounded by ``connect_timeout`` whatever the client library does with its own retry
    options, and a failed attempt is closed so that no half-open socket is left behind.
    """

    def __init__(self, url: str, name: str, connect_timeout: float = 3.0, reconnect: bool = True) -> None:
        self.url, self.name, self.connect_timeout, self.reconnect = url, name, connect_timeout, reconnect
        self.where = _where(url)
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._lock: asyncio.Lock | None = None
        self._last_error: Exception | None = None

    async def jetstream(self) -> JetStreamContext:
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if self._nc is not None and self._js is not None and not self._nc.is_closed:
                return self._js
            nc = NatsClient()
            self._last_error = None
            try:
                async with asyncio.timeout(self.connect_timeout):
                    # The client retries a failed first connect by itself (allow_reconnect or not) as
                    # long as max_reconnect_attempts allows, -1 meaning forever: the timeout bounds it.
                    await nc.connect(
                        self.url, name=self.name, allow_reconnect=self.reconnect,
                        max_reconnect_attempts=-1 if self.reconnect else 1,
                        reconnect_time_wait=1 if self.reconnect else 0,
                        connect_timeout=max(1, round(self.connect_timeout)),
                        error_cb=self._on_error, disconnected_cb=self._on_disconnected,
                        reconnected_cb=self._on_reconnected,
                    )
            except (TimeoutError, OSError, NatsError) as error:
                await nc.close()
                if isinstance(error, TimeoutError):
                    last = self._last_error
                    cause = f"no connection within {self.connect_timeout}s" + (
                        f" (last error: {type(last).__name__})" if last else "")
                else:
                    cause = f"{type(error).__name__}: {error}"
                raise NatsUnavailable(self.where, cause) from None
            except BaseException:
                await nc.close()
                raise
            self._nc, self._js = nc, nc.jetstream(timeout=self.connect_timeout)
            return self._js

    @property
    def closed(self) -> bool:
        return self._nc is None or self._nc.is_closed

    @property
    def connected(self) -> bool:
        """Connected right now (False while the client is reconnecting after the server went away)."""
        return self._nc is not None and self._nc.is_connected

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            await nc.close()

    async def _on_error(self, error: Exception) -> None:
        self._last_error = error
        log.debug("nats_connection_error", connection=self.name, server=self.where, error=type(error).__name__)

    async def _on_disconnected(self) -> None:
        if self._nc is not None:  # not our own close()
            log.warning("nats_disconnected", connection=self.name, server=self.where)

    async def _on_reconnected(self) -> None:
        log.info("nats_reconnected", connection=self.name, server=self.where)


# ------------------------------------------------------------------------------------------- outbound
class NatsPartner:
    """The relay's channel to one partner over NATS: publish events into the partner's stream.

    ``deliver`` returns once JetStream has acknowledged (stored) every event, or raises so the relay
    sends the whole batch again later; it never takes longer than ``timeout``. Receipts come back
    asynchronously, through this site's own NatsInbox, so ``deliver`` returns none.
    """

    channel_name = "nats"

    def __init__(
        self, site: str, partner: str, nats_url: str, timeout: float = 5.0, in_flight: int = 256,
        connect_timeout: float = 3.0,
    ) -> None:
        self.site, self.partner = _checked(site), _checked(partner)
        self.timeout, self.in_flight = timeout, in_flight
        self.subject, self.stream = subject(partner, "events"), stream_name(partner)
        self._loop = LoopThread(f"nats-to-{partner}")
        self._connection = _Connection(nats_url, f"tongban-{site}-to-{partner}", min(connect_timeout, timeout))

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        self._send(events, "")
        return []

    def resend(self, exchange: Exchange, receipt: CaseReceipt) -> None:
        """Fill the gap a partner reported (wire it as NatsInbox's ``resend``): our events from the missing seq.

        They go out under message ids of their own, ``<event_id>:gap:<stored_through>``: under the
        plain event id the server would drop them as repeats for 10 minutes, while the originals may
        be parked, or may have lost the id to a message that was parked. The same gap reported twice
        still sends one copy.
        """
        if receipt.origin != self.site:
            return
        events = exchange.resend(receipt.case_id, receipt.origin, receipt.missing_from)
        self._send(events, f":gap:{receipt.stored_through}")

    def _send(self, events: Sequence[SharedEvent], id_suffix: str) -> None:
        if not events:
            return
        messages = [(e.event_id + id_suffix, event_message(e).SerializeToString()) for e in events]
        try:
            self._loop.run(self._publish(messages), timeout=self.timeout)
        except TimeoutError:
            raise DeliveryFailed(self.partner, len(messages), len(messages),
                                 f"no acknowledgement within {self.timeout}s") from None

    def close(self) -> None:
        if self._loop.running:
            try:
                self._loop.run(self._connection.close(), timeout=self.timeout)
            except (TimeoutError, NatsError, OSError) as error:
                log.warning("nats_close_failed", partner=self.partner, error=type(error).__name__)
        self._loop.stop()

    async def _publish(self, messages: list[tuple[str, bytes]]) -> None:
        js = await self._connection.jetstream()
        gate = asyncio.Semaphore(self.in_flight)

        async def one(msg_id: str, payload: bytes) -> None:
            async with gate:
                await js.publish(self.subject, payload, timeout=self.timeout, stream=self.stream,
                                 headers={MSG_ID: msg_id, SENDER: self.site})

        results = await asyncio.gather(*(one(i, p) for i, p in messages), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            first = failures[0]
            raise DeliveryFailed(self.partner, len(failures), len(messages), f"{type(first).__name__}: {first}")


# -------------------------------------------------------------------------------------------- inbound
@dataclass(frozen=True)
class Redelivery:
    """How long a message that cannot be finished yet waits before it comes back, by delivery count.

    ``gap``: events that overtook the ones they follow; short, the missing ones are usually right
    behind. ``failure``: the hub could not store (store down, lock timeout); grows, so that an outage
    is not hammered. Either way the message is parked once the inbox's delivery limit is used up.
    """

    gap_first: float = 0.5
    failure_first: float = 2.0
    factor: float = 2.0
    longest: float = 30.0

    def gap(self, delivered: int) -> float:
        return min(self.gap_first * self.factor ** max(delivered - 1, 0), self.longest)

    def failure(self, delivered: int) -> float:
        return min(self.failure_first * self.factor ** max(delivered - 1, 0), self.longest)


@dataclass(frozen=True)
class _Verdict:
    kind: Literal["ack", "gap", "park"]
    reason: str = ""


_ACK, _GAP = _Verdict("ack"), _Verdict("gap")


class _Poison(Exception):
    """This message can never be applied; it is parked with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _retryable(error: BaseException) -> bool:
    """A hub error is final, except losing a race on a case: that one goes again."""
    return not isinstance(error, HubError) or isinstance(error, ConcurrentUpdate)


def _describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup) and error.exceptions:
        return _describe(error.exceptions[0])
    code = getattr(error, "reason", None) if isinstance(error, HubError) else None
    return f"{code or type(error).__name__}: {error}"


class NatsInbox:
    """This site's side of the NATS channel: apply partners' events, record their receipts.

    Two durable pull consumers on the site's own stream. ``hub-events`` applies events per sender
    and batch (``Exchange.ingest``) and answers each with receipts; ``hub-receipts`` records the
    partners' receipts and, on a gap, calls ``resend`` so the missing events go out again. A message
    is acknowledged only after the hub stored it and its receipt was published; everything that can
    succeed later comes back (``nak``), what never can is parked.

    Hub calls run on one worker thread, never on the event loop: a slow store must not stall the
    connection's pings and acknowledgements.
    """

    def __init__(
        self, exchange: Exchange, nats_url: str, resend: Callable[[CaseReceipt], None] | None = None,
        max_deliver: int = 5, *, batch: int = 100, fetch_timeout: float = 1.0, ack_wait: float = 10.0,
        redelivery: Redelivery | None = None, timeout: float = 5.0,
    ) -> None:
        self.exchange, self.site = exchange, _checked(exchange.site)
        self.resend, self.max_deliver = resend, max_deliver
        self.batch, self.fetch_timeout, self.ack_wait = batch, fetch_timeout, ack_wait
        self.redelivery = redelivery or Redelivery()
        self.timeout = timeout
        self.stream = stream_name(self.site)
        self._connection = _Connection(nats_url, f"tongban-{self.site}-inbox", timeout)
        self._loop: LoopThread | None = None
        self._worker: ThreadPoolExecutor | None = None
        self._task: Future[None] | None = None
        self._ready = threading.Event()
        self._last_error: BaseException | None = None
        self._supervisor: asyncio.Task[Any] | None = None

    # -------------------------------------------------------------------- lifecycle
    def start(self, wait: float | None = 10.0) -> None:
        """Start consuming in the background; with ``wait``, return once the consumers are up.

        Raises NatsUnavailable (and stops again) when not up within ``wait``. With ``wait=None`` it
        returns at once and keeps trying, so a site can boot while NATS is down.
        """
        if self._loop is not None:
            raise RuntimeError("NatsInbox already started")
        self._loop = LoopThread(f"nats-inbox-{self.site}")
        self._worker = ThreadPoolExecutor(1, thread_name_prefix=f"nats-inbox-{self.site}-hub")
        self._task = self._loop.submit(self._supervise())
        if wait is not None and not self._ready.wait(wait):
            error = self._last_error
            self.stop()
            raise NatsUnavailable(self._connection.where, f"inbox not ready within {wait}s: {error or 'connecting'}")

    @property
    def ready(self) -> bool:
        """Consuming, and connected right now: what the site's readiness reports."""
        return self._ready.is_set() and self._connection.connected

    def stop(self) -> None:
        loop, worker, task = self._loop, self._worker, self._task
        self._loop = self._worker = self._task = None
        self._ready.clear()
        if loop is None:
            return
        try:
            loop.run(self._shutdown(task), timeout=self.timeout)
        except (TimeoutError, NatsError, OSError) as error:
            log.warning("nats_close_failed", site=self.site, error=type(error).__name__)
        loop.stop()
        if worker is not None:
            worker.shutdown(wait=True)

    async def _shutdown(self, task: Future[None] | None) -> None:
        """On the loop: end the consumers first, so nothing reconnects, then close the connection."""
        supervisor = self._supervisor
        if task is not None:
            task.cancel()
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.wait([supervisor])
        await self._connection.close()

    async def _supervise(self) -> None:
        self._supervisor = asyncio.current_task()
        pause = 0.5
        while True:
            try:
                js = await self._connection.jetstream()
                await ensure_stream(js, self.site)
                events = await self._consumer(js, EVENTS_CONSUMER, "events")
                receipts = await self._consumer(js, RECEIPTS_CONSUMER, "receipts")
                self._ready.set()
                pause = 0.5
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._consume(events, self._on_events))
                    group.create_task(self._consume(receipts, self._on_receipts))
            except Exception as error:
                if self._supervisor is not None and self._supervisor.cancelling():
                    raise  # stopping: a consumer failed while being cancelled
                self._last_error = error
                log.warning("nats_inbox_retrying", site=self.site, error=_describe(error), retry_in=pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)

    async def _consumer(self, js: JetStreamContext, durable: str, kind: Kind) -> JetStreamContext.PullSubscription:
        await js.add_consumer(self.stream, ConsumerConfig(
            durable_name=durable, name=durable, filter_subject=subject(self.site, kind),
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=self.ack_wait,
            max_deliver=self.max_deliver + _PARKING_SPARE,
        ))
        return await js.pull_subscribe_bind(durable=durable, stream=self.stream)

    async def _consume(
        self, sub: JetStreamContext.PullSubscription, handle: Callable[[list[Msg]], Awaitable[None]]
    ) -> None:
        while True:
            try:
                msgs = await sub.fetch(self.batch, timeout=self.fetch_timeout)
            except TimeoutError:
                continue  # nothing new; also what a fetch during a reconnect looks like
            except (NatsError, JetStreamError, OSError) as error:
                if self._connection.closed:
                    raise
                log.debug("nats_fetch_failed", site=self.site, error=type(error).__name__)
                await asyncio.sleep(self.fetch_timeout)
                continue
            await handle(msgs)

    async def _hub(self, fn: Callable[..., _T], *args: Any) -> _T:
        assert self._worker is not None
        return await asyncio.get_running_loop().run_in_executor(self._worker, functools.partial(fn, *args))

    # ----------------------------------------------------------------------- events
    async def _on_events(self, msgs: list[Msg]) -> None:
        by_sender: dict[str, list[tuple[Msg, SharedEvent]]] = defaultdict(list)
        for msg in msgs:
            try:
                sender, event = self._decode_event(msg)
            except _Poison as poison:
                await self._park(msg, poison.reason)
                continue
            by_sender[sender].append((msg, event))
        for sender, items in by_sender.items():
            await self._ingest_from(sender, items)

    @staticmethod
    def _decode_event(msg: Msg) -> tuple[str, SharedEvent]:
        sender = (msg.headers or {}).get(SENDER, "")
        if not _SITE.fullmatch(sender):
            raise _Poison(f"bad_sender: header {SENDER} missing or not a site code")
        try:
            event = event_from(exchange_pb2.SharedEvent.FromString(msg.data))
        except DecodeError as error:
            raise _Poison(f"undecodable: {error}") from None
        except HubError as error:  # InvalidInput: bad fields, or the hash does not match the content
            raise _Poison(_describe(error)) from None
        if event.origin != sender:
            raise _Poison(f"sender_mismatch: {SENDER} {sender} sent an event of origin {event.origin}")
        return sender, event

    async def _ingest_from(self, sender: str, items: list[tuple[Msg, SharedEvent]]) -> None:
        try:
            verdicts, receipts = await self._hub(self._ingest, sender, items)
        except Exception as error:  # the hub could not store: nothing is acknowledged
            log.warning("nats_ingest_failed", site=self.site, sender=sender, error=_describe(error))
            for msg, _event in items:
                await self._later(msg, self.redelivery.failure(_delivered(msg)), _describe(error))
            await asyncio.sleep(self.redelivery.failure(1))  # do not hammer a store that is down
            return
        try:
            await self._send_receipts(sender, receipts)
        except Exception as error:  # stored, but the sender would not hear of it: let the events come again
            log.warning("nats_receipts_failed", site=self.site, sender=sender, error=_describe(error))
            for msg, verdict in verdicts:
                if verdict.kind == "ack" and _delivered(msg) >= self.max_deliver:
                    await msg.ack()  # stored; only this receipt is lost, the next one supersedes it
                elif verdict.kind == "ack":
                    await msg.nak(delay=self.redelivery.failure(_delivered(msg)))
                else:
                    await self._apply(msg, verdict)
            return
        for msg, verdict in verdicts:
            await self._apply(msg, verdict)

    def _ingest(
        self, sender: str, items: list[tuple[Msg, SharedEvent]]
    ) -> tuple[list[tuple[Msg, _Verdict]], list[CaseReceipt]]:
        """Runs on the worker thread. One ingest for the whole batch; per case only if it is refused."""
        by_case: dict[UUID, list[tuple[Msg, SharedEvent]]] = defaultdict(list)
        for msg, event in items:
            by_case[event.case_id].append((msg, event))
        try:
            receipts = self.exchange.ingest(sender, [e for _m, e in items])
            return self._verdicts(sender, by_case, receipts), receipts
        except HubError as error:
            if _retryable(error):
                raise
            if len(by_case) == 1:
                return [(m, _Verdict("park", _describe(error))) for m, _e in items], []
        verdicts: list[tuple[Msg, _Verdict]] = []
        receipts = []
        for case_id, case_items in by_case.items():
            try:
                got = self.exchange.ingest(sender, [e for _m, e in case_items])
            except HubError as error:
                if _retryable(error):
                    raise
                verdicts.extend((m, _Verdict("park", _describe(error))) for m, _e in case_items)
                continue
            verdicts.extend(self._verdicts(sender, {case_id: case_items}, got))
            receipts.extend(got)
        return verdicts, receipts

    def _verdicts(
        self, sender: str, by_case: dict[UUID, list[tuple[Msg, SharedEvent]]], receipts: list[CaseReceipt]
    ) -> list[tuple[Msg, _Verdict]]:
        out: list[tuple[Msg, _Verdict]] = []
        for receipt in receipts:
            stored: list[SharedEvent] = []
            if receipt.status == "fork":
                stored = self.exchange.hub.get_case(receipt.case_id).shared_events(sender)
            for msg, event in by_case.get(receipt.case_id, []):
                if event.seq > receipt.stored_through:
                    out.append((msg, _GAP))
                elif stored and stored[event.seq - 1].hash() != event.hash():
                    out.append((msg, _Verdict("park", f"fork: differs from the stored event seq {event.seq}")))
                else:
                    out.append((msg, _ACK))
        return out

    async def _send_receipts(self, sender: str, receipts: list[CaseReceipt]) -> None:
        js = await self._connection.jetstream()
        target, stream = subject(sender, "receipts"), stream_name(sender)

        async def one(r: CaseReceipt) -> None:
            msg_id = f"receipt:{r.case_id}:{r.origin}:{r.stored_through}:{r.status}"
            await js.publish(target, receipt_message(r).SerializeToString(), timeout=self.timeout, stream=stream,
                             headers={MSG_ID: msg_id, SENDER: self.site})

        results = await asyncio.gather(*(one(r) for r in receipts), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # --------------------------------------------------------------------- receipts
    async def _on_receipts(self, msgs: list[Msg]) -> None:
        for msg in msgs:
            partner = (msg.headers or {}).get(SENDER, "")
            if not _SITE.fullmatch(partner):
                await self._park(msg, f"bad_sender: header {SENDER} missing or not a site code")
                continue
            try:
                receipt = receipt_from(exchange_pb2.Receipt.FromString(msg.data))
            except (DecodeError, ValueError) as error:
                await self._park(msg, f"undecodable: {error}")
                continue
            try:
                await self._hub(self._record, partner, receipt, _delivered(msg) > 1)
            except Exception as error:
                if _retryable(error):
                    await self._later(msg, self.redelivery.failure(_delivered(msg)), _describe(error))
                else:
                    await self._park(msg, _describe(error))
                continue
            await msg.ack()

    def _record(self, partner: str, receipt: CaseReceipt, redelivered: bool) -> None:
        """Runs on the worker thread. A redelivered receipt is not recorded twice."""
        if partner == self.site or partner not in self.exchange.hub.get_case(receipt.case_id).sites:
            raise NotRouted(f"办件 {receipt.case_id} 未在 {partner} 与本站 {self.site} 之间流转", partner)
        if not (redelivered and self._recorded(partner, receipt)):
            self.exchange.record_receipts(partner, "nats", [receipt], None)
        if receipt.status == "gap" and self.resend is not None and receipt.origin == self.site:
            self.resend(receipt)
        elif receipt.status == "fork":
            log.error("partner_reports_fork", partner=partner, case_id=str(receipt.case_id),
                      origin=receipt.origin, stored_through=receipt.stored_through)

    def _recorded(self, partner: str, r: CaseReceipt) -> bool:
        return any(
            (x["partner"], x["origin"], x["stored_through"], x["chain_head"], x["status"], x["channel"])
            == (partner, r.origin, r.stored_through, r.chain_head, r.status, "nats")
            for x in self.exchange.receipts(r.case_id)
        )

    # ---------------------------------------------------------- ack, nak, park
    async def _apply(self, msg: Msg, verdict: _Verdict) -> None:
        if verdict.kind == "ack":
            await msg.ack()
        elif verdict.kind == "gap":
            await self._later(msg, self.redelivery.gap(_delivered(msg)), "gap: earlier events never arrived")
        else:
            await self._park(msg, verdict.reason)

    async def _later(self, msg: Msg, delay: float, reason: str) -> None:
        """Let the message come back after ``delay``, or park it when its deliveries are used up."""
        delivered = _delivered(msg)
        if delivered >= self.max_deliver:
            await self._park(msg, f"gave_up after {delivered} deliveries: {reason}")
        else:
            await msg.nak(delay=delay)

    async def _park(self, msg: Msg, reason: str) -> None:
        """Copy the message to the parked subject, then terminate it. If parking fails, it comes back."""
        meta = msg.metadata
        original_id = (msg.headers or {}).get(MSG_ID, "")
        headers = _own_headers(msg.headers)
        headers.update({
            MSG_ID: f"park:{meta.stream}:{meta.sequence.stream}",  # parking twice stores one copy
            PARK_REASON: _header_text(reason),
            PARKED_FROM: msg.subject,
            PARKED_SEQ: str(meta.sequence.stream),
        })
        if original_id:
            headers[ORIGINAL_MSG_ID] = original_id
        try:
            js = await self._connection.jetstream()
            await js.publish(subject(self.site, "parked"), msg.data, timeout=self.timeout, stream=self.stream,
                             headers=headers)
        except (TimeoutError, NatsError, JetStreamError, OSError) as error:
            log.warning("nats_park_failed", site=self.site, stream_seq=meta.sequence.stream,
                        error=type(error).__name__)
            await msg.nak(delay=self.redelivery.failure(meta.num_delivered))
            return
        await msg.term()
        log.warning("nats_message_parked", site=self.site, parked_from=msg.subject, stream_seq=meta.sequence.stream,
                    deliveries=meta.num_delivered, sender=headers.get(SENDER, ""),
                    reason=reason.split(":", 1)[0])


def _own_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """A message's headers without the server's control headers (``Nats-*``), which a copy must not carry:
    an expectation such as Nats-Expected-Last-Sequence would make the copy fail for ever."""
    return {k: v for k, v in (headers or {}).items() if not k.lower().startswith("nats-")}


def _delivered(msg: Msg) -> int:
    return msg.metadata.num_delivered


def _header_text(text: str) -> str:
    """One line of ASCII: header values are parsed as e-mail headers, so non-ASCII is percent-encoded."""
    line = " ".join(text.split())[:300]
    return urllib.parse.quote(line, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")


# ------------------------------------------------------------------------------------ operator tools
@dataclass(frozen=True)
class ParkedMessage:
    """A parked message as an operator sees it; ``stream_seq`` identifies it for ``replay_parked``."""

    stream_seq: int
    reason: str
    sender: str
    event_id: str
    case_id: str
    parked_from: str


def list_parked(nats_url: str, site: str, timeout: float = 10.0) -> list[ParkedMessage]:
    """Every message parked in the site's stream, oldest first."""
    return _operate(nats_url, site, timeout, lambda js: _parked(js, site))


def replay_parked(nats_url: str, site: str, stream_seq: int | None = None, timeout: float = 30.0) -> int:
    """Send parked messages (one, or all in order) back to where they were parked from; how many.

    Each goes out with a fresh ``Nats-Msg-Id`` (the duplicate window would drop the original id) and
    is then deleted from the parked subject. A message that fails again is simply parked again.
    """
    return _operate(nats_url, site, timeout, lambda js: _replay(js, site, stream_seq))


def _operate(
    nats_url: str, site: str, timeout: float, work: Callable[[JetStreamContext], Awaitable[_T]]
) -> _T:
    stream_name(site)  # validates the code before anything connects
    connection = _Connection(nats_url, f"tongban-{site}-operator", min(timeout, 3.0), reconnect=False)

    async def run() -> _T:
        try:
            js = await connection.jetstream()
            try:
                await js.stream_info(stream_name(site))
            except NotFoundError:
                raise StreamMissing(site) from None
            return await work(js)
        finally:
            await connection.close()

    with LoopThread(f"nats-operator-{site}") as loop:
        try:
            return loop.run(run(), timeout=timeout)
        except TimeoutError:
            raise NatsUnavailable(connection.where, f"no answer within {timeout}s") from None


async def _raw_parked(js: JetStreamContext, site: str) -> list[RawStreamMsg]:
    stream, parked = stream_name(site), subject(site, "parked")
    out: list[RawStreamMsg] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(stream, seq=seq, subject=parked, next=True)
        except NotFoundError:
            return out
        out.append(raw)
        seq = (raw.seq or seq) + 1


async def _parked(js: JetStreamContext, site: str) -> list[ParkedMessage]:
    return [_as_parked(raw) for raw in await _raw_parked(js, site)]


def _as_parked(raw: RawStreamMsg) -> ParkedMessage:
    headers = {k: str(v) for k, v in (raw.headers or {}).items()}  # a sender's odd header may not be a str
    parked_from = headers.get(PARKED_FROM, "")
    event_id, case_id = _ids(parked_from, raw.data or b"")
    return ParkedMessage(
        stream_seq=raw.seq or 0, reason=urllib.parse.unquote(headers.get(PARK_REASON, "")),
        sender=headers.get(SENDER, ""), event_id=event_id, case_id=case_id, parked_from=parked_from,
    )


def _ids(parked_from: str, data: bytes) -> tuple[str, str]:
    """(event id, case id) read from the payload, best effort: a poison payload may yield nothing."""
    try:
        if parked_from.endswith(".events"):
            event = exchange_pb2.SharedEvent.FromString(data)
            return event.event_id, event.case_id
        if parked_from.endswith(".receipts"):
            return "", exchange_pb2.Receipt.FromString(data).case_id
    except DecodeError:
        pass
    return "", ""


async def _replay(js: JetStreamContext, site: str, stream_seq: int | None) -> int:
    stream, parked = stream_name(site), subject(site, "parked")
    if stream_seq is None:
        targets = await _raw_parked(js, site)
    else:
        try:
            raw = await js.get_msg(stream, seq=stream_seq)
        except NotFoundError:
            raise NotParked(site, stream_seq) from None
        if raw.subject != parked:
            raise NotParked(site, stream_seq)
        targets = [raw]
    allowed = {subject(site, "events"), subject(site, "receipts")}
    replayed = 0
    for raw in targets:
        headers = _own_headers(raw.headers)
        target = headers.pop(PARKED_FROM, "")
        if target not in allowed:
            log.warning("nats_replay_skipped", site=site, stream_seq=raw.seq, parked_from=target)
            continue
        original_id = headers.pop(ORIGINAL_MSG_ID, "")
        for name in (PARK_REASON, PARKED_SEQ):
            headers.pop(name, None)
        event_id, _case_id = _ids(target, raw.data or b"")
        headers[MSG_ID] = f"{event_id or original_id or 'message'}:replay:{raw.seq}"
        await js.publish(target, raw.data or b"", stream=stream, headers=headers)
        await js.delete_msg(stream, raw.seq or 0)
        replayed += 1
        log.info("nats_message_replayed", site=site, stream_seq=raw.seq, to=target)
    return replayed
