"""Sealing NATS payloads for the receiving site (adapters/exchange/nats_channel/sealing.py): only the
receiver opens what a sender sealed for it, under the same kind and message id, untampered."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.exchange.nats_channel.sealing import Sealer, Unsealable
from adapters.launcher import make_certs
from adapters.tls import create_ca, issue_site_cert
from tests.builders import HANDLING, ID_NUMBER, OTHER, RECEIVING

PLAIN = f'{{"id_number":"{ID_NUMBER}"}}'.encode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certs(tmp_path_factory.mktemp("certs"), RECEIVING, HANDLING, OTHER)


def sealers(certs: Path) -> tuple[Sealer, Sealer, Sealer]:
    return Sealer.for_site(certs, RECEIVING), Sealer.for_site(certs, HANDLING), Sealer.for_site(certs, OTHER)


def test_the_receiver_opens_what_was_sealed_for_it_and_no_plaintext_shows(certs: Path) -> None:
    pds, sz, _hz = sealers(certs)
    sealed = pds.seal("events", HANDLING, "event-1", PLAIN)
    assert ID_NUMBER.encode() not in sealed
    assert sz.open("events", RECEIVING, "event-1", sealed) == PLAIN
    assert pds.seal("events", HANDLING, "event-1", PLAIN) != sealed  # a fresh salt each time


def test_a_tampered_ciphertext_is_refused(certs: Path) -> None:
    pds, sz, _hz = sealers(certs)
    sealed = bytearray(pds.seal("events", HANDLING, "event-1", PLAIN))
    for where in (1, 20, len(sealed) - 1):  # the salt, the ciphertext, the tag
        tampered = bytearray(sealed)
        tampered[where] ^= 0x01
        with pytest.raises(Unsealable) as refused:
            sz.open("events", RECEIVING, "event-1", bytes(tampered))
        assert refused.value.reason == "unsealable"
    with pytest.raises(Unsealable):
        sz.open("events", RECEIVING, "event-1", bytes(sealed[:-1]))
    with pytest.raises(Unsealable):
        sz.open("events", RECEIVING, "event-1", b"\x02" + bytes(sealed[1:]))  # an unknown version


def test_a_message_sealed_for_another_receiver_is_refused(certs: Path) -> None:
    pds, sz, hz = sealers(certs)
    for_hz = pds.seal("events", OTHER, "event-1", PLAIN)
    assert hz.open("events", RECEIVING, "event-1", for_hz) == PLAIN
    with pytest.raises(Unsealable):
        sz.open("events", RECEIVING, "event-1", for_hz)


def test_sender_kind_and_message_id_are_bound(certs: Path) -> None:
    pds, sz, _hz = sealers(certs)
    sealed = pds.seal("events", HANDLING, "event-1", PLAIN)
    with pytest.raises(Unsealable):
        sz.open("events", OTHER, "event-1", sealed)  # claimed to come from another site
    with pytest.raises(Unsealable):
        sz.open("events", RECEIVING, "event-2", sealed)  # under another message id
    with pytest.raises(Unsealable):
        sz.open("receipts", RECEIVING, "event-1", sealed)  # passed off as a receipt
    back = sz.seal("events", RECEIVING, "event-1", PLAIN)  # the other direction has its own keys
    with pytest.raises(Unsealable):
        sz.open("events", RECEIVING, "event-1", back)


def test_a_partner_certificate_from_another_ca_or_of_another_site_is_not_used(certs: Path, tmp_path: Path) -> None:
    pds, _sz, _hz = sealers(certs)
    sealed = pds.seal("events", HANDLING, "event-1", PLAIN)
    mixed = tmp_path / "mixed"
    create_ca(mixed)  # a CA of its own
    issue_site_cert(mixed, HANDLING)
    stranger = tmp_path / "stranger"
    create_ca(stranger)
    issue_site_cert(stranger, RECEIVING)
    (mixed / f"{RECEIVING}.pem").write_bytes((stranger / f"{RECEIVING}.pem").read_bytes())
    with pytest.raises(Unsealable) as refused:
        Sealer.for_site(mixed, HANDLING).open("events", RECEIVING, "event-1", sealed)
    assert refused.value.reason == "no_partner_key" and "not issued by the CA" in refused.value.detail
    with pytest.raises(Unsealable) as missing:  # no certificate of that site at all
        Sealer.for_site(mixed, HANDLING).open("events", OTHER, "event-1", sealed)
    assert missing.value.reason == "no_partner_key"
    same_ca = tmp_path / "same-ca"
    same_ca.mkdir()
    for name in ("ca.pem", f"{HANDLING}.pem", f"{HANDLING}.key"):
        (same_ca / name).write_bytes((certs / name).read_bytes())
    (same_ca / f"{RECEIVING}.pem").write_bytes((certs / f"{OTHER}.pem").read_bytes())  # 杭州's, filed as 平顶山's
    with pytest.raises(Unsealable) as misnamed:
        Sealer.for_site(same_ca, HANDLING).open("events", RECEIVING, "event-1", sealed)
    assert "does not name site" in misnamed.value.detail
