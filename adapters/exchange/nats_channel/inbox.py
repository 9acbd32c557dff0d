"""NATS JetStream exchange, inbound: the inbox consuming partners' events and their receipts."""

from __future__ import annotations

import asyncio
import functools
import threading
import urllib.parse
from collections import defaultdict
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from uuid import UUID

from google.protobuf.message import DecodeError
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
)
from nats.js.errors import Error as JetStreamError

from adapters.exchange.nats_channel.common import (
    EVENTS_CONSUMER,
    MESSAGE_ID,
    MSG_ID,
    ORIGINAL_MSG_ID,
    PARK_REASON,
    PARKED_CASE,
    PARKED_FROM,
    PARKED_SEQ,
    PARKING_SPARE,
    RECEIPTS_CONSUMER,
    Kind,
    NatsConnection,
    NatsUnavailable,
    checked_site,
    consumed,
    ensure_stream,
    log,
    named_sender,
    parked_subject,
    sender_of,
    stream_name,
    subject,
)
from adapters.exchange.nats_channel.sealing import Sealer, Unsealable
from adapters.exchange.observer import ExchangeObserver, Unobserved
from adapters.exchange.wire import event_from, receipt_from, receipt_message
from adapters.nats.access import NatsAccess
from adapters.nats.loop import LoopThread
from hub.application.case_sharing import CaseSharing, NotRouted
from hub.application.partner_intake import refusal_reason
from hub.domain.errors import ConcurrentUpdate, HubError
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent
from tongban.v1 import exchange_pb2

_T = TypeVar("_T")


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
    """This message can never be applied; it is parked with ``reason`` (and its case, once known)."""

    def __init__(self, reason: str, case_id: str = "", code: str = "", sender: str = "") -> None:
        super().__init__(reason)
        self.reason, self.case_id = reason, case_id
        self.code, self.sender = code, sender  # the refusal's reason code, when the sender is known (counted)


def _retryable(error: BaseException) -> bool:
    """A hub error is final, except losing a race on a case: that one goes again."""
    return not isinstance(error, HubError) or isinstance(error, ConcurrentUpdate)


def _describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup) and error.exceptions:
        return _describe(error.exceptions[0])
    code = error.reason if isinstance(error, HubError) else None
    return f"{code or type(error).__name__}: {error}"


class NatsInbox:
    """This site's side of the NATS channel: apply partners' events, record their receipts.

    Two durable pull consumers on the site's own stream. ``hub-events`` applies events per sender
    and batch (``CaseSharing.ingest``) and answers each with receipts; ``hub-receipts`` records the
    partners' receipts and, on a gap, calls ``resend`` so the missing events go out again. A message
    is acknowledged only after the hub stored it and its receipt was published; everything that can
    succeed later comes back (``nak``), what never can is parked.

    The sender is the last token of the subject (``tongban.<site>.events.<sender>``), which the server
    lets only that site publish on; the payload must open as sealed by that sender for us under the
    message id, and an event must be the sender's own (origin = sender). Anything else is parked.

    Hub calls run on one worker thread, never on the event loop: a slow store must not stall the
    connection's pings and acknowledgements.
    """

    def __init__(
        self, sharing: CaseSharing, nats: NatsAccess, sealer: Sealer,
        resend: Callable[[CaseReceipt], None] | None = None, max_deliver: int = 5, *, batch: int = 100,
        fetch_timeout: float = 1.0, ack_wait: float = 10.0,
        redelivery: Redelivery | None = None, timeout: float = 5.0, observer: ExchangeObserver | None = None,
    ) -> None:
        self.sharing, self.site, self.sealer = sharing, checked_site(sharing.site), sealer
        self.observer: ExchangeObserver = observer or Unobserved()
        self.resend, self.max_deliver = resend, max_deliver
        self.batch, self.fetch_timeout, self.ack_wait = batch, fetch_timeout, ack_wait
        self.redelivery = redelivery or Redelivery()
        self.timeout = timeout
        self.stream = stream_name(self.site)
        self._connection = NatsConnection(nats, f"tongban-{self.site}-inbox", timeout)
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
            durable_name=durable, name=durable, filter_subject=consumed(self.site, kind),
            ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=self.ack_wait,
            max_deliver=self.max_deliver + PARKING_SPARE,
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
                if poison.code and poison.sender:
                    log.warning("partner_refused", site=self.site, partner=poison.sender, reason=poison.code)
                    self.observer.refused(poison.sender, poison.code)
                await self._park(msg, poison.reason, poison.case_id)
                continue
            by_sender[sender].append((msg, event))
        for sender, items in by_sender.items():
            await self._ingest_from(sender, items)

    def _opened(self, msg: Msg, kind: Kind) -> tuple[str, str, bytes]:
        """(sender, message id, plaintext) of a message on our ``kind`` subjects, or _Poison."""
        sender = sender_of(msg.subject, self.site, kind)
        if sender is None:
            raise _Poison(f"bad_subject: {msg.subject} names no sending site")
        message_id = (msg.headers or {}).get(MESSAGE_ID, "")
        if not message_id:
            raise _Poison(f"unsealable: header {MESSAGE_ID} missing")
        try:
            return sender, message_id, self.sealer.open(kind, sender, message_id, msg.data)
        except Unsealable as error:
            raise _Poison(str(error)) from None

    def _decode_event(self, msg: Msg) -> tuple[str, SharedEvent]:
        sender, message_id, plaintext = self._opened(msg, "events")
        try:
            event = event_from(exchange_pb2.SharedEvent.FromString(plaintext))
        except DecodeError as error:
            raise _Poison(f"undecodable: {error}") from None
        except HubError as error:  # InvalidInput: bad fields, or the hash does not match the content
            raise _Poison(_describe(error), code=refusal_reason(error), sender=sender) from None
        if event.event_id != message_id:
            raise _Poison(f"id_mismatch: sealed as {message_id}, event {event.event_id}", str(event.case_id))
        if event.origin != sender:
            raise _Poison(f"sender_mismatch: {sender} sent an event of origin {event.origin}", str(event.case_id))
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
            receipts = self._store(sender, [e for _m, e in items])
            return self._verdicts(sender, by_case, receipts), receipts
        except HubError as error:
            if _retryable(error):
                raise
            if len(items) == 1:
                self._refused(sender, error)
                return [(m, _Verdict("park", _describe(error))) for m, _e in items], []
        verdicts: list[tuple[Msg, _Verdict]] = []
        receipts = []
        # Refused whole: per case, and within a refused case per event (in seq order), so that only the
        # events at fault are parked and the ones before them are stored.
        groups = [(case_id, case_items) for case_id, case_items in by_case.items()] if len(by_case) > 1 else [
            (case_id, [item]) for case_id, case_items in by_case.items()
            for item in sorted(case_items, key=lambda i: i[1].seq)]
        for case_id, group in groups:
            try:
                got = self._store(sender, [e for _m, e in group])
            except HubError as error:
                if _retryable(error):
                    raise
                if len(group) > 1:
                    more, got_more = self._ingest(sender, group)
                    verdicts.extend(more)
                    receipts.extend(got_more)
                    continue
                self._refused(sender, error)
                verdicts.extend((m, _Verdict("park", _describe(error))) for m, _e in group)
                continue
            verdicts.extend(self._verdicts(sender, {case_id: group}, got))
            receipts.extend(got)
        return verdicts, receipts

    def _refused(self, sender: str, error: HubError) -> None:
        reason = refusal_reason(error)
        log.warning("partner_refused", site=self.site, partner=sender, reason=reason,
                    event_id=error.metadata.get("event_id", ""))
        self.observer.refused(sender, reason)

    def _store(self, sender: str, events: list[SharedEvent]) -> list[CaseReceipt]:
        receipts = self.sharing.ingest(sender, events)
        self.observer.received(sender, "nats", len(events))
        return receipts

    def _verdicts(
        self, sender: str, by_case: dict[UUID, list[tuple[Msg, SharedEvent]]], receipts: list[CaseReceipt]
    ) -> list[tuple[Msg, _Verdict]]:
        out: list[tuple[Msg, _Verdict]] = []
        for receipt in receipts:
            stored: list[SharedEvent] = []
            if receipt.status == "fork":
                stored = self.sharing.log.get_case(receipt.case_id).shared_events(sender)
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
        target, stream = subject(sender, "receipts", self.site), stream_name(sender)

        async def one(r: CaseReceipt) -> None:
            msg_id = f"receipt:{self.site}:{r.case_id}:{r.origin}:{r.stored_through}:{r.status}"
            sealed = self.sealer.seal("receipts", sender, msg_id, receipt_message(r).SerializeToString())
            await js.publish(target, sealed, timeout=self.timeout, stream=stream,
                             headers={MSG_ID: msg_id, MESSAGE_ID: msg_id})

        results = await asyncio.gather(*(one(r) for r in receipts), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # --------------------------------------------------------------------- receipts
    async def _on_receipts(self, msgs: list[Msg]) -> None:
        """A fetch's receipts from each partner are recorded in one transaction; if that is refused,
        one by one, so that only the receipt at fault is retried or parked."""
        by_partner: dict[str, list[tuple[Msg, CaseReceipt]]] = defaultdict(list)
        for msg in msgs:
            try:
                partner, _message_id, plaintext = self._opened(msg, "receipts")
            except _Poison as poison:
                await self._park(msg, poison.reason)
                continue
            try:
                by_partner[partner].append((msg, receipt_from(exchange_pb2.Receipt.FromString(plaintext))))
            except (DecodeError, ValueError) as error:
                await self._park(msg, f"undecodable: {error}")
        for partner, items in by_partner.items():
            try:
                await self._hub(self._record, partner, [(r, _delivered(m) > 1) for m, r in items])
            except Exception:
                for msg, receipt in items:
                    await self._record_one(msg, partner, receipt)
                continue
            for msg, receipt in items:
                await self._follow_up(msg, partner, receipt)

    async def _record_one(self, msg: Msg, partner: str, receipt: CaseReceipt) -> None:
        try:
            await self._hub(self._record, partner, [(receipt, _delivered(msg) > 1)])
        except Exception as error:
            await self._refuse(msg, error)
            return
        await self._follow_up(msg, partner, receipt)

    async def _follow_up(self, msg: Msg, partner: str, receipt: CaseReceipt) -> None:
        """After the receipt is stored: resend from a gap, or report a fork; then acknowledge. A failed
        resend brings the message back, and its receipt is not recorded again (it is redelivered)."""
        try:
            await self._hub(self._act_on, partner, receipt)
        except Exception as error:
            await self._refuse(msg, error)
            return
        await msg.ack()

    async def _refuse(self, msg: Msg, error: Exception) -> None:
        if _retryable(error):
            await self._later(msg, self.redelivery.failure(_delivered(msg)), _describe(error))
        else:
            await self._park(msg, _describe(error))

    def _record(self, partner: str, items: list[tuple[CaseReceipt, bool]]) -> None:
        """Runs on the worker thread. One transaction; a redelivered receipt is not recorded twice."""
        fresh = []
        for receipt, redelivered in items:
            if partner == self.site or partner not in self.sharing.sites_of(receipt.case_id):
                raise NotRouted(f"办件 {receipt.case_id} 未在 {partner} 与本站 {self.site} 之间流转", partner)
            if not (redelivered and self._recorded(partner, receipt)):
                fresh.append(receipt)
        if fresh:
            confirmed = self.sharing.record_receipts(partner, "nats", fresh, None)
            self.observer.awaiting_receipts(partner, confirmed=confirmed)

    def _act_on(self, partner: str, receipt: CaseReceipt) -> None:
        """Runs on the worker thread."""
        if receipt.status == "gap" and self.resend is not None and receipt.origin == self.site:
            self.resend(receipt)
        elif receipt.status == "fork":
            log.error("partner_reports_fork", partner=partner, case_id=str(receipt.case_id),
                      origin=receipt.origin, stored_through=receipt.stored_through)

    def _recorded(self, partner: str, r: CaseReceipt) -> bool:
        return any(
            (x["partner"], x["origin"], x["stored_through"], x["chain_head"], x["status"], x["channel"])
            == (partner, r.origin, r.stored_through, r.chain_head, r.status, "nats")
            for x in self.sharing.receipts(r.case_id)
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

    async def _park(self, msg: Msg, reason: str, case_id: str = "") -> None:
        """Copy the message (still sealed) to the parked subject, with where it came from in a header, then
        terminate it. If parking fails, it comes back."""
        meta = msg.metadata
        original_id = (msg.headers or {}).get(MSG_ID, "")
        headers = own_headers(msg.headers)
        headers.update({
            MSG_ID: f"park:{meta.stream}:{meta.sequence.stream}",  # parking twice stores one copy
            PARK_REASON: header_text(reason),
            PARKED_FROM: msg.subject,
            PARKED_SEQ: str(meta.sequence.stream),
        })
        if original_id:
            headers[ORIGINAL_MSG_ID] = original_id
        if case_id:
            headers[PARKED_CASE] = case_id
        try:
            js = await self._connection.jetstream()
            await js.publish(parked_subject(self.site), msg.data, timeout=self.timeout, stream=self.stream,
                             headers=headers)
        except (TimeoutError, NatsError, JetStreamError, OSError) as error:
            log.warning("nats_park_failed", site=self.site, stream_seq=meta.sequence.stream,
                        error=type(error).__name__)
            await msg.nak(delay=self.redelivery.failure(meta.num_delivered))
            return
        await msg.term()
        log.warning("nats_message_parked", site=self.site, parked_from=msg.subject, stream_seq=meta.sequence.stream,
                    deliveries=meta.num_delivered, sender=(named_sender(msg.subject) or ("",))[0],
                    reason=reason.split(":", 1)[0])


def own_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """A message's headers without the server's control headers (``Nats-*``), which a copy must not carry:
    an expectation such as Nats-Expected-Last-Sequence would make the copy fail for ever."""
    return {k: v for k, v in (headers or {}).items() if not k.lower().startswith("nats-")}


def _delivered(msg: Msg) -> int:
    return msg.metadata.num_delivered


def header_text(text: str) -> str:
    """One line of ASCII: header values are parsed as e-mail headers, so non-ASCII is percent-encoded."""
    line = " ".join(text.split())[:300]
    return urllib.parse.quote(line, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
