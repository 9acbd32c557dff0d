"""Shared events and receipts <-> exchange.proto messages, one function per message.

A decoded event's hash is recomputed and must equal the one sent: a partner can be wrong, or the
bytes can be damaged, and neither may reach the store.
"""

from __future__ import annotations

import json
import math
from datetime import UTC
from uuid import UUID

from adapters.grpc.translate import actor_message, domain_value
from hub.domain.errors import InvalidInput
from hub.domain.receipts import CaseReceipt, ReceiptStatus
from hub.domain.shared import SharedEvent, canonical_json
from tongban.v1 import case_pb2, exchange_pb2

_STATUS = {
    ReceiptStatus.STORED: exchange_pb2.RECEIPT_STATUS_STORED,
    ReceiptStatus.GAP: exchange_pb2.RECEIPT_STATUS_GAP,
    ReceiptStatus.FORK: exchange_pb2.RECEIPT_STATUS_FORK,
}
_STATUS_OF = {number: status for status, number in _STATUS.items()}


def event_message(event: SharedEvent) -> exchange_pb2.SharedEvent:
    message = exchange_pb2.SharedEvent(
        event_id=event.event_id,
        case_id=str(event.case_id),
        origin_site=event.origin,
        seq=event.seq,
        lamport=event.lamport,
        type=event.type,
        type_version=event.type_version,
        actor=actor_message(event.actor),
        data_json=canonical_json(event.data),
        hash=event.hash(),
    )
    message.occurred_at.FromDatetime(event.occurred_at.astimezone(UTC))
    return message


def _not_json(constant: str) -> float:
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    """NaN and infinities are not JSON (RFC 8259), and a store could not keep them as they were sent."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite number")
    return value


def event_from(message: exchange_pb2.SharedEvent) -> SharedEvent:
    """Decode and verify one event; InvalidInput names what is wrong."""
    try:
        data = json.loads(message.data_json.decode("utf-8"), parse_constant=_not_json, parse_float=_finite)
        case_id = UUID(message.case_id)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput.one("events", f"事件 {message.event_id} 无法解析: {exc}") from None
    role = domain_value(case_pb2.Role.DESCRIPTOR, message.actor.role)
    event = SharedEvent(
        case_id=case_id,
        origin=message.origin_site,
        seq=message.seq,
        lamport=message.lamport,
        event_id=message.event_id,
        type=message.type,
        type_version=message.type_version,
        occurred_at=message.occurred_at.ToDatetime(tzinfo=UTC),
        actor={"staff_id": message.actor.staff_id, "role": role or "", "site": message.actor.site,
               "name": message.actor.name},
        data=data if isinstance(data, dict) else {},
    )
    if event.seq < 1 or event.lamport < 1 or not isinstance(data, dict):
        raise InvalidInput.one("events", f"事件 {message.event_id} 的序号或数据无效")
    if event.hash() != message.hash:
        raise InvalidInput.one("events", f"事件 {message.event_id} 的哈希与内容不符")
    return event


def receipt_message(receipt: CaseReceipt) -> exchange_pb2.Receipt:
    return exchange_pb2.Receipt(
        case_id=str(receipt.case_id),
        origin_site=receipt.origin,
        stored_through_seq=receipt.stored_through,
        chain_head=receipt.chain_head,
        status=_STATUS[receipt.status],
        missing_from_seq=receipt.missing_from,
    )


def receipt_from(message: exchange_pb2.Receipt) -> CaseReceipt:
    return CaseReceipt(
        case_id=UUID(message.case_id),
        origin=message.origin_site,
        stored_through=message.stored_through_seq,
        chain_head=message.chain_head,
        status=receipt_status(message.status),
        missing_from=message.missing_from_seq,
    )


def receipt_status(number: int) -> ReceiptStatus:
    """A receipt's status; UNSPECIFIED or a number we do not know is refused, never read as stored."""
    status = _STATUS_OF.get(number)
    if status is None:
        raise InvalidInput.one("receipts.status", f"未知的回执状态 {number}")
    return status
