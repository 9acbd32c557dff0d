"""NATS JetStream exchange, for operators: parked (poison) messages, listed, replayed or discarded.

A discarded message is not deleted: it moves to the site's ``discarded`` subject with who discarded
it and why in its headers, so the record stays in the stream (no consumer reads that subject)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.api import (
    RawStreamMsg,
)
from nats.js.errors import NotFoundError

from adapters.exchange.nats_channel.common import (
    DISCARD_REASON,
    DISCARDED_BY,
    MESSAGE_ID,
    MSG_ID,
    ORIGINAL_MSG_ID,
    PARK_REASON,
    PARKED_CASE,
    PARKED_FROM,
    PARKED_SEQ,
    REPLAY,
    NatsConnection,
    NatsUnavailable,
    NotParked,
    StreamMissing,
    discarded_subject,
    log,
    named_sender,
    parked_subject,
    replay_subject,
    sender_of,
    stream_name,
)
from adapters.exchange.nats_channel.inbox import header_text, own_headers
from adapters.nats.access import NatsAccess
from adapters.nats.loop import LoopThread

_T = TypeVar("_T")


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


def list_parked(nats: NatsAccess, site: str, timeout: float = 10.0) -> list[ParkedMessage]:
    """Every message parked in the site's stream, oldest first. Payloads stay sealed: what is listed
    comes from the headers the inbox wrote when it parked them."""
    return _operate(nats, site, timeout, lambda js: _parked(js, site))


def replay_parked(nats: NatsAccess, site: str, stream_seq: int | None = None, timeout: float = 30.0) -> int:
    """Send parked messages (one, or all in order) back to the inbox they were parked from; how many.

    Each goes out on ``<original subject>.replay`` (only this site may publish there; the sender is
    still the subject's token), still sealed and under its original ``Tongban-Message-Id``, with a
    fresh ``Nats-Msg-Id`` (the duplicate window would drop the original id), and is then deleted from
    the parked subject. A message that fails again is simply parked again.
    """
    return _operate(nats, site, timeout, lambda js: _replay(js, site, stream_seq))


def discard_parked(nats: NatsAccess, site: str, stream_seq: int, reason: str, by: str, timeout: float = 30.0) -> None:
    """Give up on one parked message, on the record: it moves to the ``discarded`` subject with ``by``
    and ``reason`` in its headers (and its parking headers kept), and leaves the parked subject."""
    if not reason.strip() or not by.strip():
        raise ValueError("放弃搁置的消息须写明理由和操作人")
    _operate(nats, site, timeout, lambda js: _discard(js, site, stream_seq, reason, by))


def _operate(
    nats: NatsAccess, site: str, timeout: float, work: Callable[[JetStreamContext], Awaitable[_T]]
) -> _T:
    stream_name(site)  # validates the code before anything connects
    connection = NatsConnection(nats, f"tongban-{site}-operator", min(timeout, 3.0), reconnect=False)

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
    stream, parked = stream_name(site), parked_subject(site)
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
    sender, kind = named_sender(parked_from) or ("", "")
    return ParkedMessage(
        stream_seq=raw.seq or 0, reason=urllib.parse.unquote(headers.get(PARK_REASON, "")),
        sender=sender, event_id=headers.get(MESSAGE_ID, "") if kind == "events" else "",
        case_id=headers.get(PARKED_CASE, ""), parked_from=parked_from,
    )


async def _replay(js: JetStreamContext, site: str, stream_seq: int | None) -> int:
    stream, parked = stream_name(site), parked_subject(site)
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
    replayed = 0
    for raw in targets:
        headers = own_headers(raw.headers)
        origin = headers.pop(PARKED_FROM, "").removesuffix(f".{REPLAY}")
        if sender_of(origin, site, "events") is None and sender_of(origin, site, "receipts") is None:
            log.warning("nats_replay_skipped", site=site, stream_seq=raw.seq, parked_from=origin)
            continue
        original_id = headers.pop(ORIGINAL_MSG_ID, "")
        for name in (PARK_REASON, PARKED_SEQ, PARKED_CASE):
            headers.pop(name, None)
        headers[MSG_ID] = f"{headers.get(MESSAGE_ID) or original_id or 'message'}:replay:{raw.seq}"
        target = replay_subject(origin)
        await js.publish(target, raw.data or b"", stream=stream, headers=headers)
        await js.delete_msg(stream, raw.seq or 0)
        replayed += 1
        log.info("nats_message_replayed", site=site, stream_seq=raw.seq, to=target)
    return replayed


async def _discard(js: JetStreamContext, site: str, stream_seq: int, reason: str, by: str) -> None:
    stream, parked = stream_name(site), parked_subject(site)
    try:
        raw = await js.get_msg(stream, seq=stream_seq)
    except NotFoundError:
        raise NotParked(site, stream_seq) from None
    if raw.subject != parked:
        raise NotParked(site, stream_seq)
    headers = own_headers(raw.headers)
    headers.update({DISCARDED_BY: header_text(by), DISCARD_REASON: header_text(reason),
                    MSG_ID: f"discarded:{raw.seq}"})
    await js.publish(discarded_subject(site), raw.data or b"", stream=stream, headers=headers)
    await js.delete_msg(stream, raw.seq or 0)
    log.info("nats_message_discarded", site=site, stream_seq=raw.seq, by=by, reason=reason)
