"""NATS JetStream exchange, outbound: publishing our events to a partner's stream."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from nats.errors import Error as NatsError
from nats.js.api import PubAck

from adapters.exchange.channel import Mapped
from adapters.exchange.nats_channel.common import (
    MESSAGE_ID,
    MSG_ID,
    DeliveryFailed,
    NatsConnection,
    checked_site,
    log,
    stream_name,
    subject,
)
from adapters.exchange.nats_channel.sealing import Sealer
from adapters.exchange.wire import event_message
from adapters.nats.access import NatsAccess
from adapters.nats.loop import LoopThread
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent


# ------------------------------------------------------------------------------------------- outbound
class NatsPartner:
    """The relay's channel to one partner over NATS: publish events into the partner's stream.

    Each event goes to ``tongban.<partner>.events.<site>`` (the one subject the server lets this site
    send events to the partner on), sealed for the partner (sealing.py) under its event id, with
    ``Nats-Msg-Id`` ``<site>:<event_id>``: naming the sender, so no other site can take the id first and
    have the genuine event dropped as a repeat.
    ``deliver`` returns once JetStream has acknowledged (stored) every event, or raises so the relay
    sends the whole batch again later; it never takes longer than ``timeout``. Receipts come back
    asynchronously, through this site's own NatsInbox, so ``deliver`` returns none.
    """

    channel_name = "nats"

    def __init__(
        self, site: str, partner: str, nats: NatsAccess, sealer: Sealer, timeout: float = 5.0, in_flight: int = 256,
        connect_timeout: float = 3.0,
    ) -> None:
        self.site, self.partner = checked_site(site), checked_site(partner)
        self.sealer = sealer
        self.timeout, self.in_flight = timeout, in_flight
        self.subject, self.stream = subject(partner, "events", site), stream_name(partner)
        self._loop = LoopThread(f"nats-to-{partner}")
        self._connection = NatsConnection(nats, f"tongban-{site}-to-{partner}", min(connect_timeout, timeout),
                                       max_pending=in_flight)

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        self._send(events, "")
        return []

    def deliver_async(self, events: Sequence[SharedEvent]) -> Mapped:
        """Publish and return at once; the relay waits for the acknowledgements when it settles the batch,
        with further batches publishing meanwhile (its window bounds the unacknowledged events)."""
        messages = [(f"{self.site}:{e.event_id}", e.event_id, self._sealed(e)) for e in events]
        return Mapped(self._loop.submit(self._publish(messages)), lambda _acked: [])

    def resend(self, events: Sequence[SharedEvent], receipt: CaseReceipt) -> list[CaseReceipt]:
        """Fill the gap a partner reported (the relay's ``fill_gap``, wired as NatsInbox's ``resend``): our
        events from the missing seq. Their receipts come back through the inbox, so none are returned.

        They go out under message ids of their own, ``<site>:<event_id>:gap:<stored_through>``: under the
        plain event id the server would drop them as repeats for 10 minutes, while the originals may
        be parked, or may have lost the id to a message that was parked. The same gap reported twice
        still sends one copy.
        """
        self._send(events, f":gap:{receipt.stored_through}")
        return []

    def _send(self, events: Sequence[SharedEvent], id_suffix: str) -> None:
        if not events:
            return
        messages = [(f"{self.site}:{e.event_id}{id_suffix}", e.event_id, self._sealed(e)) for e in events]
        try:
            self._loop.run(self._publish(messages), timeout=self.timeout)
        except TimeoutError:
            raise DeliveryFailed(self.partner, len(messages), len(messages),
                                 f"no acknowledgement within {self.timeout}s") from None

    def _sealed(self, event: SharedEvent) -> bytes:
        return self.sealer.seal("events", self.partner, event.event_id, event_message(event).SerializeToString())

    def close(self) -> None:
        if self._loop.running:
            try:
                self._loop.run(self._connection.close(), timeout=self.timeout)
            except (TimeoutError, NatsError, OSError) as error:
                log.warning("nats_close_failed", partner=self.partner, error=type(error).__name__)
        self._loop.stop()

    async def _publish(self, messages: list[tuple[str, str, bytes]]) -> None:
        """JetStream publish_async: at most ``in_flight`` unacknowledged (the client's own bound), every
        acknowledgement awaited within ``timeout``; what is not acknowledged by then is abandoned (its
        slot freed) and the batch fails, for the relay to send again under the same message ids."""
        js = await self._connection.jetstream()
        acks: list[asyncio.Future[PubAck]] = []
        try:
            async with asyncio.timeout(self.timeout):
                for msg_id, sealed_as, payload in messages:
                    acks.append(await js.publish_async(self.subject, payload, stream=self.stream,
                                                       headers={MSG_ID: msg_id, MESSAGE_ID: sealed_as}))
                results = await asyncio.gather(*acks, return_exceptions=True)
        except (TimeoutError, NatsError) as error:  # no acknowledgement in time, or the connection failed
            acknowledged = sum(1 for a in acks if a.done() and not a.cancelled())
            for ack in acks:
                ack.cancel()
            cause = (f"no acknowledgement within {self.timeout}s" if isinstance(error, TimeoutError)
                     else f"{type(error).__name__}: {error}")
            raise DeliveryFailed(self.partner, len(messages) - acknowledged, len(messages), cause) from None
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            first = failures[0]
            raise DeliveryFailed(self.partner, len(failures), len(messages), f"{type(first).__name__}: {first}")
