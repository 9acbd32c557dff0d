"""Sealing NATS payloads for the receiving site, so the JetStream store never holds an event in the clear.

Every payload (events and receipts alike) travels as ``seal(kind, receiver, message_id, plaintext)``:
AES-256-GCM under a key only the two sites can compute, with the sender, the receiver, the kind and
the message id bound as associated data. The receiver refuses whatever it cannot open (tampered,
sealed for another site or kind, under another message id, by a key that is not the sender's) and
parks it.

Keys come from the site certificates, so there is no new secret to hand out or rotate: the pair secret
is ECDH (P-256) between the sender's site key and the receiver's certificate public key, the same on
both sides; each message draws 16 random bytes of salt and derives its own key and nonce with
HKDF-SHA256 over a context naming the direction (``sender>receiver``), so a key encrypts one message
and the 2**32 random-nonce limit of a long-lived GCM key never applies. A partner's certificate is
read from the certs dir (``<code>.pem``) and must be issued by our CA and name that site. Receipts
carry no PII, but are sealed too: one rule for every payload, and a receipt cannot be forged by a
third site even if it got past the subject permissions.

What it does not give: forward secrecy (static keys; a leaked site key opens what is still stored,
which on a work-queue stream is the backlog and the parked messages).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from adapters.tls import TlsError, TlsFiles, site_key, site_public_key

__all__ = ["SEAL_VERSION", "Sealer", "Unsealable"]

SEAL_VERSION = 1
_SALT = 16
_CONTEXT = b"tongban.nats.seal.v1"


class Unsealable(Exception):
    """A payload that cannot be opened; ``reason`` is a stable code (``unsealable``, ``no_partner_key``)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def _associated(kind: str, sender: str, receiver: str, message_id: str) -> bytes:
    return b"\0".join((_CONTEXT, kind.encode(), sender.encode(), receiver.encode(), message_id.encode()))


def _key_and_nonce(secret: bytes, salt: bytes, sender: str, receiver: str) -> tuple[bytes, bytes]:
    info = _CONTEXT + b"\0" + f"{sender}>{receiver}".encode()
    material = HKDF(algorithm=hashes.SHA256(), length=44, salt=salt, info=info).derive(secret)
    return material[:32], material[32:]


class Sealer:
    """One site's sealing: its private key, the CA, and where its partners' certificates are.

    Thread-safe; partners' pair secrets are computed once and kept. A partner's certificate replaced on
    disk is read again after a failure to open (so a rotated certificate needs no restart).
    """

    def __init__(self, site: str, key: ec.EllipticCurvePrivateKey, ca: Path, certs_dir: Path) -> None:
        self.site, self._key, self._ca, self._certs_dir = site, key, ca, certs_dir
        self._secrets: dict[str, bytes] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_site(cls, certs_dir: Path, site: str) -> Sealer:
        files = TlsFiles.for_site(certs_dir, site)
        return cls(site, site_key(files), files.ca, certs_dir)

    def seal(self, kind: str, receiver: str, message_id: str, plaintext: bytes) -> bytes:
        """``version || salt || AES-GCM(plaintext)`` for ``receiver``. TlsError if its certificate is unusable."""
        salt = os.urandom(_SALT)
        key, nonce = _key_and_nonce(self._secret(receiver), salt, self.site, receiver)
        sealed = AESGCM(key).encrypt(nonce, plaintext, _associated(kind, self.site, receiver, message_id))
        return bytes([SEAL_VERSION]) + salt + sealed

    def open(self, kind: str, sender: str, message_id: str, sealed: bytes) -> bytes:
        """The plaintext ``sender`` sealed for us under ``message_id``; Unsealable otherwise."""
        if len(sealed) < 1 + _SALT + 16 or sealed[0] != SEAL_VERSION:
            raise Unsealable("unsealable", "not a sealed payload of a known version")
        salt, body = sealed[1:1 + _SALT], sealed[1 + _SALT:]
        for fresh in (False, True):
            try:
                secret = self._secret(sender, fresh=fresh)
            except TlsError as error:
                raise Unsealable("no_partner_key", str(error)) from None
            key, nonce = _key_and_nonce(secret, salt, sender, self.site)
            try:
                return AESGCM(key).decrypt(nonce, body, _associated(kind, sender, self.site, message_id))
            except InvalidTag:
                continue
        raise Unsealable("unsealable", f"not sealed by {sender} for {self.site} as this {kind} message")

    def _secret(self, partner: str, fresh: bool = False) -> bytes:
        with self._lock:
            secret = None if fresh else self._secrets.get(partner)
            if secret is None:
                public = site_public_key(self._ca, self._certs_dir / f"{partner}.pem", partner)
                secret = self._key.exchange(ec.ECDH(), public)
                self._secrets[partner] = secret
            return secret
