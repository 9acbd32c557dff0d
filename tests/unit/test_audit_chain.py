"""The site chain's pure core: every finding kind, located exactly, and a property over random logs."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.chain import (
    ChainLink,
    ChainOrderError,
    Finding,
    StoredFact,
    extend,
    fact_digest,
    genesis,
    next_link,
    verify,
)

SITE = "410400"
CASE_TOPIC, CLAIM_TOPIC = "tongban.case:CaseReceived", "tongban.claim:Claimed"


def fact(position: int, originator: str | None = None, version: int = 1, topic: str = CASE_TOPIC,
         state: bytes | None = None) -> StoredFact:
    originator = originator or f"case-{position}"
    state = state if state is not None else f"state of {originator} v{version}".encode()
    return StoredFact(position, originator, version, topic, fact_digest(originator, version, topic, state))


# Positions 1..7 with a gap at 5 (a rolled-back insert), two events of one case.
FACTS = [fact(1), fact(2, topic=CLAIM_TOPIC), fact(3), fact(4, "case-1", 2), fact(6), fact(7), fact(8)]


def stored(facts: list[StoredFact]) -> dict[int, StoredFact]:
    return {f.position: f for f in facts}


def kinds(findings: list[Finding]) -> list[tuple[str, int]]:
    return [(f.kind, f.position) for f in findings]


def test_digest_and_links_are_tagged_and_length_prefixed() -> None:
    # Moving bytes between fields changes the digest (no ambiguity in the encoding).
    assert fact_digest("ab", 1, "c", b"") != fact_digest("a", 1, "bc", b"")
    assert fact_digest("a", 1, "t", b"x") != fact_digest("a", 2, "t", b"x")
    assert genesis("410400") != genesis("320500")
    one = fact(1)
    assert next_link(genesis(SITE), one) != next_link(genesis(SITE), replace(one, position=2))
    assert len(next_link(genesis(SITE), one)) == 64


def test_extend_continues_from_the_last_link_and_keeps_gaps() -> None:
    whole = extend(SITE, None, FACTS)
    assert [k.position for k in whole] == [1, 2, 3, 4, 6, 7, 8]
    assert extend(SITE, whole[2], FACTS[3:]) == whole[3:]
    assert whole[0].link == next_link(genesis(SITE), FACTS[0])
    with pytest.raises(ChainOrderError):
        extend(SITE, whole[-1], [fact(8)])
    with pytest.raises(ChainOrderError):
        extend(SITE, None, [fact(2), fact(1)])


def test_untouched_store_verifies_clean() -> None:
    assert verify(SITE, extend(SITE, None, FACTS), stored(FACTS)) == []
    assert verify(SITE, [], {}) == []


def test_later_unchained_events_are_not_judged() -> None:
    links = extend(SITE, None, FACTS)
    assert verify(SITE, links, stored([*FACTS, fact(9), fact(12)])) == []


def test_edited_event_is_located() -> None:
    links = extend(SITE, None, FACTS)
    now = stored(FACTS)
    now[3] = fact(3, state=b"changed")
    [finding] = verify(SITE, links, now)
    assert (finding.kind, finding.position, finding.originator_id, finding.version) == ("edited", 3, "case-3", 1)
    assert finding.detail == "事件被修改 (event edited): 办件 case-3 版本 1 在通知 3"


def test_event_replaced_by_an_unknown_one_is_an_edit() -> None:
    links = extend(SITE, None, FACTS)
    now = stored(FACTS)
    now[2] = fact(2, "someone-else")
    [finding] = verify(SITE, links, now)
    assert (finding.kind, finding.position, finding.originator_id) == ("edited", 2, "case-2")
    assert "someone-else" in finding.detail and finding.detail.startswith("事件被修改 (event edited): 记录 case-2")


def test_deleted_event_is_located() -> None:
    links = extend(SITE, None, FACTS)
    now = stored(FACTS)
    del now[4]
    [finding] = verify(SITE, links, now)
    assert (finding.kind, finding.position, finding.originator_id, finding.version) == ("deleted", 4, "case-1", 2)
    assert finding.detail.startswith("事件被删除 (event deleted)")


def test_swapped_events_are_reordered_at_both_positions() -> None:
    links = extend(SITE, None, FACTS)
    now = stored(FACTS)
    now[3], now[7] = replace(FACTS[5], position=3), replace(FACTS[2], position=7)
    findings = verify(SITE, links, now)
    assert kinds(findings) == [("reordered", 3), ("reordered", 7)]
    assert "通知 3" in findings[0].detail and "原通知 7" in findings[0].detail
    assert "通知 7" in findings[1].detail and "原通知 3" in findings[1].detail


def test_moved_identity_with_other_content_is_reordered() -> None:
    links = extend(SITE, None, FACTS)
    now = stored(FACTS)
    now[6] = fact(6, "case-7", state=b"other")
    [finding] = verify(SITE, links, now)
    assert (finding.kind, finding.position) == ("reordered", 6)
    assert "原通知 7" in finding.detail and "内容也已不同" in finding.detail


def test_event_in_a_recorded_gap_is_inserted() -> None:
    links = extend(SITE, None, FACTS)
    [finding] = verify(SITE, links, stored([*FACTS, fact(5, "forged")]))
    assert (finding.kind, finding.position, finding.originator_id) == ("inserted", 5, "forged")
    assert finding.detail.startswith("事件被插入 (event inserted): 办件 forged 版本 1 在通知 5")


def test_edited_chain_row_breaks_the_chain_there() -> None:
    links = extend(SITE, None, FACTS)
    forged = fact(3, state=b"changed")
    links[2] = replace(links[2], digest=forged.digest)
    now = stored(FACTS)
    now[3] = forged  # the store and the chain agree again, but the chain no longer adds up
    assert kinds(verify(SITE, links, now)) == [("chain_broken", 3)]


def test_rewritten_chain_is_caught_only_by_a_checkpoint() -> None:
    links = extend(SITE, None, FACTS)
    checkpoints = [(links[1].position, links[1].link), (links[-1].position, links[-1].link)]
    assert verify(SITE, links, stored(FACTS), checkpoints) == []
    # Someone edits event 3 and recomputes the chain from there: internally consistent.
    forged_facts = [*FACTS[:2], fact(3, state=b"changed"), *FACTS[3:]]
    rewritten = extend(SITE, None, forged_facts)
    assert verify(SITE, rewritten, stored(forged_facts)) == []
    findings = verify(SITE, rewritten, stored(forged_facts), checkpoints)
    assert kinds(findings) == [("checkpoint_mismatch", 8)]
    assert findings[0].detail.startswith("审计链与检查点不符 (checkpoint mismatch): 通知 8")


def test_truncated_chain_misses_its_checkpoint() -> None:
    links = extend(SITE, None, FACTS)
    findings = verify(SITE, links[:-2], stored(FACTS[:-2]), [(8, links[-1].link)])
    assert kinds(findings) == [("checkpoint_mismatch", 8)]
    assert findings[0].originator_id == ""


def test_findings_are_sorted_by_position() -> None:
    links = extend(SITE, None, FACTS)
    now = stored(FACTS)
    del now[8]
    now[1] = fact(1, state=b"x")
    now[5] = fact(5, "forged")
    assert kinds(verify(SITE, links, now)) == [("edited", 1), ("inserted", 5), ("deleted", 8)]


# ---------------------------------------------------------------- property over random logs
@st.composite
def logs(draw: st.DrawFn) -> list[StoredFact]:
    """Distinct events (unique originator and version, as in a real store) at increasing positions with gaps."""
    steps = draw(st.lists(st.integers(1, 3), min_size=2, max_size=25))
    positions = [sum(steps[: i + 1]) for i in range(len(steps))]
    out = []
    for i, position in enumerate(positions):
        originator = f"o{draw(st.integers(0, 3))}-{i}"
        state = draw(st.binary(max_size=16))
        topic = draw(st.sampled_from([CASE_TOPIC, CLAIM_TOPIC]))
        out.append(StoredFact(position, originator, i + 1, topic, fact_digest(originator, i + 1, topic, state)))
    return out


@settings(max_examples=150, deadline=None)
@given(log=logs(), data=st.data())
def test_any_single_tampering_is_found_where_it_happened(log: list[StoredFact], data: st.DataObject) -> None:
    links = extend(SITE, None, log)
    assert extend(SITE, links[0], log[1:]) == links[1:]
    now = stored(log)
    assert verify(SITE, links, now) == []
    i = data.draw(st.integers(0, len(log) - 1))
    target = log[i]
    mutation = data.draw(st.sampled_from(["edit", "delete", "swap"]))
    if mutation == "edit":
        now[target.position] = replace(target, digest=fact_digest("x", 0, "x", data.draw(st.binary())))
        mutated = {target.position}
    elif mutation == "delete":
        del now[target.position]
        mutated = {target.position}
    else:
        j = data.draw(st.integers(0, len(log) - 1).filter(lambda j: j != i))
        other = log[j]
        now[target.position] = replace(other, position=target.position)
        now[other.position] = replace(target, position=other.position)
        mutated = {target.position, other.position}
    findings = verify(SITE, links, now)
    assert findings
    assert {f.position for f in findings} == mutated
    expected = {"edit": "edited", "delete": "deleted", "swap": "reordered"}[mutation]
    assert {f.kind for f in findings} == {expected}


@settings(max_examples=100, deadline=None)
@given(log=logs(), data=st.data())
def test_any_edit_of_a_chain_row_is_found(log: list[StoredFact], data: st.DataObject) -> None:
    links = extend(SITE, None, log)
    i = data.draw(st.integers(0, len(log) - 1))
    field = data.draw(st.sampled_from(["digest", "link", "version", "topic"]))
    changed: dict[str, object] = {
        "digest": fact_digest("x", 0, "x", b"x"), "link": fact_digest("y", 0, "y", b"y"),
        "version": links[i].version + 1, "topic": links[i].topic + "!",
    }
    tampered = [*links[:i], replace(links[i], **{field: changed[field]}), *links[i + 1:]]  # type: ignore[arg-type]
    findings = verify(SITE, tampered, stored(log), [(links[-1].position, links[-1].link)])
    assert links[i].position in {f.position for f in findings if f.kind == "chain_broken"}


def test_chain_link_exposes_its_fact() -> None:
    [link] = extend(SITE, None, [FACTS[0]])
    assert isinstance(link, ChainLink) and link.fact == FACTS[0]
