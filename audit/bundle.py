"""The offline proof bundle for one case: everything an auditor needs to check its trail, in one JSON file.

A bundle is checked with nothing but its own bytes and the ``cryptography`` package: no store, no
network, no key but the public keys it carries (which an auditor compares, by key id, with the keys
the sites publish; ``trusted`` pins them). Format ``tongban.audit-bundle.v1``, one JSON object::

    format        "tongban.audit-bundle.v1"
    case_id       the case (UUID)
    exported_by   the site that exported it (its site chain is the one in the bundle)
    exported_at   UTC, microseconds
    events        the case's shared events, in fold order (lamport, origin, seq): each in the partner
                  API's canonical form (actor, case_id, data, event_id, lamport, occurred_at, origin,
                  seq, type, type_version) plus "hash"
    origin_chains {origin: [chain head after seq 1, after seq 2, …]} (partner API hash chain)
    site_chain    {"site", "start": the link before the segment (hex), "segment": [{"position",
                  "originator_id", "version", "topic", "digest", "link"}, …]}: consecutive links of
                  the exporting site's chain, from its first fact of the case to the last checkpoint
    checkpoints   [{"checkpoint": {…}, "signature": {…}, "countersignatures": [{…}]}] (``checkpoints``)
    public_keys   {site: public key PEM} for every site that signed anything in the bundle
    case_facts    [{"position", "event_id"}]: the site-chain position that stores each event
    seal          the exporting site's signature over the bundle without "seal" (tag
                  "tongban.audit-bundle.v1\\0" + compact sorted-key JSON): binds "exported_at" and
                  makes the bundle attributable; it is not what proves the trail (the exporter could
                  re-seal anything): every other field is checked against content, chains and
                  checkpoints that partners countersigned.

``verify_bundle`` lists every failure, each saying what fails where; see ``docs/audit-bundle.md``.
Any change to a byte that changes the bundle's meaning fails at least one check (or the JSON).
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from audit.checkpoints import (
    CheckpointError,
    Signature,
    SignedCheckpoint,
    checkpoint_failures,
    key_id,
    normalise_public_pem,
    parse_utc,
    shape_failures,
    sign_payload,
    utc_text,
    verify_payload,
)
from hub.domain.errors import HubError
from hub.domain.shared import SharedEvent, canonical_json, chain_of

FORMAT = "tongban.audit-bundle.v1"
SEAL_TAG = b"tongban.audit-bundle.v1\x00"
CASE_TOPIC_PREFIX = "tongban.case:"
SEGMENT_FIELDS = ("position", "originator_id", "version", "topic", "digest", "link")

NextLink = Callable[[str, Mapping[str, Any]], str]

__all__ = ["FORMAT", "BundleError", "NextLink", "build_bundle", "dump", "seal_payload", "verify_bundle"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_TOP = {"format": str, "case_id": str, "exported_by": str, "exported_at": str, "events": list, "origin_chains": dict,
        "site_chain": dict, "checkpoints": list, "public_keys": dict, "case_facts": list, "seal": dict}
_SITE_CHAIN = {"site": str, "start": str, "segment": list}
_SEGMENT = {"position": int, "originator_id": str, "version": int, "topic": str, "digest": str, "link": str}
_EVENT = {"case_id": str, "origin": str, "seq": int, "lamport": int, "event_id": str, "type": str,
          "type_version": int, "occurred_at": str, "actor": dict, "data": dict, "hash": str}
_CASE_FACT = {"position": int, "event_id": str}


class BundleError(HubError):
    """A bundle cannot be built from the inputs given (a bug in the exporter, not a finding)."""

    reason = "BUNDLE_INPUT"


def _canonical(doc: Any) -> bytes:
    return canonical_json(doc)


def seal_payload(bundle: Mapping[str, Any]) -> bytes:
    """The bytes the seal signs: the bundle without its seal, compact and key-sorted."""
    return SEAL_TAG + _canonical({k: v for k, v in bundle.items() if k != "seal"})


def build_bundle(
    *,
    case_id: UUID,
    exported_by: str,
    exported_at: datetime,
    events: Sequence[SharedEvent],
    segment: Sequence[Mapping[str, Any]],
    start: str,
    checkpoints: Sequence[SignedCheckpoint],
    public_keys: Mapping[str, bytes],
    case_facts: Mapping[str, int],
    private_pem: bytes,
) -> dict[str, Any]:
    """The bundle for one case, sealed with the exporting site's key ``private_pem``.

    ``segment`` is the exporting site's chain links (``SEGMENT_FIELDS``) from its first fact of the
    case through the last checkpoint, ``start`` the link before it; ``case_facts`` maps each event
    id to the position storing it. Only the public keys of sites that signed something are kept.
    """
    by_origin: dict[str, list[SharedEvent]] = {}
    for event in sorted(events, key=lambda e: (e.origin, e.seq)):
        by_origin.setdefault(event.origin, []).append(event)
    signers = {exported_by}
    for signed in checkpoints:
        signers |= {signed.checkpoint.site, *(c.signer for c in signed.countersignatures)}
    missing = sorted(signers - set(public_keys))
    if missing:
        raise BundleError(f"缺少站点公钥，无法导出 (no public key for site {', '.join(missing)})")
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "case_id": str(case_id),
        "exported_by": exported_by,
        "exported_at": utc_text(exported_at),
        "events": [{**json.loads(e.canonical()), "hash": e.hash()} for e in sorted(events, key=lambda e: e.key)],
        "origin_chains": {origin: chain_of(case_id, origin, evs) for origin, evs in sorted(by_origin.items())},
        "site_chain": {"site": exported_by, "start": start,
                       "segment": [{name: entry[name] for name in SEGMENT_FIELDS} for entry in segment]},
        "checkpoints": [signed.to_dict() for signed in checkpoints],
        "public_keys": {site: public_keys[site].decode("ascii") for site in sorted(signers)},
        "case_facts": [{"position": position, "event_id": event_id}
                       for event_id, position in sorted(case_facts.items(), key=lambda item: item[1])],
    }
    bundle["seal"] = sign_payload(seal_payload(bundle), private_pem, exported_by).to_dict()
    return bundle


def dump(bundle: Mapping[str, Any]) -> str:
    return json.dumps(bundle, sort_keys=True, ensure_ascii=False, indent=2) + "\n"


def _site_chain_link(previous: str, entry: Mapping[str, Any]) -> str:
    """The site chain's own link function (``audit_chain.next_link``) over a segment entry."""
    from audit.chain import StoredFact, next_link

    fact = StoredFact(entry["position"], entry["originator_id"], entry["version"], entry["topic"], entry["digest"])
    return next_link(previous, fact)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def verify_bundle(
    data: dict[str, Any] | str | bytes,
    next_link: NextLink | None = None,
    *,
    trusted: Mapping[str, bytes] | None = None,
    require_countersignature: bool = False,
) -> list[str]:
    """Every reason the bundle does not verify, each naming what fails where. Empty: verified.

    ``next_link`` is the site chain's link function (default: ``audit_chain.next_link``).
    ``trusted`` (site -> public PEM), if given, pins the bundle's keys to keys obtained elsewhere.
    ``require_countersignature``: the last checkpoint must carry a partner's countersignature.
    """
    try:
        if isinstance(data, str | bytes):
            doc = json.loads(data, object_pairs_hook=_unique_keys)
        else:
            doc = json.loads(json.dumps(data, ensure_ascii=False))
        _canonical(doc)  # every string must be encodable: lone surrogates cannot be hashed or signed
    except (ValueError, TypeError, RecursionError) as exc:  # RecursionError: nested past any real bundle
        return [f"not valid JSON: {exc}"]
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        return [f"unknown format: {found!r} (expected {FORMAT!r})"]
    problems = shape_failures(doc, _TOP, "bundle")
    if not problems:
        problems = shape_failures(doc["site_chain"], _SITE_CHAIN, "site_chain")
    failures = problems or _Verifier(doc, next_link or _site_chain_link, trusted, require_countersignature).run()
    if isinstance(data, str | bytes) and not failures:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if text != dump(doc):
            # Same content, other bytes: not the file as exported (any changed byte must be reported).
            failures = ["file is not byte-for-byte as exported (reformatted or altered outside its values)"]
    return [_printable(reason) for reason in failures]


def _printable(reason: str) -> str:
    """One line whatever the bundle holds: control characters from its strings are shown escaped."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c)[0] == "C" else c for c in reason)


class _Verifier:
    """One pass over a well-shaped bundle; each step adds failures and what later steps need."""

    def __init__(self, doc: dict[str, Any], next_link: NextLink, trusted: Mapping[str, bytes] | None,
                 require_countersignature: bool) -> None:
        self.doc, self.next_link, self.trusted = doc, next_link, trusted
        self.require_countersignature = require_countersignature
        self.failures: list[str] = []
        self.case_id: str = doc["case_id"]
        self.site: str = doc["site_chain"]["site"]
        self.keys: dict[str, bytes] = {}
        self.used_keys: set[str] = {self.site, doc["exported_by"]}
        self.events: list[SharedEvent] = []
        self.event_ids: list[str] = []
        self.entries: dict[int, dict[str, Any]] = {}
        self.last_checkpoint: int | None = None
        self.case_uuid: UUID | None = None

    def fail(self, *reasons: str) -> None:
        self.failures.extend(reasons)

    def run(self) -> list[str]:
        self._header()
        self._keys()
        self._events()
        self._origin_chains()
        self._site_chain()
        self._checkpoints()
        self._case_facts()
        self._seal()
        unused = sorted(set(self.doc["public_keys"]) - self.used_keys)
        self.fail(*(f"public key of {site}: not used by any signature in the bundle" for site in unused))
        return self.failures

    def _header(self) -> None:
        try:
            canonical_id = str(UUID(self.case_id))
        except ValueError:
            canonical_id = ""
        if canonical_id != self.case_id:
            self.fail(f"case_id {self.case_id!r} is not a canonical UUID")
        else:
            self.case_uuid = UUID(canonical_id)
        if self.doc["exported_by"] != self.site:
            self.fail(f"exported_by {self.doc['exported_by']} is not the site chain's site {self.site}")
        try:
            parse_utc(self.doc["exported_at"], "exported_at")
        except CheckpointError as exc:
            self.fail(exc.english)

    def _keys(self) -> None:
        for site, text in self.doc["public_keys"].items():
            if not isinstance(text, str):
                self.fail(f"public key of {site}: not a string")
                continue
            try:
                pem = normalise_public_pem(text.encode("utf-8"))
            except CheckpointError:
                self.fail(f"public key of {site}: not an Ed25519 public key in PEM form")
                continue
            if pem != text.encode("utf-8"):
                self.fail(f"public key of {site}: not in canonical PEM form")
                continue
            if self.trusted is not None:
                expected = self.trusted.get(site)
                if expected is None:
                    self.fail(f"public key of {site}: the site is not among the trusted keys")
                    continue
                if key_id(expected) != key_id(pem):
                    self.fail(f"public key of {site}: key {key_id(pem)} is not the trusted key {key_id(expected)}")
                    continue
            self.keys[site] = pem

    def _events(self) -> None:
        if not self.doc["events"]:
            self.fail("the bundle holds no events")
        seen: set[tuple[str, int]] = set()
        for number, raw in enumerate(self.doc["events"], 1):
            problems = shape_failures(raw, _EVENT, f"event {number}")
            if problems:
                self.fail(*problems)
                if isinstance(raw, dict) and isinstance(raw.get("event_id"), str):
                    self.event_ids.append(raw["event_id"])
                continue
            label = f"event {number} ({raw['type']}, origin {raw['origin']} seq {raw['seq']})"
            event, why = _event_from(raw)
            if raw["case_id"] != self.case_id:
                self.fail(f"{label}: case_id {raw['case_id']} is not the bundle's case {self.case_id}")
            if raw["event_id"] in self.event_ids:
                self.fail(f"{label}: event id {raw['event_id']} appears twice")
            if (raw["origin"], raw["seq"]) in seen:
                self.fail(f"{label}: origin {raw['origin']} seq {raw['seq']} appears twice")
            seen.add((raw["origin"], raw["seq"]))
            self.event_ids.append(raw["event_id"])
            if event is None:
                self.fail(f"{label}: {why}")
                continue
            if event.hash() != raw["hash"]:
                self.fail(f"{label}: hash does not match its content")
            self.events.append(event)

    def _by_origin(self) -> dict[str, list[SharedEvent]]:
        out: dict[str, list[SharedEvent]] = {}
        for event in sorted(self.events, key=lambda e: (e.origin, e.seq)):
            out.setdefault(event.origin, []).append(event)
        return out

    def _origin_chains(self) -> None:
        stated = self.doc["origin_chains"]
        by_origin = self._by_origin()
        for origin in sorted(set(stated) - set(by_origin)):
            self.fail(f"origin {origin} chain: no events of this origin in the bundle")
        for origin, events in sorted(by_origin.items()):
            seqs = {e.seq for e in events}
            absent = sorted(set(range(1, max(seqs) + 1)) - seqs)
            if absent:
                self.fail(f"origin {origin}: seq {absent[0]} is missing")
            heads = stated.get(origin)
            if heads is None:
                self.fail(f"origin {origin} chain: missing")
                continue
            if not isinstance(heads, list) or not all(isinstance(h, str) for h in heads):
                self.fail(f"origin {origin} chain: not a list of chain heads")
                continue
            computed = chain_of(self.case_uuid or events[0].case_id, origin, events)
            if len(heads) != len(computed):
                self.fail(f"origin {origin} chain: {len(heads)} heads for {len(computed)} events")
            for event, head, expected in zip(events, heads, computed, strict=False):
                if head != expected:
                    self.fail(f"origin {origin} chain: head after seq {event.seq} differs")
                    break

    def _site_chain(self) -> None:
        chain = self.doc["site_chain"]
        previous: str | None = chain["start"]
        if not _HEX64.fullmatch(chain["start"]):
            self.fail("site chain: start link is not 64 lowercase hex characters")
        if not chain["segment"]:
            self.fail("site chain: the segment is empty")
        previous_position: int | None = None
        for number, entry in enumerate(chain["segment"], 1):
            problems = shape_failures(entry, _SEGMENT, f"site chain entry {number}")
            if problems:
                self.fail(*problems)
                previous = entry.get("link") if isinstance(entry, dict) else None
                continue
            position = entry["position"]
            for name in ("digest", "link"):
                if not _HEX64.fullmatch(entry[name]):
                    self.fail(f"site chain: {name} at position {position} is not 64 lowercase hex characters")
            if previous_position is not None and position <= previous_position:
                self.fail(f"site chain: position {position} does not come after position {previous_position}")
            if previous is not None and self._link(previous, entry) != entry["link"]:
                after = f"position {previous_position}" if previous_position is not None else "the segment's start"
                self.fail(f"site chain: link at position {position} does not follow from {after}")
            self.entries.setdefault(position, entry)
            previous, previous_position = entry["link"], position

    def _link(self, previous: str, entry: Mapping[str, Any]) -> str | None:
        try:
            return self.next_link(previous, entry)
        except (ValueError, TypeError, OverflowError, KeyError):
            return None

    def _checkpoints(self) -> None:
        last: SignedCheckpoint | None = None
        for number, raw in enumerate(self.doc["checkpoints"], 1):
            try:
                signed = SignedCheckpoint.from_dict(raw)
            except CheckpointError as exc:
                self.fail(f"checkpoint {number}: {exc.english}")
                continue
            checkpoint = signed.checkpoint
            where = f"checkpoint at position {checkpoint.position}"
            self.used_keys |= {checkpoint.site, *(c.signer for c in signed.countersignatures)}
            if checkpoint.site != self.site:
                self.fail(f"{where}: taken by site {checkpoint.site}, not the site chain's site {self.site}")
            self.fail(*(f"{where}: {reason}" for reason in checkpoint_failures(signed, self.keys)))
            entry = self.entries.get(checkpoint.position)
            if entry is None:
                self.fail(f"{where}: the position is not in the site chain segment")
            elif entry["link"] != checkpoint.head:
                self.fail(f"{where}: head differs from the site chain")
            if last is None or checkpoint.position >= last.checkpoint.position:
                last = signed
        if last is None:
            self.fail("no checkpoint: the site chain segment is not pinned by a signed checkpoint")
            return
        self.last_checkpoint = last.checkpoint.position
        if self.require_countersignature and not last.countersignatures:
            self.fail(f"checkpoint at position {self.last_checkpoint}: no partner countersignature (required)")
        after = sorted(p for p in self.entries if p > self.last_checkpoint)
        if after:
            self.fail(f"site chain: positions {after[0]}..{after[-1]} come after the last checkpoint "
                      f"(position {self.last_checkpoint}) and are not pinned by it")

    def _case_facts(self) -> None:
        by_id = {e.event_id: e for e in self.events}
        position_of: dict[str, int] = {}
        claimed: dict[int, str] = {}
        for number, raw in enumerate(self.doc["case_facts"], 1):
            problems = shape_failures(raw, _CASE_FACT, f"case fact {number}")
            if problems:
                self.fail(*problems)
                continue
            position, event_id = raw["position"], raw["event_id"]
            if event_id not in self.event_ids:
                self.fail(f"case fact at position {position}: event {event_id} is not in the bundle")
                continue
            if event_id in position_of:
                self.fail(f"event {event_id} is mapped to two site chain positions ({position_of[event_id]} "
                          f"and {position})")
                continue
            if position in claimed:
                self.fail(f"site chain position {position} is claimed by two events ({claimed[position]} "
                          f"and {event_id})")
                continue
            position_of[event_id], claimed[position] = position, event_id
            self._case_fact(event_id, position, by_id.get(event_id))
        for event_id in self.event_ids:
            if event_id not in position_of:
                self.fail(f"event {event_id} is not covered by the site chain segment")
        mine = sorted(p for p, entry in self.entries.items() if entry["originator_id"] == self.case_id)
        for position in mine:
            if position not in claimed:
                self.fail(f"site chain: position {position} holds a fact of this case (version "
                          f"{self.entries[position]['version']}) that no event in the bundle accounts for")
        for expected, position in enumerate(mine, 1):
            if self.entries[position]["version"] != expected:
                self.fail(f"site chain: the case's fact at position {position} is version "
                          f"{self.entries[position]['version']}, expected {expected}")
                break
        for origin, events in self._by_origin().items():
            stored = [(e.seq, position_of[e.event_id]) for e in events if e.event_id in position_of]
            for (seq, position), (next_seq, next_position) in itertools.pairwise(stored):
                if next_position <= position:
                    self.fail(f"origin {origin}: seq {next_seq} is stored at position {next_position}, "
                              f"not after seq {seq} (position {position})")

    def _case_fact(self, event_id: str, position: int, event: SharedEvent | None) -> None:
        entry = self.entries.get(position)
        if entry is None:
            self.fail(f"event {event_id} is not covered by the site chain segment (position {position} is not in it)")
            return
        if entry["originator_id"] != self.case_id:
            self.fail(f"event {event_id}: site chain position {position} holds a fact of {entry['originator_id']}, "
                      "not of this case")
        elif event is not None and entry["topic"] != CASE_TOPIC_PREFIX + event.type:
            self.fail(f"event {event_id}: site chain position {position} holds a {entry['topic']} fact, "
                      f"not {CASE_TOPIC_PREFIX}{event.type}")
        if self.last_checkpoint is not None and position > self.last_checkpoint:
            self.fail(f"event {event_id} at position {position} is after the last checkpoint "
                      f"(position {self.last_checkpoint})")

    def _seal(self) -> None:
        try:
            seal = Signature.from_dict(self.doc["seal"], "seal")
        except CheckpointError as exc:
            self.fail(exc.english)
            return
        self.used_keys.add(seal.signer)
        if seal.signer != self.doc["exported_by"]:
            self.fail(f"seal: made by {seal.signer}, not by the exporting site {self.doc['exported_by']}")
        pem = self.keys.get(seal.signer)
        if pem is None:
            self.fail(f"seal: no public key for site {seal.signer}")
        elif not verify_payload(seal_payload(self.doc), seal, pem):
            self.fail(f"seal by {seal.signer} invalid: the bundle is not as {seal.signer} exported it")


def _event_from(raw: Mapping[str, Any]) -> tuple[SharedEvent | None, str]:
    """The shared event a bundle entry states, if its fields are in the canonical form the hash covers."""
    try:
        case_id = UUID(raw["case_id"])
    except ValueError:
        return None, f"case_id {raw['case_id']!r} is not a UUID"
    if str(case_id) != raw["case_id"]:
        return None, f"case_id {raw['case_id']!r} is not in canonical form"
    try:
        occurred_at = parse_utc(raw["occurred_at"], "occurred_at")
    except CheckpointError as exc:
        return None, exc.english
    if not all(isinstance(v, str) for v in raw["actor"].values()):
        return None, "actor holds a value that is not a string"
    event = SharedEvent(
        case_id=case_id, origin=raw["origin"], seq=raw["seq"], lamport=raw["lamport"], event_id=raw["event_id"],
        type=raw["type"], type_version=raw["type_version"], occurred_at=occurred_at, actor=raw["actor"],
        data=raw["data"],
    )
    return event, ""
