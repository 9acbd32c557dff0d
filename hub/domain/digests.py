"""Case digests for reconciliation, computed at append time (O(1) per saved case).

For each partner a case is shared with, the *pair digest* covers what the two sites must agree on:
for each of the two origins, its event count and chain head (shared.py). It depends only on the
events, never on arrival order or local storage, so equal digests mean equal records. The
partner's digest set is keyed by case id (UUIDv7, so keys sort by receipt time); the store keeps a
count and XOR of digests per day and per hour beside the rows, so a whole day (or hour) compares in
one number and only the part of an hour a range cuts through is ever read key by key.

A site's chains for third sites (co-handling) are reconciled in those pairs, not in this one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID

DIGEST_VERSION = 1
DIGEST_TAG = b"tongban.digest.v1\x00"
DIGEST_BYTES = 16
DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def pair_digest(case_id: UUID, pair: Iterable[str], heads: Mapping[str, tuple[int, str]]) -> bytes:
    """H(tag, case id, for each origin of the pair in order: origin, count, chain head)."""
    h = hashlib.sha256(DIGEST_TAG + case_id.bytes)
    for origin in sorted(pair):
        count, head = heads.get(origin, (0, ""))
        h.update(f"{origin}:{count}:{head if count else ''};".encode())
    return h.digest()[:DIGEST_BYTES]


def bucket_of(key: bytes, size_ms: int) -> int:
    """The UTC day or hour a case id (UUIDv7: 48-bit Unix milliseconds first) belongs to."""
    return int.from_bytes(key[:6], "big") // size_ms


def bucket_start(bucket: int, size_ms: int) -> bytes:
    """The smallest key of a day or hour, as a bound (trailing zero bytes omitted); for the day or hour
    after the last one 48 bits can hold, a bound above every key (a partner's case id need not be a
    UUIDv7, so its first six bytes can be anything)."""
    start = bucket * size_ms
    return (start.to_bytes(6, "big").rstrip(b"\x00") or b"\x00") if start < 1 << 48 else b"\xff" * 17


def split_xor(value: bytes) -> tuple[int, int]:
    """A 16-byte value as two signed 64-bit integers, the form SQL stores and XORs."""
    return (int.from_bytes(value[:8], "big", signed=True), int.from_bytes(value[8:16], "big", signed=True))


def join_xor(hi: int, lo: int) -> bytes:
    return hi.to_bytes(8, "big", signed=True) + lo.to_bytes(8, "big", signed=True)


def xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(DIGEST_BYTES, "big")


ZERO = bytes(DIGEST_BYTES)


@dataclass(frozen=True)
class DigestChange:
    """One case's digest for one partner moved from ``old`` (None: first time) to ``new``."""

    partner: str
    case_id: UUID
    old: bytes | None
    new: bytes

    @property
    def key(self) -> bytes:
        return self.case_id.bytes

    @property
    def day(self) -> int:
        return bucket_of(self.key, DAY_MS)

    @property
    def hour(self) -> int:
        return bucket_of(self.key, HOUR_MS)

    @property
    def delta(self) -> bytes:
        return xor(self.old or ZERO, self.new)


def digest_changes(
    case_id: UUID, site: str, sites: Iterable[str], chains: Mapping[str, list[str]], added: Mapping[str, int]
) -> list[DigestChange]:
    """The digest changes a save makes: ``chains`` after it, ``added`` events per origin by it."""
    changes = []
    after = {origin: (len(chain), chain[-1]) for origin, chain in chains.items() if chain}
    before = {}
    for origin, chain in chains.items():
        n = len(chain) - added.get(origin, 0)
        if n > 0:
            before[origin] = (n, chain[n - 1])
    for partner in sorted(set(sites) - {site}):
        pair = (site, partner)
        new = pair_digest(case_id, pair, after)
        old = pair_digest(case_id, pair, before) if before else None
        if old != new:
            changes.append(DigestChange(partner, case_id, old, new))
    return changes


@dataclass(frozen=True)
class JoinedDigests:
    """The digest changes that join a save, written by the recorder in the save's own transaction.

    They ride the event store library's save keyword arguments (its one way to hand a recorder more
    than events) under the one key ``KEY``; both ends go through this class, so neither spells the key
    nor trusts what it finds there.
    """

    changes: tuple[DigestChange, ...]
    KEY: ClassVar[str] = "joined_digests"

    def as_kwargs(self) -> dict[str, JoinedDigests]:
        return {self.KEY: self}

    @classmethod
    def carried_by(cls, kwargs: Mapping[str, object]) -> tuple[DigestChange, ...]:
        """The changes a save carries (none: the save had no shared case events)."""
        joined = kwargs.get(cls.KEY)
        if joined is None:
            return ()
        if not isinstance(joined, cls):
            raise TypeError(f"{cls.KEY} must be JoinedDigests, not {type(joined).__name__}")
        return joined.changes
