"""Range-based set reconciliation (RBSR, after Meyer 2023 and Negentropy) over the digest index.

Both sides hold a set of (case key, pair digest). A range's fingerprint is its count and the XOR
of its digests. The initiator sends the fingerprint of everything; whoever sees a mismatch either
splits the range into ``branching`` parts by its own keys and sends their fingerprints, or, when
it holds few keys there, sends the keys themselves. Each half round goes one level down, so the
rounds grow with log(n) and the bytes with d·log(n), never with n; with no differences it is one
round trip and a few dozen bytes.

Whole days come from the per-day totals the store keeps at append time (hub/domain/digests.py),
so an unchanged day costs nothing to compare; only the edge days of a range are read key by key.
Every incoming message is checked before anything is read: a partner that sends ranges out of
order, oversized frames or malformed items gets a clear error and learns nothing.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass, field

from hub.domain.digests import DIGEST_VERSION, ZERO, day_of, day_start, xor
from hub.domain.errors import InvalidInput, RuleViolation
from reconciliation.messages import KEY_BYTES, PREFIX_BYTES, Message, Mode, Params, Range
from reconciliation.ports import DigestSnapshot, Item

_CACHED_DAYS = 16
_MAX_COUNT = 1 << 40


def pad(bound: bytes) -> bytes:
    return bound.ljust(KEY_BYTES, b"\x00")


def separator(below: bytes, key: bytes) -> bytes:
    """The shortest bound b with below < b <= key (keys are 16 bytes, below < key)."""
    i = next(i for i in range(KEY_BYTES) if below[i] != key[i])
    return key[: i + 1]


class DigestSet:
    """Counts, fingerprints and splits over one snapshot: whole days from totals, edge days by key."""

    def __init__(self, snapshot: DigestSnapshot) -> None:
        self.snapshot = snapshot
        totals = snapshot.days()
        self._days = [d for d, _, _ in totals]
        self._totals = {d: (n, fp) for d, n, fp in totals}
        self._cache: OrderedDict[int, list[Item]] = OrderedDict()
        self.size = sum(n for n, _ in self._totals.values())

    def _day_items(self, day: int) -> list[Item]:
        items = self._cache.get(day)
        if items is None:
            items = self.snapshot.items(pad(day_start(day)), pad(day_start(day + 1)))
            self._cache[day] = items
            if len(self._cache) > _CACHED_DAYS:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(day)
        return items

    def _pieces(self, lo: bytes, hi: bytes | None) -> list[tuple[int, bool]]:
        """The days with data that meet [lo, hi), each with whether the range holds all of it."""
        lo_k, hi_k = pad(lo), (pad(hi) if hi is not None else None)
        first = bisect.bisect_left(self._days, day_of(lo_k))
        last = len(self._days) if hi_k is None else bisect.bisect_right(self._days, day_of(hi_k))
        pieces = []
        for day in self._days[first:last]:
            if hi_k is not None and hi_k <= pad(day_start(day)):
                continue
            whole = lo_k <= pad(day_start(day)) and (hi_k is None or pad(day_start(day + 1)) <= hi_k)
            pieces.append((day, whole))
        return pieces

    def _slice(self, day: int, lo: bytes, hi: bytes | None) -> list[Item]:
        items = self._day_items(day)
        keys = [k for k, _ in items]
        start = bisect.bisect_left(keys, pad(lo))
        end = len(items) if hi is None else bisect.bisect_left(keys, pad(hi))
        return items[start:end]

    def fingerprint(self, lo: bytes, hi: bytes | None) -> tuple[int, bytes]:
        count, fp = 0, ZERO
        for day, whole in self._pieces(lo, hi):
            if whole:
                n, day_fp = self._totals[day]
                count, fp = count + n, xor(fp, day_fp)
            else:
                for _key, digest in self._slice(day, lo, hi):
                    count, fp = count + 1, xor(fp, digest)
        return count, fp

    def items(self, lo: bytes, hi: bytes | None) -> list[Item]:
        out: list[Item] = []
        for day, _whole in self._pieces(lo, hi):
            out.extend(self._slice(day, lo, hi))
        return out

    def split(self, lo: bytes, hi: bytes | None, parts: int) -> list[tuple[bytes, bytes | None]]:
        """[lo, hi) cut into about ``parts`` ranges of equal count: at day starts while days are small,
        between keys inside a day that is bigger than a part."""
        count, _ = self.fingerprint(lo, hi)
        target = max(1, math.ceil(count / parts))
        bounds: list[bytes] = []
        acc, previous = 0, None
        for day, whole in self._pieces(lo, hi):
            n = self._totals[day][0]
            if whole and n <= target:
                if acc and acc + n > target:
                    bounds.append(day_start(day))
                    acc = 0
                acc, previous = acc + n, None
                continue
            for key, _digest in self._slice(day, lo, hi):
                if acc >= target:
                    bounds.append(separator(previous, key) if previous else day_start(day))
                    acc = 0
                acc, previous = acc + 1, key
        edges = [lo, *bounds]
        return [(edges[i], edges[i + 1] if i + 1 < len(edges) else hi) for i in range(len(edges))]


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


class Side:
    """One side of a reconciliation. The initiator queues its ranges and learns the differences;
    the responder only answers, within the frame bound (``consumed`` says how far it got)."""

    def __init__(self, digests: DigestSet, params: Params, *, initiator: bool) -> None:
        self.digests, self.params, self.initiator = digests, params, initiator
        self.differences = Differences()
        self.outbox: list[Range] = []

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
        message = Message(tuple(self.outbox[:taken]))
        del self.outbox[:taken]
        return message

    def receive_reply(self, sent: Message, reply: Message) -> None:
        check_message(reply, self.params, from_responder=True)
        if not 0 <= reply.consumed <= len(sent.ranges) or (sent.ranges and reply.consumed == 0):
            raise InvalidInput.one("consumed", "对方应答的区间数不合理")
        self.outbox[:0] = sent.ranges[reply.consumed:]  # unanswered: ask again first
        answered = sent.ranges[: reply.consumed]
        for r in reply.ranges:
            if not any(_within(r, a) for a in answered):
                raise InvalidInput.one("ranges", "应答区间不在所问区间之内")
        self.outbox.extend(self._answer(reply.ranges))

    # ------------------------------------------------------------------ responder
    def reply(self, request: Message) -> Message:
        check_message(request, self.params, from_responder=False)
        budget, size, out = self.params.max_frame_bytes - 64, 8, []
        consumed = 0
        for r in request.ranges:
            answer = self._answer((r,))
            grown = sum(a.size() for a in answer)
            if consumed and size + grown > budget:
                break
            out.extend(answer)
            size += grown
            consumed += 1
        return Message(tuple(out), consumed)

    # ------------------------------------------------------------------ both
    def _answer(self, ranges: tuple[Range, ...]) -> list[Range]:
        out: list[Range] = []
        for r in ranges:
            if r.mode is Mode.FINGERPRINT:
                out.extend(self._on_fingerprint(r))
            elif r.mode is Mode.ID_LIST:
                out.extend(self._on_id_list(r))
            else:
                self._on_id_diff(r)
        return out

    def _on_fingerprint(self, r: Range) -> list[Range]:
        count, fp = self.digests.fingerprint(r.lo, r.hi)
        if (count, fp) == (r.count, r.fingerprint):
            return []
        small = self.params.id_list_threshold
        if count <= small and (not self.initiator or r.count <= small):
            return [self._id_list(r.lo, r.hi)]
        if count <= small:  # we hold few, they hold many: let them split it
            return [Range(r.lo, r.hi, Mode.FINGERPRINT, count, fp)]
        return [
            Range(lo, hi, Mode.FINGERPRINT, *self.digests.fingerprint(lo, hi))
            for lo, hi in self.digests.split(r.lo, r.hi, self.params.branching)
        ]

    def _id_list(self, lo: bytes, hi: bytes | None) -> Range:
        items = tuple((k, d[:PREFIX_BYTES]) for k, d in self.digests.items(lo, hi))
        return Range(lo, hi, Mode.ID_LIST, items=items)

    def _on_id_list(self, r: Range) -> list[Range]:
        ours = {k: d[:PREFIX_BYTES] for k, d in self.digests.items(r.lo, r.hi)}
        theirs = dict(r.items)
        if self.initiator:
            self._record(ours, theirs)
            return []
        if len(ours) > 4 * self.params.id_list_threshold:  # an id list over a range we hold a lot of: split it
            return self._on_fingerprint(Range(r.lo, r.hi, Mode.FINGERPRINT, len(theirs), b"\x00" * 16))
        differing = tuple(sorted((k, d) for k, d in ours.items() if theirs.get(k) != d))
        missing = tuple(sorted(k for k in theirs if k not in ours))
        return [Range(r.lo, r.hi, Mode.ID_DIFF, items=differing, missing=missing)] if differing or missing else []

    def _on_id_diff(self, r: Range) -> None:
        ours = {k for k, _ in self.digests.items(r.lo, r.hi)}
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
