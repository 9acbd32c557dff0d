"""Case events to and from their stored form by orjson; every other event by the library's transcoder.

A case event holds plain JSON besides its timestamp: its data is what the shared event hashes as canonical
JSON and what the partner receives as JSON. For such state orjson writes the same bytes as the library's JSON
transcoder (the timestamp tagged by the library's own transcoding) about five times faster, and reads them
about three times faster. That is most of a store's writes and of the relay's reads.

Snapshots, claims and ledgers keep the library's path: their state can hold UUIDs at any depth, which orjson
would write as plain strings and so read back as strings. So does what orjson cannot write or read back as it
was: an integer beyond 64 bits, nesting past 254 levels, NaN or infinity (the wire refuses those last two from
partners, and no command takes a float).
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any, cast
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import (
    JSONTranscoder,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    find_id_convertor,
)
from eventsourcing.utils import get_topic, resolve_topic

from hub.domain.case import Case

_TAG = b'"_type_"'
_WIDE_NUMBER = re.compile(rb"[:,\[]-?\d{19,}")  # a number token of 19 digits or more (or a string holding one)


class CaseMapper(Mapper[UUID]):
    """The library's mapper, with a fast path for case events (same stored bytes, same domain events)."""

    def __init__(self, mapper: Mapper[UUID]) -> None:
        super().__init__(mapper.transcoder, mapper.compressor, mapper.cipher)
        # Only the library's own mapper and transcoder are known to write what orjson writes.
        transcoder = mapper.transcoder
        plain = type(mapper) is Mapper and type(transcoder) is JSONTranscoder
        self._json = cast("JSONTranscoder", transcoder) if plain else None

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        if self._json is None or not isinstance(domain_event, Case.Event):
            return super().to_stored_event(domain_event)
        event_state = dict(vars(domain_event))
        originator_id = event_state.pop("originator_id")
        originator_version = event_state.pop("originator_version")
        class_version = type(domain_event).class_version
        if class_version > 1:
            event_state["class_version"] = class_version
        try:
            state = orjson.dumps(event_state, default=self._json._encode_obj, option=orjson.OPT_PASSTHROUGH_DATETIME)
        except TypeError:  # what orjson refuses (an integer beyond 64 bits, nesting past 254): the library writes it
            return super().to_stored_event(domain_event)
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(originator_id=originator_id, originator_version=originator_version,
                           topic=get_topic(type(domain_event)), state=state)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        cls = resolve_topic(stored_event.topic)
        if self._json is None or not issubclass(cls, Case.Event):
            return super().to_domain_event(stored_event)
        try:
            event_state = self._decode(stored_event.state)
        except Exception as e:
            msg = (f"Failed to deserialise state of stored event with topic '{stored_event.topic}', originator_id "
                   f"'{stored_event.originator_id}' and originator_version {stored_event.originator_version}: {e}")
            raise MapperDeserialisationError(msg) from e
        event_state["originator_id"] = find_id_convertor(cls, cast("Hashable", type(stored_event.originator_id)))(
            stored_event.originator_id)
        event_state["originator_version"] = stored_event.originator_version
        from_version = event_state.pop("class_version", 1)
        while from_version < cls.class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(event_state)
            from_version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", event_state)
        return cast("DomainEventProtocol[UUID]", domain_event)

    def _decode(self, state: bytes) -> dict[str, Any]:
        """A case event's one tagged value is its timestamp, at the top level. State tagged anywhere else (none
        is written so, but stored history is not ours to assume) takes the library's decoder, which untags
        at any depth."""
        assert self._json is not None
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        if _WIDE_NUMBER.search(state):  # orjson would read an integer beyond 64 bits as a float
            return cast("dict[str, Any]", self._json.decode(state))
        try:
            event_state: dict[str, Any] = orjson.loads(state)
        except orjson.JSONDecodeError:  # NaN, Infinity: the library's decoder reads what its encoder wrote
            return cast("dict[str, Any]", self._json.decode(state))
        untagged = 0
        for key, value in event_state.items():
            if type(value) is dict and len(value) == 2 and "_type_" in value and "_data_" in value:
                event_state[key] = self._json._decode_obj(value)
                untagged += 1
        if untagged != state.count(_TAG):
            return cast("dict[str, Any]", self._json.decode(state))
        return event_state
