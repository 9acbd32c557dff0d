"""The site's checkpoints and proof bundles: signing key, periodic signed checkpoints, case export.

The Ed25519 signing key lives in a file the site creates on first start (mode 0600); its public key
is written beside the TLS certificates as `<site>.audit-pub.pem`, where partners and auditors take
it from (for the demo and tests they share one directory; in production it is exchanged with the
partner agreement).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from adapters import bounded_json
from adapters.audit.site_chain import SiteChain
from audit import bundle, checkpoints
from audit.chain import genesis
from audit.ledger import RECENT, CheckpointLedger, covering, ledger_id
from audit.ports import AuditLog
from hub.domain.errors import InvalidInput, NotPermitted

LEDGER_TOPIC_PREFIX = "tongban.audit:"


def load_or_create_key(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = checkpoints.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


def public_key_file(directory: Path, site: str) -> Path:
    return directory / f"{site}.audit-pub.pem"


def trusted_keys(directory: Path | None) -> dict[str, bytes]:
    if directory is None:
        return {}
    return {p.name.split(".", 1)[0]: p.read_bytes() for p in directory.glob("*.audit-pub.pem")}


class Checkpointer:
    def __init__(self, log: AuditLog, chain: SiteChain, key: bytes, keys_dir: Path | None) -> None:
        self.log, self.chain, self.key = log, chain, key
        self.public = checkpoints.public_pem(key)
        self.keys_dir = keys_dir
        if keys_dir is not None:
            keys_dir.mkdir(parents=True, exist_ok=True)
            public_key_file(keys_dir, log.site).write_bytes(self.public)

    def ledger(self, site: str | None = None) -> CheckpointLedger:
        """Our ledger, or (``site`` given) the one where we keep that partner's checkpoints."""
        owner, kept_by = (site, self.log.site) if site else (self.log.site, "")
        return self.log.find(ledger_id(owner, kept_by), CheckpointLedger) or CheckpointLedger.open(owner, kept_by)

    def countersign_for(self, caller: str, signed_json: str) -> str:
        """A partner asks us to countersign its checkpoint: verify, keep it, answer our signature."""
        try:
            signed = checkpoints.SignedCheckpoint.from_dict(bounded_json.loads(signed_json))
        except (ValueError, checkpoints.CheckpointError) as error:
            raise InvalidInput.one("signed_checkpoint_json", f"检查点格式无效: {error}") from None
        if signed.checkpoint.site != caller:
            raise NotPermitted(f"站点 {caller} 只能请求会签自己的检查点")
        ours = checkpoints.countersign(signed, self.key, self.log.site, trusted_keys(self.keys_dir))
        kept = self.ledger(caller)
        kept.keep(signed=ours.to_dict())
        self.log.record(kept)
        return json.dumps(ours.countersignatures[-1].to_dict(), sort_keys=True)

    def record_countersignature(self, position: int, countersignature_json: str) -> None:
        """A partner's countersignature of our checkpoint, checked before it is stored."""
        try:
            signature = checkpoints.Signature.from_dict(bounded_json.loads(countersignature_json), "countersignature")
        except (ValueError, checkpoints.CheckpointError) as error:
            raise InvalidInput.one("countersignature_json", f"会签格式无效: {error}") from None
        ledger = self.ledger()
        signed = next((c for c in ledger.checkpoints if int(c["checkpoint"]["position"]) == position), None)
        keys = trusted_keys(self.keys_dir)
        if signed is None or signature.signer not in keys:
            raise NotPermitted(f"无法核验 {signature.signer} 的会签")
        checkpoint = checkpoints.SignedCheckpoint.from_dict(signed).checkpoint
        if not checkpoints.verify_signature(checkpoint, signature, keys[signature.signer]):
            raise NotPermitted(f"{signature.signer} 的会签无效")
        ledger.countersigned(position=position, countersignature=signature.to_dict())
        self.log.record(ledger)

    def checkpoint(self, force: bool = False) -> dict[str, Any] | None:
        """Sign the chain head if it moved (beyond our own previous checkpoint record)."""
        self.chain.extend()
        head = self.chain.head()
        ledger = self.ledger()
        if head is None or head.position <= ledger.last_position:
            return None
        if not force:
            since = self.chain.store.links(ledger.last_position + 1, head.position)
            if all(link.topic.startswith(LEDGER_TOPIC_PREFIX) for link in since):
                return None  # only checkpoint records since the last one: signing them would never end
        signed = checkpoints.make_checkpoint(self.log.site, head.position, head.link, datetime.now(UTC), self.key)
        ledger.record(signed=signed.to_dict())
        self.log.record(ledger)
        return signed.to_dict()

    def _covering(self, ledger: CheckpointLedger, position: int) -> dict[str, Any]:
        """Our first checkpoint at or after ``position``: from the ledger's recent state when it is surely
        there, else from its events, a page at a time (an old case's checkpoint was trimmed from state)."""
        recent = [c for c in ledger.checkpoints if int(c["checkpoint"]["position"]) >= position]
        if recent and (len(ledger.checkpoints) < RECENT or len(recent) < len(ledger.checkpoints)):
            return recent[0]
        found = covering(self._ledger_events(ledger.id), position)
        assert found is not None, "the ledger's last checkpoint is at or after the position"
        return found

    def _ledger_events(self, ledger: UUID, page: int = 500) -> Iterator[Any]:
        after: int | None = None
        while True:
            events = list(self.log.events_of(ledger, after=after, limit=page))
            yield from events
            if len(events) < page:
                return
            after = events[-1].originator_version

    def _keys_for(self, signed: list[checkpoints.SignedCheckpoint]) -> dict[str, bytes]:
        """Our key and the keys of the partners that countersigned, as we trust them."""
        trusted = trusted_keys(self.keys_dir)
        signers = {c.signer for s in signed for c in s.countersignatures}
        return {self.log.site: self.public, **{site: trusted[site] for site in signers if site in trusted}}

    def export(self, case_id: UUID) -> str:
        """The case's proof bundle, covered by a checkpoint signed now if none covers it yet."""
        case = self.log.get_case(case_id)
        self.chain.extend()
        store = self.chain.store
        by_version = {entry.version: entry.shared for entry in case.log}
        case_facts = {by_version[v].event_id: p for v, p in store.positions(str(case.id)).items() if v in by_version}
        last_fact = max(case_facts.values())
        ledger = self.ledger()
        signed = (self.checkpoint(force=True) if ledger.last_position < last_fact  # the first to cover it
                  else self._covering(ledger, last_fact))
        assert signed is not None, "a checkpoint past our last one is signed whenever the chain moved past it"
        cover = [checkpoints.SignedCheckpoint.from_dict(signed)]
        first = min(case_facts.values())
        segment = store.links(first, cover[0].checkpoint.position)  # the chain from the case on, not all of it
        before = store.before(first)
        start = before.link if before else genesis(self.log.site)
        made = bundle.build_bundle(
            case_id=case.id, exported_by=self.log.site, exported_at=datetime.now(UTC),
            events=case.shared_events(),
            segment=[{"position": s.position, "originator_id": s.originator_id, "version": s.version,
                      "topic": s.topic, "digest": s.digest, "link": s.link} for s in segment],
            start=start, checkpoints=cover, public_keys=self._keys_for(cover),
            case_facts=case_facts, private_pem=self.key,
        )
        return bundle.dump(made)
