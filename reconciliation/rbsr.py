"""Range-based set reconciliation (RBSR, after Meyer 2023 and Negentropy) over the digest index.

Both sides hold a set of (case key, pair digest). A range's fingerprint is its count and the XOR
of its digests. The initiator sends the fingerprint of everything; whoever sees a mismatch either
splits the range into ``branching`` parts by its own keys and sends their fingerprints, or, when
it holds few keys there, sends the keys themselves. Each half round goes one level down, so the
rounds grow with log(n) and the bytes with d·log(n), never with n; with no differences it is one
round trip and a few dozen bytes.

Whole days and hours come from the totals the store keeps at append time (hub/domain/digests.py),
so an unchanged day costs nothing to compare. The part of an hour a range cuts through is summed,
and cut by rank, by the snapshot: PostgreSQL does it in the database, so a bulk-loaded hour (a
million cases) never crosses into Python key by key. What a message's ranges ask of the snapshot is
asked together, a frame's worth per question, never range by range.
Every incoming message is checked before anything is read: a partner that sends ranges out of
order, oversized frames or malformed items gets a clear error and learns nothing.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import math
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hub.domain.digests import DAY_MS, DIGEST_VERSION, HOUR_MS, bucket_of, bucket_start
from hub.domain.errors import InvalidInput, RuleViolation
from reconciliation.messages import KEY_BYTES, PREFIX_BYTES, Message, Mode, Params, Range
from reconciliation.ports import Bounds, Cut, DigestSnapshot, Item, Segment, Total

ID_ITEM_BYTES = KEY_BYTES + PREFIX_BYTES  # an id list's entry on the wire
FINGERPRINT_RANGE_BYTES = 2 * KEY_BYTES + 16 + 8  # about a fingerprint range's size on the wire, at most
T = TypeVar("T")

_MAX_COUNT = 1 << 40


def pad(bound: bytes) -> bytes:
    return bound.ljust(KEY_BYTES, b"\x00")


def separator(below: bytes, key: bytes) -> bytes:
    """The shortest bound b with below < b <= key (keys are 16 bytes, below < key)."""
    i = next(i for i in range(KEY_BYTES) if below[i] != key[i])
    return key[: i + 1]


Part = tuple[bytes, bytes | None, int, bytes]  # (lo, hi, count, fingerprint)
Run = tuple[bytes, bytes]  # [lo, hi) of the keys of one hour, or of the part of it a range cuts through
Unit = tuple[bytes, int | None, int, Run | None]  # (start bound, count, XOR, run): run None for a whole day or hour


class _Totals:
    """The totals of one level (days or hours): sorted unit numbers, and (count, XOR) by unit."""

    def __init__(self, size_ms: int, totals: list[Total]) -> None:
        self.size_ms = size_ms
        self.units = [u for u, _, _ in totals]
        self.by_unit = {u: (n, int.from_bytes(fp, "big")) for u, n, fp in totals}

    def start(self, unit: int) -> bytes:
        return bucket_start(unit, self.size_ms)

    def meeting(self, lo_k: bytes, hi_k: bytes | None) -> list[int]:
        first = bisect.bisect_left(self.units, bucket_of(lo_k, self.size_ms))
        last = len(self.units) if hi_k is None else bisect.bisect_right(self.units, bucket_of(hi_k, self.size_ms))
        return self.units[first:last]


class DigestSet:
    """Counts, fingerprints and splits over one snapshot. Whole days and hours come from their totals;
    the part of an hour a range cuts through is summed by the snapshot (in the database, for PostgreSQL),
    and a split inside it asks only for the keys at its cuts."""

    def __init__(self, snapshot: DigestSnapshot) -> None:
        self.snapshot = snapshot
        self._levels = (_Totals(DAY_MS, snapshot.days()), _Totals(HOUR_MS, snapshot.hours()))
        self.size = sum(n for n, _ in self._levels[0].by_unit.values())

    def _walk(self, lo_k: bytes, hi_k: bytes | None, limit: int, level: int = 0) -> Iterator[Unit]:
        """[lo_k, hi_k) in key order, as whole units of at most ``limit`` cases and runs of keys: whole
        hours holding more than ``limit``, and the parts of hours the range cuts through (their count
        None: only the snapshot can sum them)."""
        totals = self._levels[level]
        for unit in totals.meeting(lo_k, hi_k):
            start, end = pad(totals.start(unit)), pad(totals.start(unit + 1))
            if hi_k is not None and hi_k <= start:
                continue
            n, fp = totals.by_unit[unit]
            if lo_k <= start and (hi_k is None or end <= hi_k) and n <= limit:
                yield totals.start(unit), n, fp, None
                continue
            inner_lo, inner_hi = max(lo_k, start), end if hi_k is None else min(hi_k, end)
            if level + 1 < len(self._levels):
                yield from self._walk(inner_lo, inner_hi, limit, level + 1)
            else:
                whole = inner_lo == start and inner_hi == end
                yield totals.start(unit), n if whole else None, fp if whole else 0, (inner_lo, inner_hi)

    def fingerprints(self, ranges: Sequence[Bounds]) -> list[tuple[int, bytes]]:
        """Each range's count and fingerprint, with one question to the snapshot for all the parts of
        hours they cut through (a message can hold hundreds of ranges)."""
        walks = [list(self._walk(pad(lo), pad(hi) if hi is not None else None, _MAX_COUNT)) for lo, hi in ranges]
        summed = iter(self.snapshot.summaries([run for walk in walks for _s, n, _fp, run in walk
                                               if n is None and run is not None]))
        out = []
        for walk in walks:
            count, fp = 0, 0
            for _start, n, unit_fp, _run in walk:
                if n is None:
                    n, part_fp = next(summed)
                    unit_fp = int.from_bytes(part_fp, "big")
                count, fp = count + n, fp ^ unit_fp
            out.append((count, fp.to_bytes(16, "big")))
        return out

    def fingerprint(self, lo: bytes, hi: bytes | None) -> tuple[int, bytes]:
        return self.fingerprints([(lo, hi)])[0]

    def items(self, lo: bytes, hi: bytes | None) -> list[Item]:
        return self.snapshot.items(pad(lo), pad(hi) if hi is not None else None)

    def item_lists(self, ranges: Sequence[Bounds]) -> list[list[Item]]:
        return self.snapshot.item_lists([(pad(lo), pad(hi) if hi is not None else None) for lo, hi in ranges])

    def split(self, lo: bytes, hi: bytes | None, parts: int, count: int) -> list[Part]:
        return self.splits([(lo, hi, parts, count)])[0]

    def splits(self, wanted: Sequence[tuple[bytes, bytes | None, int, int]]) -> list[list[Part]]:
        """Several splits (lo, hi, parts, count) at once: the runs of keys they cut are cut by the
        snapshot together, one question per step for all of them (a split's next run waits for its
        last one: where that left off decides the next cut)."""
        plans = [self._split(*w) for w in wanted]
        out: list[list[Part]] = [[] for _ in plans]
        asked: dict[int, Cut] = {}

        def advance(i: int, answer: list[Segment] | None) -> None:
            try:
                asked[i] = next(plans[i]) if answer is None else plans[i].send(answer)
            except StopIteration as done:
                out[i] = done.value

        for i in range(len(plans)):
            advance(i, None)
        while asked:
            waiting = sorted(asked)
            answers = self.snapshot.segments([asked.pop(i) for i in waiting])
            for i, answer in zip(waiting, answers, strict=True):
                advance(i, answer)
        return out

    def _split(self, lo: bytes, hi: bytes | None, parts: int, count: int) -> Generator[Cut, list[Segment], list[Part]]:
        """[lo, hi), which holds ``count`` keys, cut into about ``parts`` ranges of equal count, each with
        its fingerprint: at day or hour starts while those are smaller than a part, between keys inside
        an hour that is bigger (it yields each such run's cut, and is sent the snapshot's segments)."""
        target = max(1, math.ceil(count / parts))
        out: list[Part] = []
        start, n, fp = lo, 0, 0
        for unit_start, unit_n, unit_fp, run in self._walk(pad(lo), pad(hi) if hi is not None else None, target):
            if run is None and unit_n is not None:  # a whole day or hour (its count is always known)
                if n and n + unit_n > target:
                    out.append((start, unit_start, n, fp.to_bytes(16, "big")))
                    start, n, fp = unit_start, 0, 0
                n, fp = n + unit_n, fp ^ unit_fp
                continue
            assert run is not None
            # A new part starts at the key where the current one has reached ``target``: segment 0 tops
            # up the current part, and every later segment starts a part.
            last: bytes | None = None
            for index, seg_n, seg_fp, first_key, last_key in (yield (*run, max(target - n, 0), target)):
                if index:
                    # Segment 0 is empty only when something before the run filled the part, so the run
                    # starts at its hour's start, which then parts the keys.
                    bound = separator(last, first_key) if last is not None else unit_start
                    out.append((start, bound, n, fp.to_bytes(16, "big")))
                    start, n, fp = bound, 0, 0
                n, fp, last = n + seg_n, fp ^ int.from_bytes(seg_fp, "big"), last_key
        out.append((start, hi, n, fp.to_bytes(16, "big")))
        return out


def check_params(ours: Params, theirs: Params) -> Params:
    """The handshake: same digest version, and the tighter of the two sides' bounds."""
    if theirs.version != DIGEST_VERSION:
        raise RuleViolation(
            "DIGEST_VERSION", f"对账摘要版本不一致：对方 v{theirs.version}，本站 v{DIGEST_VERSION}",
            {"ours": str(DIGEST_VERSION), "theirs": str(theirs.version)},
        )
    if not (2 <= theirs.branching <= 64 and 1 <= theirs.id_list_threshold <= 1024):
        raise InvalidInput.one("params", "对账参数超出范围（分支 2–64，清单阈值 1–1024）")
    agreed = Params(
        version=DIGEST_VERSION,
        branching=min(ours.branching, theirs.branching),
        id_list_threshold=min(ours.id_list_threshold, theirs.id_list_threshold),
        max_frame_bytes=min(ours.max_frame_bytes, theirs.max_frame_bytes),
        max_rounds=min(ours.max_rounds, theirs.max_rounds),
    )
    if agreed.max_frame_bytes < min_frame(agreed):
        raise InvalidInput.one("params", f"帧上限过小：至少 {min_frame(agreed)} 字节才能容纳一次应答")
    return agreed


def min_frame(params: Params) -> int:
    """The smallest frame that holds any single answer: a full split, or the largest id list."""
    return 256 + 64 * params.branching + 4 * params.id_list_threshold * (KEY_BYTES + PREFIX_BYTES + 2)


def check_message(message: Message, params: Params, *, from_responder: bool) -> None:
    """Refuse, before reading anything, a message no honest peer sends."""
    if message.size() > params.max_frame_bytes:
        raise InvalidInput.one("ranges", f"对账报文过大：{message.size()} 字节，上限 {params.max_frame_bytes}")
    floor = b""
    for i, r in enumerate(message.ranges):
        where = f"ranges.{i}"
        if len(r.lo) > KEY_BYTES or (r.hi is not None and len(r.hi) > KEY_BYTES):
            raise InvalidInput.one(where, "区间边界超过 16 字节")
        if pad(r.lo) < floor or (r.hi is not None and pad(r.hi) <= pad(r.lo)):
            raise InvalidInput.one(where, "区间顺序错误：须按键升序且互不重叠")
        if r.hi is None and i != len(message.ranges) - 1:
            raise InvalidInput.one(where, "只有最后一个区间可以不设上界")
        floor = pad(r.hi) if r.hi is not None else floor
        if r.mode is Mode.FINGERPRINT:
            if len(r.fingerprint) != 16 or not 0 <= r.count < _MAX_COUNT or r.items or r.missing:
                raise InvalidInput.one(where, "指纹区间格式错误")
        elif r.mode is Mode.ID_LIST or (r.mode is Mode.ID_DIFF and from_responder):
            _check_items(r, where, params)
        else:
            raise InvalidInput.one(where, f"不允许的区间类型 {r.mode}")


def _check_items(r: Range, where: str, params: Params) -> None:
    if len(r.items) + len(r.missing) > 4 * params.id_list_threshold + 4:
        raise InvalidInput.one(where, "清单条目过多")
    previous = b""
    for key, digest in r.items:
        if len(key) != KEY_BYTES or len(digest) != PREFIX_BYTES or key <= previous:
            raise InvalidInput.one(where, "清单条目须为升序的 16 字节键和 8 字节摘要前缀")
        if key < pad(r.lo) or (r.hi is not None and key >= pad(r.hi)):
            raise InvalidInput.one(where, "清单条目不在其区间内")
        previous = key
    if any(len(k) != KEY_BYTES for k in r.missing):
        raise InvalidInput.one(where, "缺失键须为 16 字节")


@dataclass
class Differences:
    """What the initiator learned: keys only it holds, only the partner holds, or both hold differently."""

    only_ours: set[bytes] = field(default_factory=set)
    only_theirs: set[bytes] = field(default_factory=set)
    differ: set[bytes] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.only_ours) + len(self.only_theirs) + len(self.differ)


class _Answer(enum.Enum):
    SAME, LIST, HAND_BACK, SPLIT = range(4)


class Ahead(Generic[T]):
    """Answers a message's ranges will need, asked of the snapshot in batches: when the first of the
    planned ranges not yet read is needed, it and those after it, as many as ``room`` allows (the
    first always), in one question. Ranges are answered in order, so each batch is used whole."""

    def __init__(self, read: Callable[[list[Bounds]], list[T]]) -> None:
        self._read = read
        self._queue: list[tuple[Bounds, int]] = []  # planned ranges and their weights, in order
        self._place: dict[Bounds, int] = {}
        self._ready: dict[Bounds, T] = {}

    def plan(self, bounds: Bounds, weight: int) -> None:
        if bounds not in self._place:
            self._place[bounds] = len(self._queue)
            self._queue.append((bounds, weight))

    def take(self, bounds: Bounds, room: int) -> T | None:
        """The answer for ``bounds``, or None if it was not planned."""
        if bounds not in self._ready:
            place = self._place.get(bounds)
            if place is None:
                return None
            batch: list[Bounds] = []
            for planned, weight in itertools.islice(self._queue, place, None):
                if batch and weight > room:
                    break
                batch.append(planned)
                room -= weight
            self._ready = dict(zip(batch, self._read(batch), strict=True))
        return self._ready.pop(bounds)

    def clear(self) -> None:
        self._queue.clear()
        self._place.clear()
        self._ready.clear()


class Participant:
    """One side of a reconciliation. The initiator queues its ranges and learns the differences;
    the responder only answers, within the frame bound (``consumed`` says how far it got)."""

    def __init__(self, digests: DigestSet, params: Params, *, initiator: bool, enough: int | None = None) -> None:
        self.digests, self.params, self.initiator = digests, params, initiator
        self.differences = Differences()
        self.outbox: list[Range] = []
        # With ``enough`` (the breaker's limit): once that many differences are known, or where one
        # range alone lacks more, the rest are counted, not read, so a mass divergence never becomes
        # millions of keys in memory; the count is then a lower bound.
        self.enough = enough
        self.counted = 0
        self._known: dict[Bounds, tuple[int, bytes]] = {}  # fingerprints read ahead for one message
        self._lists = Ahead(digests.item_lists)  # and the items of its small ranges
        self._splits = Ahead(self._split_all)  # and the splits of its big ones

    @property
    def tripped(self) -> bool:
        """The initiator knows more differences than ``enough``: it asks nothing more."""
        return self.initiator and self.enough is not None and self.found > self.enough

    @property
    def found(self) -> int:
        """Differences learned so far, the ones counted but not read included (a lower bound when
        ``enough`` cut the reading short)."""
        return len(self.differences) + self.counted

    # ------------------------------------------------------------------ initiator
    def start(self) -> None:
        count, fp = self.digests.fingerprint(b"", None)
        self.outbox = [Range(b"", None, Mode.FINGERPRINT, count, fp)]

    def next_message(self) -> Message | None:
        """The next frame to send, or None when there is nothing left to ask."""
        if not self.outbox:
            return None
        budget, taken, size = self.params.max_frame_bytes - 64, 0, 8
        while taken < len(self.outbox) and (taken == 0 or size + self.outbox[taken].size() <= budget):
            size += self.outbox[taken].size()
            taken += 1
        message = Message(tuple(self.outbox[:taken]), more=taken < len(self.outbox))
        del self.outbox[:taken]
        return message

    def receive_reply(self, sent: Message, reply: Message) -> None:
        check_message(reply, self.params, from_responder=True)
        if not 0 <= reply.consumed <= len(sent.ranges) or (sent.ranges and reply.consumed == 0):
            raise InvalidInput.one("consumed", "对方应答的区间数不合理")
        answered, i = sent.ranges[: reply.consumed], 0
        for r in reply.ranges:  # both in key order: one walk checks every answer lies inside a question
            while i < len(answered) and not _within(r, answered[i]):
                i += 1
            if i == len(answered):
                raise InvalidInput.one("ranges", "应答区间不在所问区间之内")
            # An id diff answers our id list of that very range: anything else would have us compare
            # whatever range the partner names, every key of it read.
            asked = answered[i]
            if r.mode is Mode.ID_DIFF and (asked.mode, asked.lo, asked.hi) != (Mode.ID_LIST, r.lo, r.hi):
                raise InvalidInput.one("ranges", "差异清单只能应答本站所发的同一区间的清单")
        # The answers lie inside what was answered, which comes before what was not answered, which comes
        # before everything still queued: the queue stays in key order, frame after frame.
        try:
            self._read_ahead(reply.ranges)
            answers = self._answer(reply.ranges)
        finally:
            self._forget()
        # Past ``enough`` nothing will be repaired (the breaker trips), so nothing more is asked.
        if self.tripped:
            self.outbox.clear()
        else:
            self.outbox[:0] = [*answers, *sent.ranges[reply.consumed:]]

    # ------------------------------------------------------------------ responder
    def reply(self, request: Message) -> Message:
        check_message(request, self.params, from_responder=False)
        budget, size, out = self.params.max_frame_bytes - 64, 8, []
        consumed = 0
        try:
            self._read_ahead(request.ranges)
            for r in request.ranges:
                answer = self._answer((r,))
                grown = sum(a.size() for a in answer)
                if consumed and size + grown > budget:
                    break
                out.extend(answer)
                size += grown
                consumed += 1
        finally:
            self._forget()  # a failed answer leaves nothing planned for the session's next message
        return Message(tuple(out), consumed)

    # ------------------------------------------------------------------ both
    def _read_ahead(self, ranges: tuple[Range, ...]) -> None:
        """What a message's ranges will ask of the snapshot, in few questions rather than range by range
        (a mass divergence is thousands of ranges per message): every fingerprint at once, then the items
        of the small ranges it lists or compares and the splits of the big ones, a frame's worth at a
        time (see Ahead)."""
        wanted = [(r.lo, r.hi) for r in ranges]
        self._known = dict(zip(wanted, self.digests.fingerprints(wanted), strict=True))
        for r in ranges:
            count, fp = self._known[(r.lo, r.hi)]
            answer = self._fingerprint_answer(r, count, fp) if r.mode is Mode.FINGERPRINT else None
            if answer is _Answer.LIST or (r.mode is not Mode.FINGERPRINT and not self._too_many_to_list(count)):
                self._lists.plan((r.lo, r.hi), count)
            elif answer is _Answer.SPLIT or (r.mode is Mode.ID_LIST and not self.initiator):
                self._splits.plan((r.lo, r.hi), 1)

    def _forget(self) -> None:
        self._known.clear()
        self._lists.clear()
        self._splits.clear()

    def _fingerprint_answer(self, r: Range, count: int, fp: bytes) -> _Answer:
        """How a fingerprint range is answered where we hold ``count`` keys with fingerprint ``fp``: not at
        all if they match; with our id list where we hold few (the initiator also needs the partner to hold
        few there); else, holding few, our fingerprint handed back for the partner to split; else split."""
        small = self.params.id_list_threshold
        if (count, fp) == (r.count, r.fingerprint):
            return _Answer.SAME
        if count <= small:
            return _Answer.LIST if not self.initiator or r.count <= small else _Answer.HAND_BACK
        return _Answer.SPLIT

    def _too_many_to_list(self, count: int) -> bool:
        """An id list or diff over more keys than this is split or counted, never read whole."""
        return count > 4 * self.params.id_list_threshold

    def _fingerprint(self, lo: bytes, hi: bytes | None) -> tuple[int, bytes]:
        known = self._known.get((lo, hi))
        return known if known is not None else self.digests.fingerprint(lo, hi)

    def _items(self, lo: bytes, hi: bytes | None) -> list[Item]:
        # A batch holds at most the keys one frame could carry and, with ``enough``, no more than the
        # differences still wanted (the rest may be counted, not read).
        room = self.params.max_frame_bytes // ID_ITEM_BYTES
        if self.enough is not None:
            room = min(room, max(self.enough - self.found, 0))
        listed = self._lists.take((lo, hi), room)
        return listed if listed is not None else self.digests.items(lo, hi)

    def _split(self, lo: bytes, hi: bytes | None, count: int) -> list[Part]:
        room = max(1, self.params.max_frame_bytes // (self.params.branching * FINGERPRINT_RANGE_BYTES))
        parts = self._splits.take((lo, hi), room)
        return parts if parts is not None else self.digests.split(lo, hi, self.params.branching, count)

    def _split_all(self, ranges: list[Bounds]) -> list[list[Part]]:
        return self.digests.splits([(lo, hi, self.params.branching, self._known[(lo, hi)][0]) for lo, hi in ranges])

    def _answer(self, ranges: tuple[Range, ...]) -> list[Range]:
        out: list[Range] = []
        for r in ranges:
            if self.tripped:  # the rest would only be read to be dropped
                break
            if r.mode is Mode.FINGERPRINT:
                out.extend(self._on_fingerprint(r))
            elif r.mode is Mode.ID_LIST:
                out.extend(self._on_id_list(r))
            else:
                self._on_id_diff(r)
        return out

    def _on_fingerprint(self, r: Range) -> list[Range]:
        count, fp = self._fingerprint(r.lo, r.hi)
        answer = self._fingerprint_answer(r, count, fp)
        if answer is _Answer.SAME:
            return []
        if answer is _Answer.LIST:
            return [self._id_list(r.lo, r.hi)]
        if answer is _Answer.HAND_BACK:
            return [Range(r.lo, r.hi, Mode.FINGERPRINT, count, fp)]
        return [
            Range(lo, hi, Mode.FINGERPRINT, n, part_fp)
            for lo, hi, n, part_fp in self._split(r.lo, r.hi, count)
        ]

    def _id_list(self, lo: bytes, hi: bytes | None) -> Range:
        items = tuple((k, d[:PREFIX_BYTES]) for k, d in self._items(lo, hi))
        return Range(lo, hi, Mode.ID_LIST, items=items)

    def _on_id_list(self, r: Range) -> list[Range]:
        if self.initiator and self.enough is not None:
            count, _fp = self._fingerprint(r.lo, r.hi)
            if self.found > self.enough or count - len(r.items) > self.enough:
                self.counted += max(count - len(r.items), 0)
                return []
        if not self.initiator:  # an id list over a range we hold a lot of: split it, counted, never read whole
            count, _fp = self._fingerprint(r.lo, r.hi)
            if self._too_many_to_list(count):
                return [Range(lo, hi, Mode.FINGERPRINT, n, part_fp)
                        for lo, hi, n, part_fp in self._split(r.lo, r.hi, count)]
        ours = {k: d[:PREFIX_BYTES] for k, d in self._items(r.lo, r.hi)}
        theirs = dict(r.items)
        if self.initiator:
            self._record(ours, theirs)
            return []
        differing = tuple(sorted((k, d) for k, d in ours.items() if theirs.get(k) != d))
        missing = tuple(sorted(k for k in theirs if k not in ours))
        return [Range(r.lo, r.hi, Mode.ID_DIFF, items=differing, missing=missing)] if differing or missing else []

    def _on_id_diff(self, r: Range) -> None:
        if self.enough is not None and self.found > self.enough:
            self.counted += len(r.items) + len(r.missing)
            return
        ours = {k for k, _ in self._items(r.lo, r.hi)}
        for key, _digest in r.items:
            (self.differences.differ if key in ours else self.differences.only_theirs).add(key)
        self.differences.only_ours.update(k for k in r.missing if k in ours)

    def _record(self, ours: dict[bytes, bytes], theirs: dict[bytes, bytes]) -> None:
        d = self.differences
        d.only_ours.update(k for k in ours if k not in theirs)
        d.only_theirs.update(k for k in theirs if k not in ours)
        d.differ.update(k for k in ours if k in theirs and ours[k] != theirs[k])


def _within(inner: Range, outer: Range) -> bool:
    return pad(inner.lo) >= pad(outer.lo) and (
        outer.hi is None or (inner.hi is not None and pad(inner.hi) <= pad(outer.hi))
    )
