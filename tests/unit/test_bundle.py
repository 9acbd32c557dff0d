"""The offline proof bundle: a clean bundle verifies; every change to its meaning is reported, by name."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from audit.bundle import FORMAT, build_bundle, dump, seal_payload, verify_bundle
from audit.chain import ChainLink, StoredFact, extend, fact_digest
from audit.checkpoints import (
    SignedCheckpoint,
    countersign,
    generate_key,
    key_id,
    make_checkpoint,
    public_pem,
    sign_payload,
)
from hub.domain.shared import SharedEvent, chain_of

PDS, SZ = "410400", "320500"
PDS_KEY, SZ_KEY = generate_key(), generate_key()
KEYS = {PDS: public_pem(PDS_KEY), SZ: public_pem(SZ_KEY)}
CASE = UUID("019ad2f1-5b3c-7e21-9a4f-3c2d1e0f4a5b")
OTHER_CASE = "019ad2f1-0000-7000-8000-000000000001"
T0 = datetime(2026, 11, 29, 5, 50, 39, 341076, tzinfo=UTC)
CLERK = {"staff_id": "PDS-0107", "role": "window_clerk", "site": PDS, "name": "李敏"}
HANDLER = {"staff_id": "SZ-0001", "role": "handler", "site": SZ, "name": "周婷"}


def event(n: int, origin: str, seq: int, kind: str, data: dict[str, Any]) -> SharedEvent:
    return SharedEvent(
        case_id=CASE, origin=origin, seq=seq, lamport=n, event_id=f"019ad2f1-5b3c-7e21-9a4f-00000000000{n}",
        type=kind, type_version=2, occurred_at=T0 + timedelta(hours=n), actor=CLERK if origin == PDS else HANDLER,
        data=data,
    )


EVENTS = [
    event(1, PDS, 1, "CaseReceived", {"case_number": "41040020261129452960018", "applicant": {"name": "王建国"}}),
    event(2, PDS, 2, "CaseForwarded", {"details": {"courier": "EMS", "tracking_number": "1173945026718"}}),
    event(3, SZ, 1, "CaseSignedIn", {"details": {}}),
    event(4, SZ, 2, "SupplementRequested", {"details": {"missing_materials": ["参保缴费凭证"], "note": ""}}),
    event(5, PDS, 3, "SupplementSubmitted", {"details": {"materials": [{"copies": 1, "name": "参保缴费凭证"}]}}),
]


def fact(position: int, originator: str, version: int, topic: str) -> StoredFact:
    state = f"stored bytes of {originator} v{version}".encode()
    return StoredFact(position, originator, version, topic, fact_digest(originator, version, topic, state))


def case_fact(position: int, e: SharedEvent, version: int) -> StoredFact:
    return fact(position, str(CASE), version, f"tongban.case:{e.type}")


# 410400's log: the case's five events among other cases' and claims' events; 6 was a rolled-back insert.
FACTS = [
    fact(1, OTHER_CASE, 1, "tongban.case:CaseReceived"),
    case_fact(2, EVENTS[0], 1),
    fact(3, "claim-41040020261129452960018", 1, "tongban.claim:Claimed"),
    case_fact(4, EVENTS[1], 2),
    fact(5, OTHER_CASE, 2, "tongban.case:CaseForwarded"),
    case_fact(7, EVENTS[2], 3),
    case_fact(8, EVENTS[3], 4),
    fact(9, OTHER_CASE, 3, "tongban.case:CaseSignedIn"),
    case_fact(10, EVENTS[4], 5),
    fact(11, OTHER_CASE, 4, "tongban.case:CaseAccepted"),
]
CASE_FACTS = {EVENTS[0].event_id: 2, EVENTS[1].event_id: 4, EVENTS[2].event_id: 7, EVENTS[3].event_id: 8,
              EVENTS[4].event_id: 10}
LINKS = extend(PDS, None, FACTS)


def checkpoint_at(links: list[ChainLink], position: int, key: bytes = PDS_KEY) -> SignedCheckpoint:
    link = next(link for link in links if link.position == position)
    signed = make_checkpoint(PDS, position, link.link, T0 + timedelta(days=position), key)
    return countersign(signed, SZ_KEY, SZ, {PDS: public_pem(key)})


def make(links: list[ChainLink] = LINKS, events: list[SharedEvent] = EVENTS, **changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "case_id": CASE, "exported_by": PDS, "exported_at": T0 + timedelta(days=30), "events": events,
        "segment": [asdict(link) for link in links[1:]], "start": links[0].link,
        "checkpoints": [checkpoint_at(links, 8), checkpoint_at(links, 11)], "public_keys": KEYS,
        "case_facts": CASE_FACTS, "private_pem": PDS_KEY,
    }
    return build_bundle(**{**args, **changes})


BUNDLE = make()
TEXT = dump(BUNDLE)


def reseal(bundle: dict[str, Any]) -> dict[str, Any]:
    """What the exporting site itself can do after tampering: seal the bundle again with its own key."""
    bundle["seal"] = sign_payload(seal_payload(bundle), PDS_KEY, PDS).to_dict()
    return bundle


def tampered(change: Any) -> dict[str, Any]:
    bundle = copy.deepcopy(BUNDLE)
    change(bundle)
    return reseal(bundle)


def test_a_clean_bundle_verifies_as_dict_and_as_text() -> None:
    assert verify_bundle(BUNDLE) == []
    assert verify_bundle(TEXT) == []
    assert verify_bundle(TEXT.encode()) == []
    assert verify_bundle(TEXT, trusted=KEYS, require_countersignature=True) == []


def test_a_layout_only_change_to_the_file_is_reported_too() -> None:
    reindented = TEXT.replace('\n  "', '\n   "', 1)
    assert reindented != TEXT
    assert verify_bundle(reindented) == [
        "file is not byte-for-byte as exported (reformatted or altered outside its values)"
    ]


def test_the_format_as_documented() -> None:
    assert BUNDLE["format"] == FORMAT
    assert [e["type"] for e in BUNDLE["events"]] == [e.type for e in EVENTS]
    assert BUNDLE["events"][0]["hash"] == EVENTS[0].hash()
    assert set(BUNDLE["origin_chains"]) == {PDS, SZ} and len(BUNDLE["origin_chains"][PDS]) == 3
    assert BUNDLE["site_chain"]["start"] == LINKS[0].link
    assert [s["position"] for s in BUNDLE["site_chain"]["segment"]] == [2, 3, 4, 5, 7, 8, 9, 10, 11]
    assert [c["checkpoint"]["position"] for c in BUNDLE["checkpoints"]] == [8, 11]
    assert [f["position"] for f in BUNDLE["case_facts"]] == [2, 4, 7, 8, 10]
    assert set(BUNDLE["public_keys"]) == {PDS, SZ}
    assert "王建国" in TEXT  # ensure_ascii off: readable as printed
    assert json.loads(TEXT) == BUNDLE


def test_changed_event_content_names_the_event_and_its_origin_chain() -> None:
    def change(b: dict[str, Any]) -> None:
        b["events"][2]["data"]["details"] = {"note": "签收"}

    assert verify_bundle(tampered(change)) == [
        "event 3 (CaseSignedIn, origin 320500 seq 1): hash does not match its content",
        "origin 320500 chain: head after seq 1 differs",
    ]


def test_an_event_rewritten_with_its_hash_and_chain_recomputed_is_still_caught_by_the_site_chain() -> None:
    def change(b: dict[str, Any]) -> None:
        b["events"][1]["type"] = "IntakeRefused"
        rewritten = SharedEvent(**{**asdict(EVENTS[1]), "type": "IntakeRefused"})
        b["events"][1]["hash"] = rewritten.hash()
        b["origin_chains"][PDS] = chain_of(CASE, PDS, [EVENTS[0], rewritten, EVENTS[4]])

    assert verify_bundle(tampered(change)) == [
        f"event {EVENTS[1].event_id}: site chain position 4 holds a tongban.case:CaseForwarded fact, "
        "not tongban.case:IntakeRefused"
    ]


def test_a_removed_event_is_reported_by_its_origin_chain_and_the_site_chain() -> None:
    def change(b: dict[str, Any]) -> None:
        del b["events"][3]
        del b["case_facts"][3]

    assert verify_bundle(tampered(change)) == [
        "origin 320500 chain: 2 heads for 1 events",
        "site chain: position 8 holds a fact of this case (version 4) that no event in the bundle accounts for",
    ]


def test_an_event_without_a_site_chain_fact_is_not_covered() -> None:
    def change(b: dict[str, Any]) -> None:
        del b["case_facts"][4]

    assert verify_bundle(tampered(change)) == [
        f"event {EVENTS[4].event_id} is not covered by the site chain segment",
        "site chain: position 10 holds a fact of this case (version 5) that no event in the bundle accounts for",
    ]


def test_an_edited_site_chain_fact_breaks_the_link_after_the_gap() -> None:
    def change(b: dict[str, Any]) -> None:
        b["site_chain"]["segment"][4]["digest"] = "00" * 32  # position 7, after the gap at 6

    assert verify_bundle(tampered(change)) == ["site chain: link at position 7 does not follow from position 5"]


def test_a_rewritten_site_chain_resigned_by_the_site_fails_the_partners_countersignature() -> None:
    edited = [*FACTS[:4], fact(5, OTHER_CASE, 2, "tongban.case:CaseRefused"), *FACTS[5:]]
    rewritten = extend(PDS, None, edited)  # every link recomputed: internally consistent
    bundle = make(links=rewritten)
    old = {c["checkpoint"]["position"]: c for c in BUNDLE["checkpoints"]}
    for signed in bundle["checkpoints"]:  # the site re-signs, but keeps the partner's old countersignature
        signed["countersignatures"] = old[signed["checkpoint"]["position"]]["countersignatures"]
    assert verify_bundle(reseal(bundle)) == [
        "checkpoint at position 8: countersignature by 320500 invalid",
        "checkpoint at position 11: countersignature by 320500 invalid",
    ]
    for signed in bundle["checkpoints"]:
        signed["countersignatures"] = []
    del bundle["public_keys"][SZ]
    assert verify_bundle(reseal(bundle)) == []  # without a partner's countersignature it is only the site's word
    assert verify_bundle(bundle, require_countersignature=True) == [
        "checkpoint at position 11: no partner countersignature (required)"
    ]


def test_checkpoint_head_and_signatures_are_checked_against_the_chain() -> None:
    def change(b: dict[str, Any]) -> None:
        b["checkpoints"][1]["checkpoint"]["head"] = LINKS[7].link

    assert verify_bundle(tampered(change)) == [
        "checkpoint at position 11: signature by 410400 invalid",
        "checkpoint at position 11: countersignature by 320500 invalid",
        "checkpoint at position 11: head differs from the site chain",
    ]


def test_links_after_the_last_checkpoint_are_not_pinned() -> None:
    bundle = make(checkpoints=[checkpoint_at(LINKS, 8)])
    assert verify_bundle(bundle) == [
        "site chain: positions 9..11 come after the last checkpoint (position 8) and are not pinned by it",
        f"event {EVENTS[4].event_id} at position 10 is after the last checkpoint (position 8)",
    ]
    assert verify_bundle(make(checkpoints=[])) == [
        "no checkpoint: the site chain segment is not pinned by a signed checkpoint"
    ]


def test_keys_can_be_pinned_to_keys_obtained_elsewhere() -> None:
    other = public_pem(generate_key())
    assert verify_bundle(BUNDLE, trusted={PDS: KEYS[PDS], SZ: other}) == [
        f"public key of 320500: key {key_id(KEYS[SZ])} is not the trusted key {key_id(other)}",
        "checkpoint at position 8: countersignature by 320500: no public key for site 320500",
        "checkpoint at position 11: countersignature by 320500: no public key for site 320500",
    ]


def test_the_seal_binds_what_only_the_exporter_states() -> None:
    bundle = copy.deepcopy(BUNDLE)
    bundle["exported_at"] = utc_plus(bundle["exported_at"])
    assert verify_bundle(bundle) == ["seal by 410400 invalid: the bundle is not as 410400 exported it"]


def utc_plus(text: str) -> str:
    return (datetime.fromisoformat(text) + timedelta(seconds=1)).isoformat(timespec="microseconds")


def test_not_json_and_unknown_format() -> None:
    assert verify_bundle(TEXT[:-10])[0].startswith("not valid JSON: ")
    assert verify_bundle('{"a": 1, "a": 2}') == ["not valid JSON: duplicate key 'a'"]
    assert verify_bundle(b"\xff" + TEXT.encode())[0].startswith("not valid JSON: ")
    assert verify_bundle({**BUNDLE, "format": "tongban.audit-bundle.v2"}) == [
        "unknown format: 'tongban.audit-bundle.v2' (expected 'tongban.audit-bundle.v1')"
    ]
    assert verify_bundle("[]") == ["unknown format: 'list' (expected 'tongban.audit-bundle.v1')"]
    assert verify_bundle({k: v for k, v in BUNDLE.items() if k != "case_facts"}) == [
        "bundle: missing field 'case_facts'"
    ]


def stand_in_link(previous: str, entry: Any) -> str:
    """A simple link function of our own: the bundle does not care which chain function a site uses."""
    fact = {k: entry[k] for k in ("position", "originator_id", "version", "topic", "digest")}
    return hashlib.sha256((previous + json.dumps(fact, sort_keys=True)).encode()).hexdigest()


def test_the_link_function_is_a_parameter() -> None:
    start = previous = hashlib.sha256(b"stand-in genesis").hexdigest()
    segment = []
    for f in FACTS[1:]:
        previous = stand_in_link(previous, asdict(f))
        segment.append({**asdict(f), "link": previous})
    checkpoint = countersign(make_checkpoint(PDS, 11, previous, T0, PDS_KEY), SZ_KEY, SZ, {PDS: KEYS[PDS]})
    bundle = make(segment=segment, start=start, checkpoints=[checkpoint])
    assert verify_bundle(bundle, stand_in_link) == []
    assert "site chain: link at position 2 does not follow from the segment's start" in verify_bundle(bundle)


def test_a_case_fact_pointing_at_another_record_is_named() -> None:
    def change(b: dict[str, Any]) -> None:
        b["case_facts"][1]["position"] = 3

    assert verify_bundle(tampered(change)) == [
        f"event {EVENTS[1].event_id}: site chain position 3 holds a fact of claim-41040020261129452960018, "
        "not of this case",
        "site chain: position 4 holds a fact of this case (version 2) that no event in the bundle accounts for",
    ]


# ------------------------------------------------------------------------------------ properties
def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every string and integer value, and every key of a map whose keys are data, as a path."""
    if isinstance(node, dict):
        out = []
        keyed_by_data = path in (("origin_chains",), ("public_keys",)) or (
            len(path) >= 3 and path[0] == "events" and path[2] in ("data", "actor")
        )
        for key, value in node.items():
            if keyed_by_data:
                out.append((*path, ("key", key)))
            out += _leaves(value, (*path, key))
        return out
    if isinstance(node, list):
        return [leaf for i, item in enumerate(node) for leaf in _leaves(item, (*path, i))]
    return [path] if isinstance(node, str | int) and not isinstance(node, bool) else []


LEAVES = _leaves(BUNDLE)
ALPHABET = "0123456789abcdefABCDEF-:+. zZ=/\n王"


def _flip(text: str, index: int, char: str) -> str:
    index %= max(len(text), 1)
    return text[:index] + char + text[index + 1:] if text else char


def _mutate(bundle: dict[str, Any], path: tuple[Any, ...], index: int, char: str) -> None:
    *parents, last = path
    node: Any = bundle
    for step in parents:
        node = node[step]
    if isinstance(last, tuple):  # a data key: rename it
        key = last[1]
        new = _flip(key, index, char)
        assume(new != key and new not in node)
        node[new] = node.pop(key)
        return
    value = node[last]
    if isinstance(value, int):
        new_value: Any = int(_flip(str(value), index, char)) if char.isdigit() else value + 1 + index % 7
    else:
        new_value = _flip(value, index, char)
    assume(new_value != value)
    node[last] = new_value


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(LEAVES), st.integers(0, 500), st.sampled_from(ALPHABET), st.booleans())
def test_one_changed_character_in_any_value_is_reported(
    path: tuple[Any, ...], index: int, char: str, resealed: bool
) -> None:
    bundle = copy.deepcopy(BUNDLE)
    _mutate(bundle, path, index, char)
    if resealed and path[0] not in ("seal", "exported_at"):
        # Even the exporting site, re-sealing after the change, is caught by a check of the content.
        reseal(bundle)
        failures = verify_bundle(bundle)
        assert failures and not all(f.startswith("seal") for f in failures), (path, failures)
    else:
        failures = verify_bundle(bundle)
        assert failures, path
    assert all(isinstance(f, str) and f and "\n" not in f for f in failures)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(TEXT.encode()) - 1), st.integers(0, 255))
def test_one_changed_byte_of_the_file_is_reported(index: int, value: int) -> None:
    raw = bytearray(TEXT.encode())
    assume(raw[index] != value)
    raw[index] = value
    failures = verify_bundle(bytes(raw))  # layout-only changes too: the file must be as exported
    assert failures, bytes(raw[max(0, index - 40): index + 40]).decode(errors="replace")


@pytest.mark.parametrize(("path", "expected"), [
    (("events", 0, "seq"), "event 1 (CaseReceived, origin 410400 seq 2): hash does not match its content"),
    (("events", 3, "hash"), "event 4 (SupplementRequested, origin 320500 seq 2): hash does not match its content"),
    (("origin_chains", PDS, 2), "origin 410400 chain: head after seq 3 differs"),
    (("site_chain", "segment", 3, "link"), "site chain: link at position 5 does not follow from position 4"),
    (("site_chain", "start"), "site chain: link at position 2 does not follow from the segment's start"),
    (("checkpoints", 0, "checkpoint", "position"), "checkpoint at position 9: signature by 410400 invalid"),
    (("checkpoints", 0, "signature", "value"), "checkpoint at position 8: signature by 410400 invalid"),
    (("checkpoints", 1, "countersignatures", 0, "value"),
     "checkpoint at position 11: countersignature by 320500 invalid"),
    (("case_facts", 2, "position"), f"event {EVENTS[2].event_id} is not covered by the site chain segment "
                                    "(position 6 is not in it)"),
    (("case_id",), f"event 1 (CaseReceived, origin 410400 seq 1): case_id {CASE} is not the bundle's case "
                   "119ad2f1-5b3c-7e21-9a4f-3c2d1e0f4a5b"),
])
def test_each_failure_names_what_failed(path: tuple[Any, ...], expected: str) -> None:
    bundle = copy.deepcopy(BUNDLE)
    *parents, last = path
    node: Any = bundle
    for step in parents:
        node = node[step]
    value = node[last]
    if isinstance(value, int):
        node[last] = value + 1 if last != "position" or value != 7 else 6
    else:
        node[last] = ("1" if value[0] != "1" else "2") + value[1:]
        if last == "value":  # keep it valid base64 of a different signature
            node[last] = ("B" if value[0] != "B" else "C") + value[1:]
    assert expected in verify_bundle(reseal(bundle))


def test_a_bundle_nested_past_any_real_one_is_refused_not_a_crash() -> None:
    failures = verify_bundle("[" * 100_000 + "]" * 100_000)
    assert len(failures) == 1 and failures[0].startswith("not valid JSON")
