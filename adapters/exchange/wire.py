"""Shared events and receipts <-> exchange.proto messages, one function per message.

A decoded event's hash is recomputed and must equal the one sent: a partner can be wrong, or the
bytes can be damaged, and neither may reach the store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from adapters import bounded_json
from adapters.grpc.translate import actor_message, domain_value
from hub.application.partner_intake import EventInvalid
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


MAX_DATA_BYTES = 64 * 1024  # an event's data; a receipt with fifty materials is a few kilobytes
# google.protobuf.Timestamp's range, 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z: beyond it
# ToDatetime raises (and an IngestEvents stream would end); the intake holds events to far closer bounds.
MIN_SECONDS, MAX_SECONDS = -62_135_596_800, 253_402_300_799


def _id(message: exchange_pb2.SharedEvent) -> str:
    return message.event_id[:64]


def occurred_at(message: exchange_pb2.SharedEvent) -> datetime:
    """The event's time, checked against the Timestamp range before it is converted."""
    stamp = message.occurred_at
    if not message.HasField("occurred_at") or not (
        MIN_SECONDS <= stamp.seconds <= MAX_SECONDS and 0 <= stamp.nanos <= 999_999_999
    ):
        raise EventInvalid.at("TIMESTAMP_OUT_OF_RANGE", _id(message), "occurred_at", "发生时间缺失或超出时间戳范围")
    return stamp.ToDatetime(tzinfo=UTC)  # type: ignore[no-any-return]


def event_from(message: exchange_pb2.SharedEvent) -> SharedEvent:
    """Decode and verify one event; EventInvalid (InvalidInput with a reason code) names what is wrong.

    Decoding is bounded (the data's size and depth, the time's range) so that no input makes it raise
    anything else; what the event means is checked by the intake (hub/application/partner_intake.py).
    """
    try:
        data = bounded_json.loads(message.data_json, max_bytes=MAX_DATA_BYTES)
    except bounded_json.JsonRefused as refused:
        raise EventInvalid.at(refused.reason, _id(message), "data_json", f"事件数据无法解析: {refused}") from None
    try:
        case_id = UUID(message.case_id)
    except ValueError:
        raise EventInvalid.at("UNDECODABLE", _id(message), "case_id", "不是有效的办件编号(UUID)") from None
    if not isinstance(data, dict):
        raise EventInvalid.at("UNDECODABLE", _id(message), "data_json", "事件数据须为 JSON 对象")
    if message.seq < 1 or message.lamport < 1:
        raise EventInvalid.at("BAD_SEQ", _id(message), "seq", "序号与逻辑时钟须从 1 开始")
    role = domain_value(case_pb2.Role.DESCRIPTOR, message.actor.role)
    event = SharedEvent(
        case_id=case_id,
        origin=message.origin_site,
        seq=message.seq,
        lamport=message.lamport,
        event_id=message.event_id,
        type=message.type,
        type_version=message.type_version,
        occurred_at=occurred_at(message),
        actor={"staff_id": message.actor.staff_id, "role": role or "", "site": message.actor.site,
               "name": message.actor.name},
        data=data,
    )
    if event.hash() != message.hash:
        raise EventInvalid.at("HASH_MISMATCH", _id(message), "hash", "事件的哈希与内容不符")
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
