"""Signed checkpoints: Ed25519 keys, the signed payload, signatures and partner countersignatures."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from audit.checkpoints import (
    Checkpoint,
    CheckpointError,
    Signature,
    SignedCheckpoint,
    checkpoint_failures,
    countersign,
    generate_key,
    key_id,
    make_checkpoint,
    normalise_public_pem,
    public_pem,
    sign,
    verify_signature,
)

PDS, SZ, HZ = "410400", "320500", "330100"
PDS_KEY, SZ_KEY, HZ_KEY = generate_key(), generate_key(), generate_key()
PDS_PUB, SZ_PUB, HZ_PUB = public_pem(PDS_KEY), public_pem(SZ_KEY), public_pem(HZ_KEY)
HEAD = "ab" * 32
AT = datetime(2026, 11, 29, 5, 50, 39, 341076, tzinfo=UTC)


def checkpoint(**changes: object) -> Checkpoint:
    made = Checkpoint(PDS, 40, HEAD, AT, key_id(PDS_PUB))
    return replace(made, **changes)  # type: ignore[arg-type]


def test_key_id_is_16_hex_characters_of_the_raw_public_key_and_stable() -> None:
    assert len(key_id(PDS_PUB)) == 16
    assert int(key_id(PDS_PUB), 16) >= 0
    assert key_id(PDS_PUB) == key_id(public_pem(PDS_KEY)) != key_id(SZ_PUB)
    assert normalise_public_pem(PDS_PUB) == PDS_PUB
    assert PDS_PUB.startswith(b"-----BEGIN PUBLIC KEY-----")


def test_payload_is_canonical_json_with_the_tag() -> None:
    assert checkpoint().payload() == (
        '{"head":"' + HEAD + '","key_id":"' + key_id(PDS_PUB) + '","position":40,'
        '"signed_at":"2026-11-29T05:50:39.341076+00:00","site":"410400","tag":"tongban.checkpoint.v1"}'
    ).encode()
    beijing = timezone(timedelta(hours=8))
    assert checkpoint(signed_at=AT.astimezone(beijing)).payload() == checkpoint().payload()


def test_a_signature_verifies_with_the_signers_key_only() -> None:
    signature = sign(checkpoint(), PDS_KEY, PDS)
    assert signature.signer == PDS and signature.key_id == key_id(PDS_PUB)
    assert verify_signature(checkpoint(), signature, PDS_PUB)
    assert not verify_signature(checkpoint(), signature, SZ_PUB)
    assert not verify_signature(checkpoint(), signature, b"not a key")


@pytest.mark.parametrize("change", [
    {"position": 41}, {"head": "ac" + "ab" * 31}, {"site": SZ}, {"signed_at": AT + timedelta(microseconds=1)},
    {"key_id": "0" * 16},
])
def test_a_changed_checkpoint_no_longer_verifies(change: dict[str, object]) -> None:
    signature = sign(checkpoint(), PDS_KEY, PDS)
    assert not verify_signature(checkpoint(**change), signature, PDS_PUB)


def test_a_changed_signature_no_longer_verifies() -> None:
    signature = sign(checkpoint(), PDS_KEY, PDS)
    raw = bytearray(base64.b64decode(signature.value))
    raw[0] ^= 1
    assert not verify_signature(checkpoint(), replace(signature, value=base64.b64encode(raw).decode()), PDS_PUB)
    # The last character before "==" carries 4 unused bits: a different character can decode to the
    # same bytes. Only the canonical encoding is accepted.
    last = signature.value[-3]
    alias = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = alias[(alias.index(last) & ~0xF) | ((alias.index(last) + 1) & 0xF)]
    assert base64.b64decode(signature.value[:-3] + twin + "==") == base64.b64decode(signature.value)
    assert not verify_signature(checkpoint(), replace(signature, value=signature.value[:-3] + twin + "=="), PDS_PUB)
    assert not verify_signature(checkpoint(), replace(signature, value="not base64!"), PDS_PUB)
    assert not verify_signature(checkpoint(), replace(signature, key_id=key_id(SZ_PUB)), PDS_PUB)


def test_keys_that_are_not_ed25519_are_refused_with_a_clear_error() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    pem = other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
    with pytest.raises(CheckpointError, match="not an Ed25519 key"):
        sign(checkpoint(), pem, PDS)
    pub = other.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    assert not verify_signature(checkpoint(), sign(checkpoint(), PDS_KEY, PDS), pub)
    with pytest.raises(CheckpointError, match="cannot be read"):
        public_pem(b"garbage")


def test_signed_at_must_carry_a_time_zone() -> None:
    with pytest.raises(CheckpointError, match="time zone"):
        Checkpoint(PDS, 1, HEAD, datetime(2026, 11, 29), "0" * 16)


def test_json_round_trip_and_strict_parsing() -> None:
    signed = countersign(make_checkpoint(PDS, 40, HEAD, AT, PDS_KEY), SZ_KEY, SZ, {PDS: PDS_PUB})
    assert SignedCheckpoint.from_dict(signed.to_dict()) == signed
    doc = signed.to_dict()
    doc["checkpoint"]["signed_at"] = "2026-11-29T05:50:39.341076-00:00"  # same instant, not the canonical text
    with pytest.raises(CheckpointError, match="canonical form"):
        SignedCheckpoint.from_dict(doc)
    doc = signed.to_dict()
    doc["checkpoint"]["position"] = True
    with pytest.raises(CheckpointError, match="'position' is not an integer"):
        SignedCheckpoint.from_dict(doc)
    doc = signed.to_dict()
    doc["signature"]["extra"] = "x"
    with pytest.raises(CheckpointError, match="unexpected field 'extra'"):
        SignedCheckpoint.from_dict(doc)


def test_countersign_appends_a_partner_signature_after_verifying_the_sites() -> None:
    signed = make_checkpoint(PDS, 40, HEAD, AT, PDS_KEY)
    assert checkpoint_failures(signed, {PDS: PDS_PUB}) == []
    once = countersign(signed, SZ_KEY, SZ, {PDS: PDS_PUB})
    twice = countersign(once, HZ_KEY, HZ, {PDS: PDS_PUB})
    assert [c.signer for c in twice.countersignatures] == [SZ, HZ]
    assert verify_signature(twice.checkpoint, twice.countersignatures[0], SZ_PUB)
    assert checkpoint_failures(twice, {PDS: PDS_PUB, SZ: SZ_PUB, HZ: HZ_PUB}) == []


def test_countersign_refuses_an_unknown_site() -> None:
    with pytest.raises(CheckpointError, match="site 410400 is not trusted") as caught:
        countersign(make_checkpoint(PDS, 40, HEAD, AT, PDS_KEY), SZ_KEY, SZ, {HZ: HZ_PUB})
    assert (caught.value.site, caught.value.position) == (PDS, 40)


def test_countersign_refuses_a_signature_by_another_key() -> None:
    forged = make_checkpoint(PDS, 40, HEAD, AT, HZ_KEY)  # a checkpoint claiming 410400, signed with 330100's key
    with pytest.raises(CheckpointError, match="signature by 410400 invalid"):
        countersign(forged, SZ_KEY, SZ, {PDS: PDS_PUB})


def test_countersign_refuses_a_tampered_checkpoint() -> None:
    signed = make_checkpoint(PDS, 40, HEAD, AT, PDS_KEY)
    tampered = replace(signed, checkpoint=replace(signed.checkpoint, head="cd" * 32))
    with pytest.raises(CheckpointError, match="checkpoint of 410400 at position 40: signature by 410400 invalid"):
        countersign(tampered, SZ_KEY, SZ, {PDS: PDS_PUB})


def test_countersign_refuses_the_site_itself_and_a_second_countersignature() -> None:
    signed = make_checkpoint(PDS, 40, HEAD, AT, PDS_KEY)
    with pytest.raises(CheckpointError, match="own checkpoint"):
        countersign(signed, PDS_KEY, PDS, {PDS: PDS_PUB})
    once = countersign(signed, SZ_KEY, SZ, {PDS: PDS_PUB})
    with pytest.raises(CheckpointError, match="already countersigned"):
        countersign(once, SZ_KEY, SZ, {PDS: PDS_PUB})


def test_checkpoint_failures_name_each_bad_signature() -> None:
    signed = countersign(make_checkpoint(PDS, 40, HEAD, AT, PDS_KEY), SZ_KEY, SZ, {PDS: PDS_PUB})
    bad_counter = replace(signed.countersignatures[0], value=sign(replace(signed.checkpoint, position=41),
                                                                  SZ_KEY, SZ).value)
    keys = {PDS: PDS_PUB, SZ: SZ_PUB}
    assert checkpoint_failures(replace(signed, countersignatures=(bad_counter,)), keys) == [
        "countersignature by 320500 invalid"
    ]
    assert checkpoint_failures(signed, {PDS: PDS_PUB}) == [
        "countersignature by 320500: no public key for site 320500"
    ]
    assert checkpoint_failures(replace(signed, signature=Signature(SZ, key_id(SZ_PUB), signed.signature.value)),
                               keys) == ["signed by 320500, not by the site 410400", "signature by 410400 invalid"]
    assert checkpoint_failures(signed, {PDS: SZ_PUB, SZ: SZ_PUB}) == [
        f"names key {key_id(PDS_PUB)}, but the key of 410400 is {key_id(SZ_PUB)}", "signature by 410400 invalid",
    ]
