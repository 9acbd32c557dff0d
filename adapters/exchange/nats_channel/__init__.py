"""The NATS JetStream channel between sites: a durable mailbox per site instead of a direct call.

Each site S owns stream ``TONGBAN_S`` over ``tongban.S.>`` (see docs/partner-api.md): partner P
publishes its events to ``tongban.S.events.P``, S answers with receipts on ``tongban.P.receipts.S``,
and what S cannot apply is parked on ``tongban.S.parked`` for an operator. The server's permissions
(adapters/nats/config.py) let only P publish on subjects ending in ``.P``, so the subject names the
sender; payloads are sealed for the receiver (sealing.py). The stream is a work queue: a message
leaves it once acknowledged, so its size is the backlog plus what is parked.

Delivery is at least once everywhere, and exactly once in effect: publishers set ``Nats-Msg-Id``
(the server drops a repeat within the 10-minute duplicate window) and the receiving hub ignores any
(case, origin, seq) it already holds. So every failure is answered by doing the same thing again:
the relay re-publishes a whole batch, the inbox lets a message come back (``nak``) instead of
acknowledging it. Only a message that can never succeed (undecodable, refused, forged) or that has
used up its deliveries is parked, and parked means kept, not lost: ``replay_parked`` sends it again.
"""

from adapters.exchange.nats_channel.common import (
    DUPLICATE_WINDOW,
    MESSAGE_ID,
    MSG_ID,
    ORIGINAL_MSG_ID,
    PARK_REASON,
    PARKED_CASE,
    PARKED_FROM,
    PARKED_SEQ,
    DeliveryFailed,
    NatsChannelError,
    NatsUnavailable,
    NotParked,
    StreamMissing,
    discarded_subject,
    ensure_stream,
    parked_subject,
    replay_subject,
    sender_of,
    stream_name,
    subject,
)
from adapters.exchange.nats_channel.inbox import NatsInbox, Redelivery
from adapters.exchange.nats_channel.parked import ParkedMessage, discard_parked, list_parked, replay_parked
from adapters.exchange.nats_channel.partner import NatsPartner
from adapters.exchange.nats_channel.sealing import Sealer, Unsealable

__all__ = [
    "DUPLICATE_WINDOW", "MESSAGE_ID", "MSG_ID", "ORIGINAL_MSG_ID", "PARKED_CASE", "PARKED_FROM", "PARKED_SEQ",
    "PARK_REASON", "DeliveryFailed", "NatsChannelError", "NatsInbox", "NatsPartner", "NatsUnavailable",
    "NotParked", "ParkedMessage", "Redelivery", "Sealer", "StreamMissing", "Unsealable", "discard_parked",
    "discarded_subject", "ensure_stream", "list_parked", "parked_subject", "replay_parked", "replay_subject",
    "sender_of", "stream_name", "subject",
]
