"""Range-based set reconciliation: it finds exactly the differences, within its frame bound, and
refuses what no honest partner sends."""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.domain.errors import InvalidInput, RuleViolation
from reconciliation.messages import Message, Mode, Params, Range
from reconciliation.ports import Bounds, Cut, Item, Segment
from reconciliation.rbsr import ID_ITEM_BYTES, DigestSet, Participant, check_message, check_params, pad
from tests.digest_sets import T0, Snapshot, key, pair

T = TypeVar("T")


def reconcile(a: dict[bytes, bytes], b: dict[bytes, bytes], params: Params, enough: int | None = None
              ) -> tuple[Participant, int, list[int]]:
    initiator = Participant(DigestSet(Snapshot(a)), params, initiator=True, enough=enough)
    responder = Participant(DigestSet(Snapshot(b)), params, initiator=False)
    initiator.start()
    rounds, sizes = 0, []
    while (message := initiator.next_message()) is not None:
        reply = responder.reply(message)
        sizes += [message.size(), reply.size()]
        initiator.receive_reply(message, reply)
        rounds += 1
        assert rounds < 500
    return initiator, rounds, sizes


def expected(a: dict[bytes, bytes], b: dict[bytes, bytes]) -> tuple[set[bytes], set[bytes], set[bytes]]:
    return set(a) - set(b), set(b) - set(a), {k for k in set(a) & set(b) if a[k] != b[k]}


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 3000), only_a=st.integers(0, 40), only_b=st.integers(0, 40), changed=st.integers(0, 40),
    seed=st.integers(0, 2**32), spread=st.sampled_from([1, 3, 400]),
    branching=st.sampled_from([2, 4, 16]), threshold=st.sampled_from([1, 8, 32]),
)
def test_it_finds_exactly_the_differences(
    n: int, only_a: int, only_b: int, changed: int, seed: int, spread: int, branching: int, threshold: int
) -> None:
    a, b = pair(n, only_a, only_b, min(changed, n), seed, spread)
    side, _rounds, _sizes = reconcile(a, b, Params(branching=branching, id_list_threshold=threshold))
    found = side.differences
    assert (found.only_ours, found.only_theirs, found.differ) == expected(a, b)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), frame=st.sampled_from([5000, 8000, 20_000]))
def test_small_frames_still_find_everything_and_no_frame_exceeds_its_bound(seed: int, frame: int) -> None:
    a, b = pair(2000, 30, 30, 30, seed)
    side, _rounds, sizes = reconcile(a, b, Params(max_frame_bytes=frame, max_rounds=500))
    assert max(sizes) <= frame
    assert (side.differences.only_ours, side.differences.only_theirs, side.differences.differ) == expected(a, b)


def test_frames_that_cannot_hold_a_level_keep_the_ranges_in_key_order() -> None:
    """Many differences and small frames: each level spills over several frames, and every frame the
    initiator sends must still be in key order (the responder refuses anything else)."""
    a, b = pair(20_000, 1500, 1500, 2000, seed=5, spread_days=3)
    for frame in (8 * 1024, 16 * 1024, 64 * 1024):
        side, _rounds, sizes = reconcile(a, b, Params(max_frame_bytes=frame, max_rounds=500))
        assert max(sizes) <= frame
        assert (side.differences.only_ours, side.differences.only_theirs, side.differences.differ) == expected(a, b)


def test_equal_sets_cost_one_round_trip_and_a_few_dozen_bytes() -> None:
    a, _ = pair(20_000, 0, 0, 0, seed=7)
    side, rounds, sizes = reconcile(a, dict(a), Params())
    assert rounds == 1 and sum(sizes) < 1024 and len(side.differences) == 0


def test_rounds_grow_with_log_n_not_with_n() -> None:
    a, b = pair(50_000, 10, 10, 10, seed=3, spread_days=200)
    _side, rounds, sizes = reconcile(a, b, Params())
    assert rounds <= 4
    assert sum(sizes) < 50_000 * 24 / 4  # far below shipping every digest


def test_split_cuts_at_day_and_hour_starts_while_those_are_small() -> None:
    a, _ = pair(5000, 0, 0, 0, seed=11, spread_days=100)
    digests = DigestSet(Snapshot(a))
    parts = digests.split(b"", None, 16, digests.size)
    assert 8 <= len(parts) <= 32
    assert all(len(lo) <= 6 for lo, _hi, _n, _fp in parts[1:])  # day starts, not item keys
    assert sum(n for _lo, _hi, n, _fp in parts) == 5000
    assert all(digests.fingerprint(lo, hi) == (n, fp) for lo, hi, n, fp in parts)


# ---------------------------------------------------------------------- a misbehaving partner


def fp(lo: bytes, hi: bytes | None) -> Range:
    return Range(lo, hi, Mode.FINGERPRINT, 1, bytes(16))


@pytest.mark.parametrize(
    ("ranges", "complaint"),
    [
        ((fp(b"\x05", b"\x09"), fp(b"\x01", b"\x03")), "顺序"),
        ((fp(b"\x05", b"\x05"),), "顺序"),
        ((fp(b"\x01", None), fp(b"\x05", b"\x09")), "上界"),
        ((Range(b"", None, Mode.FINGERPRINT, 1, b"short"),), "指纹"),
        ((Range(b"", None, Mode.ID_LIST, items=((os.urandom(16), b"x"),)),), "清单"),
        ((Range(b"\x80", None, Mode.ID_LIST, items=((b"\x01" + bytes(15), bytes(8)),)),), "区间内"),
        ((Range(b"", None, Mode.ID_DIFF),), "类型"),
        ((Range(b"\x00" * 17, None, Mode.FINGERPRINT, 1, bytes(16)),), "16"),
    ],
)
def test_malformed_messages_are_refused_with_a_clear_reason(ranges: tuple[Range, ...], complaint: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_message(Message(ranges), Params(), from_responder=False)
    assert complaint in refused.value.message


def test_an_oversized_frame_is_refused_before_it_is_read() -> None:
    items = tuple(sorted((os.urandom(16), bytes(8)) for _ in range(100)))
    with pytest.raises(InvalidInput, match="过大"):
        check_message(Message((Range(b"", None, Mode.ID_LIST, items=items),)), Params(max_frame_bytes=1000),
                      from_responder=False)


def test_a_different_digest_version_is_refused_in_the_handshake() -> None:
    with pytest.raises(RuleViolation) as refused:
        check_params(Params(), Params(version=99))
    assert refused.value.reason == "DIGEST_VERSION"


def test_a_frame_too_small_for_one_answer_is_refused_in_the_handshake() -> None:
    with pytest.raises(InvalidInput, match="帧上限过小"):
        check_params(Params(), Params(max_frame_bytes=600))


def test_the_handshake_takes_the_tighter_bounds() -> None:
    agreed = check_params(Params(max_frame_bytes=4096, branching=16), Params(max_frame_bytes=1 << 20, branching=8))
    assert (agreed.max_frame_bytes, agreed.branching) == (4096, 8)


def test_a_reply_outside_what_was_asked_is_refused() -> None:
    a, _ = pair(100, 0, 0, 0, seed=1)
    side = Participant(DigestSet(Snapshot(a)), Params(), initiator=True)
    sent = Message((fp(b"\x10", b"\x20"),))
    with pytest.raises(InvalidInput, match="之内"):
        side.receive_reply(sent, Message((fp(b"\x30", b"\x40"),), consumed=1))


def test_an_id_diff_must_answer_our_id_list_of_the_same_range() -> None:
    """Else a partner could name any range, our whole set included, and have us read every key of it."""
    a, _ = pair(20_000, 0, 0, 0, seed=1)
    reads = CountingSnapshot(a)
    side = Participant(DigestSet(reads), Params(), initiator=True, enough=100)
    side.start()
    everything = side.next_message()
    assert everything is not None
    with pytest.raises(InvalidInput, match="差异清单"):
        side.receive_reply(everything, Message((Range(b"", None, Mode.ID_DIFF),), consumed=1))
    listed = Message((Range(b"\x10", b"\x20", Mode.ID_LIST),))
    with pytest.raises(InvalidInput, match="差异清单"):
        side.receive_reply(listed, Message((Range(b"\x10", b"\x18", Mode.ID_DIFF),), consumed=1))
    assert reads.read == 0


def test_past_enough_the_initiator_reads_and_asks_nothing_more() -> None:
    """Every case differs: once more than ``enough`` are known the breaker will trip, so the rest of the
    reply is neither listed nor queued."""
    ours, theirs = pair(20_000, 0, 0, 20_000, seed=7)
    reads = ReadRecordingSnapshot(ours)
    initiator = Participant(DigestSet(reads), Params(), initiator=True, enough=100)
    responder = Participant(DigestSet(Snapshot(theirs)), Params(), initiator=False)
    initiator.start()
    while (message := initiator.next_message()) is not None:
        initiator.receive_reply(message, responder.reply(message))
    assert initiator.tripped and initiator.found > 100 and not initiator.outbox
    assert reads.listed < 3 * 100  # a few times enough at most


def test_bounds_compare_as_zero_padded_keys() -> None:
    assert pad(b"\x01") == b"\x01" + bytes(15)


class CountingSnapshot(Snapshot):
    """Counts the keys read (what a mass divergence would hold in memory)."""

    read = 0

    def items(self, lo: bytes, hi: bytes | None, limit: int | None = None) -> list[Item]:
        found = super().items(lo, hi, limit)
        self.read += len(found)
        return found


class ReadRecordingSnapshot(Snapshot):
    """Records item reads: alone (range by range) and in batches (how many keys each batch held). The
    fake answers sums and cuts from its items too; those reads are theirs, not counted as alone."""

    def __init__(self, items: dict[bytes, bytes]) -> None:
        super().__init__(items)
        self.alone, self.batches, self._inside = 0, list[int](), False
        self.cut_questions = self.cuts = self.alone_keys = 0

    def items(self, lo: bytes, hi: bytes | None, limit: int | None = None) -> list[Item]:
        found = super().items(lo, hi, limit)
        if not self._inside:
            self.alone += 1
            self.alone_keys += len(found)
        return found

    @property
    def listed(self) -> int:
        """Keys read as keys (not summed or cut), alone or in batches."""
        return self.alone_keys + sum(self.batches)

    def item_lists(self, ranges: Sequence[Bounds]) -> list[list[Item]]:
        lists = self._within(super().item_lists, ranges)
        self.batches.append(sum(map(len, lists)))
        return lists

    def summaries(self, ranges: Sequence[Bounds]) -> list[tuple[int, bytes]]:
        return self._within(super().summaries, ranges)

    def segments(self, cuts: Sequence[Cut]) -> list[list[Segment]]:
        self.cut_questions += 1
        self.cuts += len(cuts)
        return self._within(super().segments, cuts)

    def _within(self, read: Callable[..., T], *args: Any) -> T:
        self._inside = True
        try:
            return read(*args)
        finally:
            self._inside = False


@pytest.mark.parametrize("frame", [1 << 20, 16 * 1024])
def test_a_message_reads_its_ranges_together_a_frame_at_a_time(frame: int) -> None:
    """Thousands of differences: each side reads the id lists and cuts the splits a message needs a few
    questions at a time, never range by range, and no batch holds more keys than a frame could carry."""
    a, b = pair(20_000, 1500, 1500, 1000, seed=11)
    ours, theirs = ReadRecordingSnapshot(a), ReadRecordingSnapshot(b)
    params = Params(max_frame_bytes=frame, max_rounds=500)
    initiator = Participant(DigestSet(ours), params, initiator=True)
    responder = Participant(DigestSet(theirs), params, initiator=False)
    initiator.start()
    rounds = 0
    while (message := initiator.next_message()) is not None:
        initiator.receive_reply(message, responder.reply(message))
        rounds += 1
    found = initiator.differences
    assert (found.only_ours, found.only_theirs, found.differ) == expected(a, b)
    for side in (ours, theirs):
        assert side.alone == 0
        assert len(side.batches) <= 2 * rounds
        assert max(side.batches) <= frame // ID_ITEM_BYTES
        assert side.cut_questions <= 2 * rounds  # the splits' runs are cut together, not one by one
    assert sum(ours.batches) >= 4000  # the differing keys' neighbours were listed, in batches
    assert theirs.cuts > 4 * rounds  # and many runs of keys were cut


@pytest.mark.parametrize("only_theirs", [0, 300])
def test_enough_differences_are_counted_not_read(only_theirs: int) -> None:
    """A partner missing everything we hold: with ``enough`` the initiator counts what one range lacks
    beyond it instead of reading those keys, and the count is a lower bound of the truth."""
    ours, theirs = pair(0, 20_000, only_theirs, 0, seed=7)
    snapshot = CountingSnapshot(ours)
    initiator = Participant(DigestSet(snapshot), Params(), initiator=True, enough=100)
    responder = Participant(DigestSet(Snapshot(theirs)), Params(), initiator=False)
    initiator.start()
    while (message := initiator.next_message()) is not None and initiator.found <= 100:
        initiator.receive_reply(message, responder.reply(message))
    assert 100 < initiator.found <= 20_000 + only_theirs
    assert snapshot.read < 2_000  # the full comparison reads all 20,000 of ours


class PageRecordingSnapshot(Snapshot):
    """Records the largest read: a dense hour must be read a page at a time, never whole."""

    largest = 0

    def items(self, lo: bytes, hi: bytes | None, limit: int | None = None) -> list[Item]:
        found = super().items(lo, hi, limit)
        self.largest = max(self.largest, len(found))
        return found


def test_a_dense_hour_is_fingerprinted_and_split_a_page_at_a_time() -> None:
    """A bulk load puts many cases in one hour; a range cutting through it is read in pages, and its
    fingerprint and split are those of the keys one by one."""
    rng = random.Random(3)
    start = (T0 // 3_600_000) * 3_600_000
    dense = {(start + rng.randrange(3_600_000)).to_bytes(6, "big") + rng.randbytes(10): rng.randbytes(16)
             for _ in range(12_000)}
    snapshot = PageRecordingSnapshot(dense)
    digests = DigestSet(snapshot)
    keys = sorted(dense)
    lo, hi = keys[100], keys[11_000]  # cuts through the hour on both sides
    expected = 0
    for k in keys[100:11_000]:
        expected ^= int.from_bytes(dense[k], "big")
    assert digests.fingerprint(lo, hi) == (10_900, expected.to_bytes(16, "big"))
    parts = digests.split(lo, hi, 4, 10_900)
    assert sum(n for _lo, _hi, n, _fp in parts) == 10_900
    assert snapshot.largest <= 5000


def test_an_id_list_over_a_range_the_responder_holds_much_of_is_split_without_reading_it_whole() -> None:
    """A partner (buggy, or hostile) sends an id list over a whole bulk-loaded hour: the responder answers
    with fingerprints of parts, counted page by page, instead of first reading the hour into memory."""
    rng = random.Random(5)
    start = (T0 // 3_600_000) * 3_600_000
    dense = {(start + rng.randrange(3_600_000)).to_bytes(6, "big") + rng.randbytes(10): rng.randbytes(16)
             for _ in range(20_000)}
    snapshot = PageRecordingSnapshot(dense)
    responder = Participant(DigestSet(snapshot), Params(), initiator=False)
    one = min(dense)
    reply = responder.reply(Message((Range(b"", None, Mode.ID_LIST, items=((one, dense[one][:8]),)),), False))
    assert reply.ranges and all(r.mode is Mode.FINGERPRINT for r in reply.ranges)
    assert sum(r.count for r in reply.ranges) == 20_000
    assert snapshot.largest <= 5000  # the whole hour at once was 20,000


def brute(items: dict[bytes, bytes], lo: bytes, hi: bytes | None) -> tuple[int, bytes]:
    inside = [d for k, d in items.items() if pad(lo) <= k and (hi is None or k < pad(hi))]
    fp = 0
    for d in inside:
        fp ^= int.from_bytes(d, "big")
    return len(inside), fp.to_bytes(16, "big")


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), dense=st.integers(0, 3), sparse=st.integers(0, 400),
       parts=st.integers(2, 16), cut=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_split_parts_tile_the_range_and_each_carries_its_own_count_and_fingerprint(
    seed: int, dense: int, sparse: int, parts: int, cut: tuple[float, float],
) -> None:
    """Days, hours, dense hours cut anywhere (the part summed or cut inside the snapshot): every part's
    count and fingerprint are those of its keys, the parts tile [lo, hi) in order, and none is much
    bigger than its share."""
    rng = random.Random(seed)
    items = {key(rng, 3): rng.randbytes(16) for _ in range(sparse)}
    for _ in range(dense):  # bulk-loaded hours: hundreds of keys in one hour
        start = (T0 // 3_600_000 + rng.randrange(72)) * 3_600_000
        items.update({(start + rng.randrange(3_600_000)).to_bytes(6, "big") + rng.randbytes(10): rng.randbytes(16)
                      for _ in range(rng.randrange(200, 900))})
    keys = sorted(items)
    if not keys:
        return
    a, b = sorted(int(c * (len(keys) - 1)) for c in cut)
    lo, hi = (keys[a] if a else b""), (keys[b] if b < len(keys) - 1 else None)
    digests = DigestSet(Snapshot(items))
    count, fp = digests.fingerprint(lo, hi)
    assert (count, fp) == brute(items, lo, hi)
    if count < 2:
        return
    split = digests.split(lo, hi, parts, count)
    assert split[0][0] == lo and split[-1][1] == hi
    assert all(p[1] == q[0] for p, q in itertools.pairwise(split))
    target = -(-count // parts)
    for part_lo, part_hi, n, part_fp in split:
        assert (n, part_fp) == brute(items, part_lo, part_hi)
        assert n <= target
    assert sum(n for _lo, _hi, n, _fp in split) == count
    # Split together with its own parts (runs cut in lockstep), each split is the one made alone.
    more = [(p_lo, p_hi, parts, n) for p_lo, p_hi, n, _fp in split if n >= 2]
    assert digests.splits([(lo, hi, parts, count), *more]) == [split, *(digests.split(*m) for m in more)]


def test_keys_in_the_last_hour_48_bits_can_hold_are_fingerprinted_split_and_reconciled() -> None:
    """A partner's case id need not be a UUIDv7: a key whose first six bytes are all but the largest
    possible once made the end of its day overflow, and every run against that partner failed."""
    rng = random.Random(11)
    top = {b"\xff\xff\xff\xff\xff" + bytes([rng.randrange(256)]) + rng.randbytes(10): rng.randbytes(16)
           for _ in range(300)}
    a, b = pair(200, 3, 2, 1, seed=12)
    a.update(top)
    b.update(top)
    changed = sorted(top)[7]
    b[changed] = rng.randbytes(16)
    digests = DigestSet(Snapshot(a))
    assert digests.fingerprint(b"", None)[0] == len(a)
    assert sum(n for _lo, _hi, n, _fp in digests.split(b"", None, 16, len(a))) == len(a)
    only_a, only_b, differ = expected(a, b)
    found = reconcile(a, b, Params())[0].differences
    assert (found.only_ours, found.only_theirs, found.differ) == (only_a, only_b, differ)
    assert changed in differ
