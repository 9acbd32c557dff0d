"""Case events written to their stored form by orjson; every other event, and every read, by the library.

A case event holds plain JSON besides its timestamp: its data is what the shared event hashes as canonical
JSON and what the partner receives as JSON. For such state orjson writes the same bytes as the library's JSON
transcoder (the timestamp tagged by the library's own transcoding) about three times faster: most of a
store's writes. Reading stays with the library's decoder: orjson reads an integer beyond 64 bits as a float,
and checking for that cost what orjson saved.

Snapshots, claims and ledgers keep the library's path: their state can hold UUIDs at any depth, which orjson
would write as plain strings. So does what orjson refuses to write (an integer beyond 64 bits, nesting past
254 levels); NaN and infinity, which it would write as null, the wire refuses from partners, and no command
takes a float.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

import orjson
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent

from hub.domain.case import Case


class OrjsonTranscoder(JSONTranscoder):
    """The library's JSON transcoding, written by orjson (same tags, same bytes); read by the library's own
    decoder, which orjson would not beat once it had to check for what it cannot read back exactly."""

    def __init__(self, library: JSONTranscoder) -> None:
        super().__init__()
        self.types, self.names = library.types, library.names

    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self._encode_obj, option=orjson.OPT_PASSTHROUGH_DATETIME)
        except TypeError:  # what orjson refuses (an integer beyond 64 bits, nesting past 254): the library writes it
            return super().encode(obj)


class CaseMapper(Mapper[UUID]):
    """The library's mapper; case events are written through a second one with the orjson transcoder (same
    stored bytes). Every event is read by the library's mapper."""

    def __init__(self, mapper: Mapper[UUID]) -> None:
        super().__init__(mapper.transcoder, mapper.compressor, mapper.cipher)
        # Only the library's own mapper and transcoder are known to write what orjson writes.
        transcoder = mapper.transcoder
        plain = type(mapper) is Mapper and type(transcoder) is JSONTranscoder
        self._json = cast("JSONTranscoder", transcoder) if plain else None
        self._cases = Mapper[UUID](OrjsonTranscoder(self._json), mapper.compressor, mapper.cipher) if self._json \
            else None

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        if self._cases is not None and isinstance(domain_event, Case.Event):
            return self._cases.to_stored_event(domain_event)
        return super().to_stored_event(domain_event)
