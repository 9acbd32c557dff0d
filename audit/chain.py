"""The site chain: one append-only hash chain over every event a site has stored, in log order.

The per-(case, origin) chains in ``shared.py`` let two sites agree on a case; they cannot show
that a site's own store was edited afterwards, because a case's chain can be recomputed by whoever
edits it. The site chain links each stored event, as its exact stored bytes, to everything the
site stored before it, position by position (the notification id). Given the chain and the store
as they are now, ``verify`` says which position was edited, deleted, moved or inserted, and
whether the chain itself was rewritten since a checkpoint was taken and kept elsewhere (signed,
printed, sent to an auditor): a checkpoint ``(position, link)`` pins every event up to it.

Digests are over the stored bytes, which may be encrypted: a site verifies without its PII key,
and re-encrypting the store shows up as edits, as it should.

    fact digest  D = H("tongban.fact.v1\\0" ‖ lp(originator) ‖ version ‖ lp(topic) ‖ lp(state))
    L(0)         = H("tongban.site-chain.v1\\0" ‖ "genesis\\0" ‖ site)
    L(k)         = H("tongban.site-chain.v1\\0" ‖ L(k-1) ‖ position ‖ D ‖ lp(originator) ‖ lp(topic) ‖ version)

``lp`` is an 8-byte big-endian length then the UTF-8 bytes; integers are 8 bytes big-endian.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hub.domain.errors import HubError

FACT_TAG = b"tongban.fact.v1\x00"
SITE_CHAIN_TAG = b"tongban.site-chain.v1\x00"

EDITED, DELETED, REORDERED, INSERTED = "edited", "deleted", "reordered", "inserted"
CHAIN_BROKEN, CHECKPOINT_MISMATCH = "chain_broken", "checkpoint_mismatch"
KINDS = (EDITED, DELETED, REORDERED, INSERTED, CHAIN_BROKEN, CHECKPOINT_MISMATCH)
_LABELS = {
    EDITED: "事件被修改 (event edited)",
    DELETED: "事件被删除 (event deleted)",
    REORDERED: "事件位置被调换 (event reordered)",
    INSERTED: "事件被插入 (event inserted)",
    CHAIN_BROKEN: "审计链被篡改 (chain link broken)",
    CHECKPOINT_MISMATCH: "审计链与检查点不符 (checkpoint mismatch)",
}


class ChainOrderError(HubError):
    """Facts handed to ``extend`` do not continue the chain in increasing position order."""

    reason = "CHAIN_ORDER"

    def __init__(self, position: int, after: int) -> None:
        super().__init__(f"审计链只能按通知顺序追加: 通知 {position} 不在 {after} 之后 "
                         f"(chain positions must increase: {position} after {after})")
        self.position = position
        self.after = after


@dataclass(frozen=True)
class StoredFact:
    """One stored event as the chain sees it: where it is in the log, whose it is, and its digest."""

    position: int
    originator_id: str
    version: int
    topic: str
    digest: str


@dataclass(frozen=True)
class ChainLink:
    """A chained fact and the chain value after it."""

    position: int
    originator_id: str
    version: int
    topic: str
    digest: str
    link: str

    @property
    def fact(self) -> StoredFact:
        return StoredFact(self.position, self.originator_id, self.version, self.topic, self.digest)


@dataclass(frozen=True)
class Finding:
    """One thing wrong, at one position. ``detail`` is for people: Chinese first, then English."""

    kind: str
    position: int
    originator_id: str
    version: int
    detail: str


def _int(value: int) -> bytes:
    return value.to_bytes(8, "big", signed=True)


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(8, "big") + data


def fact_digest(originator_id: str, version: int, topic: str, state: bytes) -> str:
    """The digest of one stored event: its identity, topic and exact stored bytes."""
    payload = FACT_TAG + _lp(originator_id.encode()) + _int(version) + _lp(topic.encode()) + _lp(bytes(state))
    return hashlib.sha256(payload).hexdigest()


def genesis(site: str) -> str:
    """The chain value before the site's first event; binds the chain to the site."""
    return hashlib.sha256(SITE_CHAIN_TAG + b"genesis\x00" + site.encode()).hexdigest()


def next_link(previous: str, fact: StoredFact) -> str:
    payload = (
        SITE_CHAIN_TAG + bytes.fromhex(previous) + _int(fact.position) + bytes.fromhex(fact.digest)
        + _lp(fact.originator_id.encode()) + _lp(fact.topic.encode()) + _int(fact.version)
    )
    return hashlib.sha256(payload).hexdigest()


def extend(site: str, last: ChainLink | None, facts: Sequence[StoredFact]) -> list[ChainLink]:
    """Chain ``facts`` after ``last`` (None: from genesis).

    Positions must increase; a gap is recorded as it is (a position the store skipped), so a fact
    that later appears in the gap is reported as inserted.
    """
    previous, after = (last.link, last.position) if last else (genesis(site), 0)
    out = []
    for fact in facts:
        if fact.position <= after:
            raise ChainOrderError(fact.position, after)
        previous, after = next_link(previous, fact), fact.position
        out.append(ChainLink(fact.position, fact.originator_id, fact.version, fact.topic, fact.digest, previous))
    return out


def verify(
    site: str,
    links: Sequence[ChainLink],
    stored: Mapping[int, StoredFact],
    checkpoints: Sequence[tuple[int, str]] = (),
) -> list[Finding]:
    """Everything that differs between the chain, its checkpoints and the store. Empty: clean.

    ``links`` is the whole chain from its first position; ``stored`` holds what the store has now
    for (at least) positions up to the last link. Stored facts after the last link are not yet
    chained and are not judged. (``ChainVerifier`` does the same a window of positions at a time.)
    """
    verifier = ChainVerifier(site, checkpoints)
    verifier.check(links, stored, through=max((link.position for link in links), default=0))
    return verifier.findings()


Locate = Callable[[StoredFact], tuple[int | None, int | None]]


class ChainVerifier:
    """``verify`` over consecutive windows of positions, so a chain of any length is checked in bounded
    memory: call ``check`` for each window in position order, then ``findings``.

    An event found at the wrong position is looked up in the window first, then with ``locate``
    (the positions where the chain holds that digest, and that (originator, version)), which the
    adapter answers from the chain store; without it, a move across windows shows as an edit.
    """

    def __init__(self, site: str, checkpoints: Sequence[tuple[int, str]] = (), locate: Locate | None = None) -> None:
        self._checkpoints = list(checkpoints)
        self._wanted = {position for position, _head in self._checkpoints}
        self._locate = locate
        self._stored_previous = self._recomputed = genesis(site)
        self._after = 0
        self._recomputed_at: dict[int, str] = {}
        self._link_at: dict[int, ChainLink] = {}
        self._findings: list[Finding] = []

    def check(self, links: Sequence[ChainLink], stored: Mapping[int, StoredFact], through: int) -> None:
        """One window: its links, what the store holds now at its positions, and its last position."""
        self._chain_findings(links)
        self._store_findings(links, stored, through)

    def findings(self) -> list[Finding]:
        findings = list(self._findings)
        for position, head in self._checkpoints:
            if self._recomputed_at.get(position) == head:
                continue
            link_at = self._link_at.get(position)
            what = "的重算链值与检查点不同，检查点之后链被改写" if link_at else "在链中不存在，链被截断或改写"
            findings.append(_finding(
                CHECKPOINT_MISMATCH, position, link_at.originator_id if link_at else "",
                link_at.version if link_at else 0, link_at.topic if link_at else "", what,
            ))
        return sorted(findings, key=lambda f: (f.position, KINDS.index(f.kind)))

    def _chain_findings(self, links: Sequence[ChainLink]) -> None:
        """(a) The chain against itself (and, in ``findings``, against checkpoints).

        A link is broken when it does not follow from the link stored before it and its own fact, so
        an edited row is located where it was edited. A checkpoint is compared with the chain
        recomputed from genesis through the links' facts, which catches a rewrite that recomputed
        every link after the edit (internally consistent, but not the chain that was checkpointed).
        """
        for link in links:
            fact = link.fact
            if link.position <= self._after or link.link != next_link(self._stored_previous, fact):
                self._findings.append(_finding(CHAIN_BROKEN, link.position, link.originator_id, link.version,
                                               link.topic, "的链值与前一链值及事件摘要不符"))
            self._recomputed = next_link(self._recomputed, fact)
            if link.position in self._wanted:
                self._recomputed_at[link.position] = self._recomputed
                self._link_at[link.position] = link
            self._stored_previous, self._after = link.link, max(self._after, link.position)

    def _store_findings(self, links: Sequence[ChainLink], stored: Mapping[int, StoredFact], through: int) -> None:
        """(b) The store against the chain, position by position."""
        by_digest = {link.digest: link.position for link in links}
        by_identity = {(link.originator_id, link.version): link.position for link in links}
        chained = {link.position for link in links}
        for link in links:
            now = stored.get(link.position)
            if now is None:
                self._findings.append(
                    _finding(DELETED, link.position, link.originator_id, link.version, link.topic, ""))
            elif now.digest != link.digest:
                found = by_digest.get(now.digest), by_identity.get((now.originator_id, now.version))
                if None in found and self._locate is not None:
                    located = self._locate(now)
                    found = found[0] or located[0], found[1] or located[1]
                self._findings.append(_mismatch(link, now, *found))
        for position, fact in stored.items():
            if position <= through and position not in chained:
                self._findings.append(_finding(INSERTED, position, fact.originator_id, fact.version, fact.topic,
                                               "，链中此位置原本没有事件"))


def _mismatch(link: ChainLink, now: StoredFact, by_digest: int | None, by_identity: int | None) -> Finding:
    """A position whose stored event is not the chained one: moved here from elsewhere (the chain holds
    its digest, or its identity, at another position), or edited."""
    moved_from = by_digest
    if moved_from is not None and moved_from != link.position:
        return _finding(REORDERED, link.position, link.originator_id, link.version, link.topic,
                        f"，此处现为原通知 {moved_from} 的事件 ({_subject(now)})")
    moved_from = by_identity
    if moved_from is not None and moved_from != link.position:
        return _finding(REORDERED, link.position, link.originator_id, link.version, link.topic,
                        f"，此处现为原通知 {moved_from} 的事件 ({_subject(now)})，且内容也已不同")
    if (now.originator_id, now.version) != (link.originator_id, link.version):
        return _finding(EDITED, link.position, link.originator_id, link.version, link.topic,
                        f"，被替换为未上链的事件 ({_subject(now)})")
    return _finding(EDITED, link.position, link.originator_id, link.version, link.topic, "")


def _subject(fact: StoredFact) -> str:
    kind = "办件" if ".case:" in fact.topic else "记录"
    return f"{kind} {fact.originator_id} 版本 {fact.version}"


def _finding(kind: str, position: int, originator_id: str, version: int, topic: str, extra: str) -> Finding:
    subject = _subject(StoredFact(position, originator_id, version, topic, "")) if originator_id else "链"
    if kind in (CHAIN_BROKEN, CHECKPOINT_MISMATCH):
        detail = f"{_LABELS[kind]}: 通知 {position} ({subject}){extra}"
    else:
        detail = f"{_LABELS[kind]}: {subject} 在通知 {position}{extra}"
    return Finding(kind, position, originator_id, version, detail)
