"""Shared events: the identity, canonical bytes and hash chains that let two sites agree on a case.

Every case event has an identity that both sites see the same way: case id, origin site, a
gap-free sequence number per (case, origin) assigned by the origin, a Lamport clock for a causal
order that both sites compute identically, and an event id. Its canonical bytes (sorted-key,
compact JSON) hash to the same value on every site, whatever the local storage, so receipts,
reconciliation and audit compare hashes, never trust claims.

Hash chain per (case, origin): C(0) = H(tag, case, origin); C(k) = H(tag, C(k-1), hash(k)). Both
sides compute the same chain for the same origin whatever order the origins' events arrived in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from uuid import UUID

import orjson

EVENT_TAG = b"tongban.event.v1\x00"
CHAIN_TAG = b"tongban.chain.v1\x00"


@dataclass(frozen=True)
class SharedEvent:
    """A case event as exchanged between sites (wire-neutral; adapters translate it)."""

    case_id: UUID
    origin: str
    seq: int
    lamport: int
    event_id: str
    type: str
    type_version: int
    occurred_at: datetime
    actor: dict[str, str]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, str, int]:
        """The total order both sites use: causal (Lamport), ties broken by origin then seq."""
        return (self.lamport, self.origin, self.seq)

    def canonical(self) -> bytes:
        doc = {
            "case_id": str(self.case_id),
            "origin": self.origin,
            "seq": self.seq,
            "lamport": self.lamport,
            "event_id": self.event_id,
            "type": self.type,
            "type_version": self.type_version,
            "occurred_at": self.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            "actor": self.actor,
            "data": self.data,
        }
        return canonical_json(doc)

    def hash(self) -> str:
        return self._hash

    @cached_property
    def _hash(self) -> str:
        """Computed once per event: the relay, receipts and the wire all ask (the event is frozen; its
        data is never changed in place)."""
        return hashlib.sha256(EVENT_TAG + self.canonical()).hexdigest()


def canonical_json(doc: Any) -> bytes:
    """Sorted-key, compact UTF-8 JSON. orjson writes the same bytes as the standard library's
    ``json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":"))`` for what events hold
    (strings, 64-bit integers, booleans, null, lists, objects; never floats) about ten times faster;
    what it refuses (an integer beyond 64 bits, a non-string key) goes to the standard library."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def chain_start(case_id: UUID, origin: str) -> str:
    return hashlib.sha256(CHAIN_TAG + f"{case_id}/{origin}".encode()).hexdigest()


def chain_next(previous: str, event_hash: str) -> str:
    return hashlib.sha256(CHAIN_TAG + bytes.fromhex(previous) + bytes.fromhex(event_hash)).hexdigest()


def chain_of(case_id: UUID, origin: str, events: list[SharedEvent]) -> list[str]:
    """The chain heads after each of ``events`` (one origin's events, in seq order)."""
    head = chain_start(case_id, origin)
    heads = []
    for event in events:
        head = chain_next(head, event.hash())
        heads.append(head)
    return heads
