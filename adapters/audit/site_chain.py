"""The site chain over a site's log: follow it into a ChainStore, and verify it.

``SiteChain.extend`` is what a site runs after saves (or on a timer); ``verify`` is what an
auditor or an SRE runs, with checkpoints taken earlier from ``head()`` and kept out of the site's
reach. Both read the notification log as stored (``AuditLog.read``), so what they see is exactly
what is stored, encrypted or not; no key is needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from eventsourcing.persistence import Notification

from audit.chain import ChainLink, ChainVerifier, Finding, StoredFact, extend, fact_digest
from audit.ports import AuditLog, ChainStore

_READ_BATCH = 1000


def facts_from(notifications: Iterable[Notification]) -> list[StoredFact]:
    """The chain's view of stored events: position, identity, topic and the digest of the stored bytes."""
    return [
        StoredFact(
            position=n.id,
            originator_id=str(n.originator_id),
            version=int(n.originator_version),
            topic=n.topic,
            digest=fact_digest(str(n.originator_id), int(n.originator_version), n.topic, bytes(n.state)),
        )
        for n in notifications
    ]


class SiteChain:
    """One site's chain: its event log, followed into ``store``."""

    def __init__(self, log: AuditLog, store: ChainStore) -> None:
        self.log = log
        self.store = store
        self.site = log.site

    def extend(self, batch: int = 1000) -> int:
        """Chain every event stored after the head, ``batch`` per transaction; returns how many were chained.

        Positions the log skipped (a rolled-back insert's id) are skipped in the chain too: the
        chain records the log as it is when it is chained.
        """
        chained = 0
        while True:
            last = self.store.last()
            start = last.position + 1 if last else 1
            notifications = self.log.read(start=start, limit=batch)
            links = extend(self.site, last, facts_from(notifications))
            self.store.append(links)
            chained += len(links)
            if len(notifications) < batch:
                return chained

    def head(self) -> ChainLink | None:
        """The latest link: ``(head.position, head.link)`` is the checkpoint to keep elsewhere."""
        return self.store.last()

    def stored_facts(self, start: int = 1, stop: int | None = None) -> dict[int, StoredFact]:
        """Every event the store holds now at positions ``start``..``stop`` (inclusive), by position."""
        out: dict[int, StoredFact] = {}
        while True:
            notifications = self.log.read(start=start, limit=_READ_BATCH, stop=stop)
            out.update((f.position, f) for f in facts_from(notifications))
            if len(notifications) < _READ_BATCH:
                return out
            start = notifications[-1].id + 1

    def verify(self, checkpoints: Sequence[tuple[int, str]] = (), window: int = 20_000) -> list[Finding]:
        """What is chained against what is stored now (nothing is chained first). Empty: clean.

        ``window`` positions at a time: a site with millions of events is verified in bounded memory.
        """
        verifier = ChainVerifier(self.site, checkpoints, self.store.locate)
        head = self.store.last()
        start = 1
        while head is not None and start <= head.position:
            stop = min(start + window - 1, head.position)
            verifier.check(self.store.links(start, stop), self.stored_facts(start, stop), through=stop)
            start = stop + 1
        return verifier.findings()
