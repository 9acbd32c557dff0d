"""NATS JetStream exchange: subjects, the per-site stream, errors and the connection."""

from __future__ import annotations

import asyncio
import re
import urllib.parse
from dataclasses import replace
from typing import Literal

import structlog
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import Error as JetStreamError
from nats.js.errors import NotFoundError

from adapters.nats.access import NatsAccess

log = structlog.get_logger("tongban.nats")

MSG_ID = "Nats-Msg-Id"
MESSAGE_ID = "Tongban-Message-Id"  # the id a payload is sealed under: kept through resends, parking, replay
PARKED_CASE = "Tongban-Parked-Case"
PARK_REASON = "Tongban-Park-Reason"
PARKED_FROM = "Tongban-Parked-From"
PARKED_SEQ = "Tongban-Parked-Seq"
ORIGINAL_MSG_ID = "Tongban-Original-Msg-Id"
DISCARDED_BY = "Tongban-Discarded-By"
DISCARD_REASON = "Tongban-Discard-Reason"
EVENTS_CONSUMER, RECEIPTS_CONSUMER = "hub-events", "hub-receipts"
DUPLICATE_WINDOW = 600.0  # seconds: a re-publish within it is dropped by the server
PARKING_SPARE = 2  # deliveries the consumer allows beyond the inbox's limit, so a failed park is retried
SITE_CODE = re.compile(r"\d{6}")
Kind = Literal["events", "receipts"]
REPLAY = "replay"


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
def checked_site(site: str) -> str:
    """Site codes become subject tokens, and a sender's code is read from one: only 6 digits pass."""
    if not SITE_CODE.fullmatch(site):
        raise ValueError(f"not a site code: {site!r}")
    return site


def stream_name(site: str) -> str:
    return f"TONGBAN_{checked_site(site)}"


def subject(receiver: str, kind: Kind, sender: str) -> str:
    """``tongban.<receiver>.<kind>.<sender>``: the server lets only ``sender`` publish on it."""
    return f"tongban.{checked_site(receiver)}.{kind}.{checked_site(sender)}"


def parked_subject(site: str) -> str:
    return f"tongban.{checked_site(site)}.parked"


def discarded_subject(site: str) -> str:
    """Where an operator's discarded parked messages are kept, with who and why in their headers."""
    return f"tongban.{checked_site(site)}.discarded"


def replay_subject(original: str) -> str:
    """Where an operator sends a parked message back: only the receiving site may publish there."""
    return f"{original}.{REPLAY}"


def consumed(site: str, kind: Kind) -> str:
    """The consumer filter: every sender's messages of ``kind`` to ``site``, replays included."""
    return f"tongban.{checked_site(site)}.{kind}.>"


def sender_of(subject_: str, site: str, kind: Kind) -> str | None:
    """The sending site a subject names, for a message of ``kind`` to ``site``; None if it names none."""
    tokens = subject_.split(".")
    if len(tokens) == 5 and tokens[4] == REPLAY:
        tokens = tokens[:4]
    if len(tokens) != 4 or tokens[:3] != ["tongban", site, kind] or not SITE_CODE.fullmatch(tokens[3]):
        return None
    return tokens[3]


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


def named_sender(subject_: str) -> tuple[str, Kind] | None:
    """(sender, kind) an events or receipts subject of any site names, or None (for parked messages)."""
    tokens = subject_.split(".")
    if len(tokens) >= 4 and tokens[2] in ("events", "receipts"):
        kind: Kind = "events" if tokens[2] == "events" else "receipts"
        sender = sender_of(subject_, tokens[1], kind)
        if sender is not None:
            return sender, kind
    return None


# ---------------------------------------------------------------------------------------- connections
def _where(url: str) -> str:
    """host:port only: a URL may carry credentials, which never reach a log or an error message."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.hostname}:{parts.port or 4222}"


class NatsConnection:
    """One NATS connection, opened on first use on the calling loop.

    Once connected it reconnects forever by itself (subscriptions and consumers survive). The first
    connect is bounded by ``connect_timeout`` whatever the client library does with its own retry
    options, and a failed attempt is closed so that no half-open socket is left behind.
    """

    def __init__(self, access: NatsAccess, name: str, connect_timeout: float = 3.0, reconnect: bool = True,
                 max_pending: int = 4000) -> None:
        self.access, self.name, self.connect_timeout, self.reconnect = access, name, connect_timeout, reconnect
        self.max_pending = max_pending  # JetStream publish_async: at most this many unacknowledged
        self.where = _where(access.url)
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
                        self.access.url, name=self.name, **self.access.connect_options(),
                        allow_reconnect=self.reconnect,
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
            self._nc, self._js = nc, nc.jetstream(timeout=self.connect_timeout,
                                                  publish_async_max_pending=self.max_pending)
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
