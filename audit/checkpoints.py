"""Signed checkpoints: a site's chain head at a position, signed by the site, countersigned by partners.

The site chain (``audit_chain``) shows a rewrite only against a checkpoint kept out of the site's
reach. A checkpoint ``(site, position, head)`` signed with the site's Ed25519 key commits the site
to that head; a partner that verified the site's signature and countersigned it, and keeps its
copy, makes the commitment evidence the site alone cannot withdraw: a rewritten chain (even
re-signed by the site) no longer matches the partner's countersigned checkpoint. A partner cannot
check the head itself (it has no copy of the other site's chain); countersigning pins it in time.

Signed bytes (``Checkpoint.payload``): the JSON object
``{"head":…,"key_id":…,"position":n,"signed_at":"…+00:00","site":…,"tag":"tongban.checkpoint.v1"}``
with keys sorted, ``ensure_ascii`` off, separators ``,`` and ``:``, ``signed_at`` in UTC with
microseconds. A signature is base64 (standard alphabet, padded) of the 64-byte Ed25519 signature.
A key id is the first 16 hex characters of SHA-256 over the 32-byte raw public key.

Pure apart from the ``cryptography`` package: keys come and go as PEM bytes, nothing is read or stored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hub.domain.errors import HubError
from hub.domain.shared import canonical_json

CHECKPOINT_TAG = "tongban.checkpoint.v1"

__all__ = [
    "CHECKPOINT_TAG",
    "Checkpoint",
    "CheckpointError",
    "Signature",
    "SignedCheckpoint",
    "checkpoint_failures",
    "countersign",
    "generate_key",
    "key_id",
    "make_checkpoint",
    "normalise_public_pem",
    "parse_utc",
    "public_pem",
    "shape_failures",
    "sign",
    "sign_payload",
    "utc_text",
    "verify_payload",
    "verify_signature",
]


class CheckpointError(HubError):
    """A key, checkpoint or signature that cannot be used. ``english`` is the reason alone, for reports."""

    reason = "CHECKPOINT_INVALID"

    def __init__(self, chinese: str, english: str, *, site: str = "", position: int | None = None) -> None:
        super().__init__(f"{chinese} ({english})")
        self.english = english
        self.site = site
        self.position = position


def utc_text(moment: datetime) -> str:
    """The one text form of a time in signed and hashed bytes: UTC, microseconds (as shared events)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_utc(text: str, what: str) -> datetime:
    """``text`` as a time, only if it is the one canonical text of a UTC time (``utc_text``)."""
    try:
        moment: datetime | None = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.utcoffset() is None or utc_text(moment) != text:
        raise CheckpointError(f"{what} 不是规范的 UTC 时间", f"{what} {text!r} is not a UTC time in canonical form")
    return moment


_TYPE_NAMES = {int: "an integer", str: "a string", list: "a list", dict: "an object"}


def shape_failures(data: Any, spec: Mapping[str, type], where: str) -> list[str]:
    """What keeps ``data`` from being an object with exactly ``spec``'s fields, of ``spec``'s types."""
    if not isinstance(data, dict):
        return [f"{where}: not an object"]
    out = [f"{where}: missing field {name!r}" for name in spec if name not in data]
    out += [f"{where}: unexpected field {name!r}" for name in data if name not in spec]
    out += [f"{where}: field {name!r} is not {_TYPE_NAMES[kind]}" for name, kind in spec.items()
            if name in data and (not isinstance(data[name], kind) or (kind is int and isinstance(data[name], bool)))]
    return out


def _fields(data: Any, where: str, spec: Mapping[str, type]) -> dict[str, Any]:
    problems = shape_failures(data, spec, where)
    if problems or not isinstance(data, dict):
        raise CheckpointError(f"{where} 格式不正确", "; ".join(problems))
    return data


@dataclass(frozen=True)
class Checkpoint:
    """The site chain's head at ``position``, as the site states it, naming the key it signs with."""

    site: str
    position: int
    head: str
    signed_at: datetime
    key_id: str

    def __post_init__(self) -> None:
        if self.signed_at.utcoffset() is None:
            raise CheckpointError("检查点时间缺少时区", "signed_at must carry a time zone (UTC)",
                                  site=self.site, position=self.position)

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "position": self.position, "head": self.head,
                "signed_at": utc_text(self.signed_at), "key_id": self.key_id}

    def payload(self) -> bytes:
        """The bytes every signature over this checkpoint signs."""
        doc = {"tag": CHECKPOINT_TAG, **self.to_dict()}
        return canonical_json(doc)

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        doc = _fields(data, "checkpoint", {"site": str, "position": int, "head": str, "signed_at": str, "key_id": str})
        return cls(doc["site"], doc["position"], doc["head"], parse_utc(doc["signed_at"], "signed_at"), doc["key_id"])


@dataclass(frozen=True)
class Signature:
    """One site's Ed25519 signature: ``value`` is base64 of the signature over the signed payload."""

    signer: str
    key_id: str
    value: str

    def to_dict(self) -> dict[str, Any]:
        return {"signer": self.signer, "key_id": self.key_id, "value": self.value}

    @classmethod
    def from_dict(cls, data: Any, where: str = "signature") -> Signature:
        doc = _fields(data, where, {"signer": str, "key_id": str, "value": str})
        return cls(doc["signer"], doc["key_id"], doc["value"])


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint with the site's own signature and the countersignatures of partners that verified it."""

    checkpoint: Checkpoint
    signature: Signature
    countersignatures: tuple[Signature, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint.to_dict(), "signature": self.signature.to_dict(),
                "countersignatures": [c.to_dict() for c in self.countersignatures]}

    @classmethod
    def from_dict(cls, data: Any) -> SignedCheckpoint:
        doc = _fields(data, "signed checkpoint", {"checkpoint": dict, "signature": dict, "countersignatures": list})
        return cls(
            Checkpoint.from_dict(doc["checkpoint"]),
            Signature.from_dict(doc["signature"]),
            tuple(Signature.from_dict(c, "countersignature") for c in doc["countersignatures"]),
        )


# ---------------------------------------------------------------------------------------------- keys
def generate_key() -> bytes:
    """A new Ed25519 private key, PEM (PKCS#8, unencrypted: the caller decides how to keep it)."""
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _private(private_pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(private_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CheckpointError("私钥无法读取", f"private key cannot be read: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError("私钥不是 Ed25519 密钥", "private key is not an Ed25519 key")
    return key


def _public(public_pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CheckpointError("公钥无法读取", f"public key cannot be read: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise CheckpointError("公钥不是 Ed25519 密钥", "public key is not an Ed25519 key")
    return key


def _pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(private_pem: bytes) -> bytes:
    """The public key (PEM, SubjectPublicKeyInfo) of a private key."""
    return _pem(_private(private_pem).public_key())


def normalise_public_pem(pem: bytes) -> bytes:
    """The canonical PEM of an Ed25519 public key: a stored key must equal it byte for byte."""
    return _pem(_public(pem))


def key_id(public_pem: bytes) -> str:
    """First 16 hex characters of SHA-256 over the raw 32-byte public key: short enough to read aloud."""
    return _key_id(_public(public_pem))


# ------------------------------------------------------------------------------------------ signing
def _strict_b64(text: str) -> bytes | None:
    """Decoded bytes only if ``text`` is their one canonical base64 form (no spare bits, no stray characters)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode("ascii") == text else None


def sign_payload(payload: bytes, private_pem: bytes, signer: str) -> Signature:
    key = _private(private_pem)
    return Signature(signer, _key_id(key.public_key()), base64.b64encode(key.sign(payload)).decode("ascii"))


def verify_payload(payload: bytes, signature: Signature, public_pem: bytes) -> bool:
    """True only if ``public_pem`` is the key ``signature`` names and the signature is valid over ``payload``."""
    try:
        key = _public(public_pem)
    except CheckpointError:
        return False
    raw = _strict_b64(signature.value)
    if raw is None or signature.key_id != _key_id(key):
        return False
    try:
        key.verify(raw, payload)
    except InvalidSignature:
        return False
    return True


def sign(checkpoint: Checkpoint, private_pem: bytes, signer: str) -> Signature:
    return sign_payload(checkpoint.payload(), private_pem, signer)


def verify_signature(checkpoint: Checkpoint, signature: Signature, public_pem: bytes) -> bool:
    return verify_payload(checkpoint.payload(), signature, public_pem)


def make_checkpoint(site: str, position: int, head: str, signed_at: datetime, private_pem: bytes) -> SignedCheckpoint:
    """The site's checkpoint at ``position``, naming and signed with the site's key."""
    checkpoint = Checkpoint(site, position, head, signed_at, key_id(public_pem(private_pem)))
    return SignedCheckpoint(checkpoint, sign(checkpoint, private_pem, site))


def checkpoint_failures(signed: SignedCheckpoint, public_keys: Mapping[str, bytes]) -> list[str]:
    """Everything wrong with the signatures on ``signed``, given each site's public key. Empty: valid.

    The site's own signature must be by the site, with the key the checkpoint names; each
    countersignature must be by another site, once, and valid with that site's key.
    """
    checkpoint, signature = signed.checkpoint, signed.signature
    site = checkpoint.site
    out: list[str] = []
    if signature.signer != site:
        out.append(f"signed by {signature.signer}, not by the site {site}")
    site_pem = public_keys.get(site)
    if site_pem is None:
        out.append(f"no public key for site {site}")
    else:
        try:
            site_key_id = key_id(site_pem)
        except CheckpointError:
            site_key_id = "(unreadable)"
        if checkpoint.key_id != site_key_id:
            out.append(f"names key {checkpoint.key_id}, but the key of {site} is {site_key_id}")
        if not verify_signature(checkpoint, signature, site_pem):
            out.append(f"signature by {site} invalid")
    seen: set[str] = set()
    for counter in signed.countersignatures:
        if counter.signer == site:
            out.append(f"countersignature by {counter.signer}: a site cannot countersign its own checkpoint")
        elif counter.signer in seen:
            out.append(f"countersignature by {counter.signer} appears twice")
        elif (pem := public_keys.get(counter.signer)) is None:
            out.append(f"countersignature by {counter.signer}: no public key for site {counter.signer}")
        elif not verify_signature(checkpoint, counter, pem):
            out.append(f"countersignature by {counter.signer} invalid")
        seen.add(counter.signer)
    return out


def countersign(
    signed: SignedCheckpoint, private_pem: bytes, signer: str, trusted: Mapping[str, bytes]
) -> SignedCheckpoint:
    """``signed`` with ``signer``'s countersignature added, once the site's own signature checks out.

    ``trusted`` maps site codes to the public keys the countersigning partner holds for them (from
    the partner agreement, not from the checkpoint's sender).
    """
    checkpoint = signed.checkpoint
    site, position = checkpoint.site, checkpoint.position
    if site not in trusted:
        raise CheckpointError(f"站点 {site} 的公钥不在受信任列表中，不能会签",
                              f"site {site} is not trusted: no public key for it", site=site, position=position)
    problems = checkpoint_failures(replace(signed, countersignatures=()), {site: trusted[site]})
    if problems:
        raise CheckpointError(f"站点 {site} 在通知 {position} 的检查点签名无效，不能会签",
                              f"checkpoint of {site} at position {position}: {'; '.join(problems)}",
                              site=site, position=position)
    if signer == site:
        raise CheckpointError("站点不能会签自己的检查点", f"{signer} cannot countersign its own checkpoint",
                              site=site, position=position)
    if any(c.signer == signer for c in signed.countersignatures):
        raise CheckpointError(f"站点 {signer} 已会签此检查点", f"{signer} has already countersigned this checkpoint",
                              site=site, position=position)
    return replace(signed, countersignatures=(*signed.countersignatures, sign(checkpoint, private_pem, signer)))
