"""Uniqueness claims: tiny aggregates whose ids are derived from a key.

The event store refuses a second "version 1" for the same id, so saving a claim in the same
transaction as a new case makes the database itself guarantee that a client request id maps to
one case and that a case number is never issued twice, across threads and processes.
"""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

_NAMESPACE = uuid5(NAMESPACE_URL, "urn:tongban:claim")


def claim_id(kind: str, key: str) -> UUID:
    return uuid5(_NAMESPACE, f"{kind}\x1f{key}")


class UniqueClaim(Aggregate):
    TOPIC = "tongban.claim:UniqueClaim"

    class Event(Aggregate.Event):
        TOPIC = "tongban.claim:UniqueClaim.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "tongban.claim:UniqueClaim.Created"

    @event("Claimed", topic="tongban.claim:Claimed")
    def __init__(self, *, id: UUID, kind: str, key: str, case_id: str, fingerprint: str) -> None:
        self.kind = kind
        self.key = key
        self.case_id = case_id
        self.fingerprint = fingerprint

    @classmethod
    def make(cls, kind: str, key: str, case_id: UUID, fingerprint: str = "") -> UniqueClaim:
        return cls(id=claim_id(kind, key), kind=kind, key=key, case_id=str(case_id), fingerprint=fingerprint)
