"""Range aggregates for a digest snapshot that can only list its items: read a page at a time, never
a range whole (a bulk-loaded hour can hold a million keys). PostgreSQL computes the same in the
database and sends only the answers; the embedded stores and the test fakes use these."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from reconciliation.ports import Bounds, Cut, Item, Segment

PAGE = 5000  # keys read at once


class Lists(Protocol):
    def items(self, lo: bytes, hi: bytes | None, limit: int | None = None) -> list[Item]: ...


def pages(snapshot: Lists, lo: bytes, hi: bytes | None) -> Iterator[list[Item]]:
    """The items of [lo, hi) in key order, ``PAGE`` at a time."""
    while True:
        page = snapshot.items(lo, hi, PAGE)
        if page:
            yield page
        if len(page) < PAGE:
            return
        lo = page[-1][0] + b"\x00"  # the least key after the last one read


def item_lists(snapshot: Lists, ranges: Sequence[Bounds]) -> list[list[Item]]:
    return [snapshot.items(lo, hi) for lo, hi in ranges]


def summaries(snapshot: Lists, ranges: Sequence[Bounds]) -> list[tuple[int, bytes]]:
    out = []
    for lo, hi in ranges:
        count, fp = 0, 0
        for page in pages(snapshot, lo, hi):
            count += len(page)
            for _key, digest in page:
                fp ^= int.from_bytes(digest, "big")
        out.append((count, fp.to_bytes(16, "big")))
    return out


def segments(snapshot: Lists, cuts: Sequence[Cut]) -> list[list[Segment]]:
    return [_segments(snapshot, *cut) for cut in cuts]


def _segments(snapshot: Lists, lo: bytes, hi: bytes | None, first: int, every: int) -> list[Segment]:
    out: list[Segment] = []
    index, n, fp, first_key, last_key, rank = -1, 0, 0, b"", b"", 0
    for page in pages(snapshot, lo, hi):
        for key, digest in page:
            i = 0 if rank < first else 1 + (rank - first) // every
            if i != index:
                if n:
                    out.append((index, n, fp.to_bytes(16, "big"), first_key, last_key))
                index, n, fp, first_key = i, 0, 0, key
            n, fp, last_key, rank = n + 1, fp ^ int.from_bytes(digest, "big"), key, rank + 1
    if n:
        out.append((index, n, fp.to_bytes(16, "big"), first_key, last_key))
    return out


class Paged:
    """A snapshot's batched questions answered from its own ``items``: the embedded stores' snapshots
    and the test fakes list their items and inherit the rest from here."""

    def items(self, lo: bytes, hi: bytes | None, limit: int | None = None) -> list[Item]:
        raise NotImplementedError

    def item_lists(self, ranges: Sequence[Bounds]) -> list[list[Item]]:
        return item_lists(self, ranges)

    def summaries(self, ranges: Sequence[Bounds]) -> list[tuple[int, bytes]]:
        return summaries(self, ranges)

    def segments(self, cuts: Sequence[Cut]) -> list[list[Segment]]:
        return segments(self, cuts)
