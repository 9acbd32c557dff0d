"""Digest sets for reconciliation tests: a snapshot over a dict (with the day and hour totals the
stores keep) and random pairs of sets with known differences."""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator
from contextlib import contextmanager

from hub.domain.digests import DAY_MS, HOUR_MS, bucket_of, xor
from reconciliation import paged
from reconciliation.ports import Item, Total

T0 = 1_780_000_000_000  # ms, a Tuesday in 2026


def totals(items: list[Item], size_ms: int) -> list[Total]:
    units: dict[int, tuple[int, bytes]] = {}
    for key, digest in items:
        n, fp = units.get(bucket_of(key, size_ms), (0, bytes(16)))
        units[bucket_of(key, size_ms)] = (n + 1, xor(fp, digest))
    return sorted((u, n, fp) for u, (n, fp) in units.items())


class Snapshot(paged.Paged):
    """A digest snapshot over a dict, with the per-day and per-hour totals the stores keep."""

    def __init__(self, items: dict[bytes, bytes]) -> None:
        self._items = sorted(items.items())
        self._keys = [k for k, _ in self._items]
        self._days, self._hours = totals(self._items, DAY_MS), totals(self._items, HOUR_MS)

    def days(self) -> list[Total]:
        return self._days

    def hours(self) -> list[Total]:
        return self._hours

    def items(self, lo: bytes, hi: bytes | None, limit: int | None = None) -> list[Item]:
        start = bisect.bisect_left(self._keys, lo)
        end = len(self._keys) if hi is None else bisect.bisect_left(self._keys, hi)
        return self._items[start:end if limit is None else min(end, start + limit)]


def key(rng: random.Random, spread_days: int) -> bytes:
    ms = T0 + rng.randrange(spread_days * DAY_MS)
    return ms.to_bytes(6, "big") + rng.randbytes(10)


def pair(n: int, only_a: int, only_b: int, changed: int, seed: int, spread_days: int = 30
         ) -> tuple[dict[bytes, bytes], dict[bytes, bytes]]:
    rng = random.Random(seed)
    common = {key(rng, spread_days): rng.randbytes(16) for _ in range(n)}
    a, b = dict(common), dict(common)
    for k in rng.sample(sorted(common), changed):
        b[k] = rng.randbytes(16)
    a.update({key(rng, spread_days): rng.randbytes(16) for _ in range(only_a)})
    b.update({key(rng, spread_days): rng.randbytes(16) for _ in range(only_b)})
    return a, b


class SnapshotIndex:
    """A DigestIndex whose every snapshot is the same dict (for a Responder without a store)."""

    def __init__(self, items: dict[bytes, bytes]) -> None:
        self.items = items

    @contextmanager
    def snapshot(self, partner: str) -> Iterator[Snapshot]:
        yield Snapshot(self.items)
