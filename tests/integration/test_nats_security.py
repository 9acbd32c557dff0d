"""NATS secured, against the real server with the generated config: who may connect, who may publish on
which subject, and what the JetStream store holds while a partner is down.

The sites: 平顶山 (RECEIVING 410400), 苏州 (HANDLING 320500), 杭州 (OTHER 330100), each with a
certificate from the test CA and its own nkey (tests/nats_fixtures.py).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from pathlib import Path
from typing import Any

import nats
import pytest
from eventsourcing.cryptography import AESCipher
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout

from adapters.bootstrap import build_hub
from adapters.exchange.nats_channel import NatsInbox, NatsPartner, Sealer, ensure_stream, stream_name, subject
from adapters.exchange.relay import Relay
from adapters.exchange.wire import event_message
from adapters.nats.access import NatsAccess
from adapters.nats.server import NatsServer
from adapters.settings import Settings
from adapters.tls import TlsFiles
from hub.application import commands as c
from hub.application.case_sharing import CaseSharing
from hub.domain.errors import CaseNotFound
from tests.builders import CLERK, HANDLING, ID_NUMBER, OTHER, RECEIVING, actor_data, receive_request
from tests.nats_fixtures import nats_server  # noqa: F401

PHONE = "13837512345"  # the applicant's phone in tests/builders.receive_request
REFUSED = (NatsError, ssl.SSLError, OSError, TimeoutError)  # refused by the server, or the TLS handshake


async def _connect(access: NatsAccess, errors: list[Exception] | None = None, **options: Any) -> nats.NATS:
    async def on_error(error: Exception) -> None:
        if errors is not None:
            errors.append(error)

    return await nats.connect(access.url, allow_reconnect=False, connect_timeout=2, max_reconnect_attempts=1,
                              reconnect_time_wait=0, error_cb=on_error, **{**access.connect_options(), **options})


async def _messages(server: NatsServer, site: str) -> int:
    nc = await _connect(server.access(site))
    try:
        js = nc.jetstream()
        await ensure_stream(js, site)
        return (await js.stream_info(stream_name(site))).state.messages
    finally:
        await nc.close()


def _certs(server: NatsServer) -> Path:
    assert server.certs_dir is not None
    return server.certs_dir


def test_a_client_without_credentials_cannot_connect(nats_server: NatsServer) -> None:  # noqa: F811
    certs = _certs(nats_server)
    bare = NatsAccess(nats_server.url, HANDLING)
    certificate_only = NatsAccess(nats_server.url, HANDLING, TlsFiles.for_site(certs, HANDLING))
    no_certificate = ssl.create_default_context(cafile=str(certs / "ca.pem"))  # verifies the server, shows nothing

    async def attempts() -> dict[str, str]:
        refused = {}
        for name, access, options in (
            ("no TLS, no key", bare, {}),
            ("certificate, no key", certificate_only, {}),
            ("key, no certificate", nats_server.access(HANDLING), {"tls": no_certificate}),
            ("certificate and key", nats_server.access(HANDLING), {}),  # the control
        ):
            try:
                nc = await _connect(access, **options)
            except REFUSED as error:
                refused[name] = f"{type(error).__name__}: {error}"
                continue
            await nc.close()
        return refused

    refused = asyncio.run(attempts())
    assert set(refused) == {"no TLS, no key", "certificate, no key", "key, no certificate"}, refused
    assert "Authorization Violation" in refused["certificate, no key"]
    assert asyncio.run(_messages(nats_server, RECEIVING)) == 0


def test_suzhou_cannot_publish_as_hangzhou_nor_read_another_sites_stream(nats_server: NatsServer) -> None:  # noqa: F811
    assert asyncio.run(_messages(nats_server, RECEIVING)) == 0  # 平顶山's stream exists, empty

    async def as_suzhou() -> tuple[list[str], bool]:
        errors: list[Exception] = []
        nc = await _connect(nats_server.access(HANDLING), errors)
        try:
            js = nc.jetstream(timeout=1)
            with pytest.raises(NatsTimeout):  # the server drops it: no acknowledgement
                await js.publish(subject(RECEIVING, "events", OTHER), b"as 330100", stream=stream_name(RECEIVING))
            with pytest.raises(NatsTimeout):  # nor may it read 平顶山's stream through the JetStream API
                await js.get_msg(stream_name(RECEIVING), seq=1)
            await nc.subscribe("tongban.>")  # nor listen to other sites' traffic or replies
            await nc.subscribe("_INBOX.>")
            await nc.flush(timeout=2)
            deadline = time.monotonic() + 5
            while len(errors) < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            own = await js.publish(subject(RECEIVING, "events", HANDLING), b"as 320500", stream=stream_name(RECEIVING))
            return [str(e) for e in errors], own.seq == 1
        finally:
            await nc.close()

    errors, own_subject_works = asyncio.run(as_suzhou())
    violations = [e.lower() for e in errors if "permissions violation" in e.lower()]  # the client lowercases some
    assert any(f"publish to \"{subject(RECEIVING, 'events', OTHER)}\"" in e for e in violations), errors
    assert any("subscription to \"tongban.>\"" in e for e in violations), errors
    assert any("subscription to \"_inbox.>\"" in e for e in violations), errors
    assert own_subject_works  # the control: its own subject is open to it
    assert asyncio.run(_messages(nats_server, RECEIVING)) == 1  # only that one reached 平顶山's stream


def test_the_jetstream_store_holds_no_applicant_pii_while_the_partner_is_down(
    tmp_path: Path, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    monkeypatch.setenv("TONGBAN_PII_KEY", AESCipher.create_key(32))
    certs = _certs(nats_server)
    a = build_hub(Settings(site=RECEIVING, data_dir=tmp_path / "a"))
    b = build_hub(Settings(site=HANDLING, data_dir=tmp_path / "b"))
    partner = NatsPartner(RECEIVING, HANDLING, nats_server.access(RECEIVING), Sealer.for_site(certs, RECEIVING))
    inbox = NatsInbox(CaseSharing(b), nats_server.access(HANDLING), Sealer.for_site(certs, HANDLING))
    try:
        assert asyncio.run(_messages(nats_server, HANDLING)) == 0  # 苏州's stream, its inbox not running
        case, _ = a.receive(c.parse(c.ReceiveCase, receive_request("pii-1")))
        a.execute(c.parse(c.ForwardCase, {"case_id": str(case.id), "actor": actor_data(CLERK)}))
        events = a.get_case(case.id).shared_events()
        assert ID_NUMBER.encode() in event_message(events[0]).SerializeToString()  # in the clear without sealing
        relay = Relay(CaseSharing(a), partner)
        while relay.pump():
            pass
        assert asyncio.run(_messages(nats_server, HANDLING)) == len(events) == 2

        nats_server.stop()  # flushes the file store
        stored = b"".join(p.read_bytes() for p in nats_server.store_dir.rglob("*") if p.is_file())
        assert events[0].event_id.encode() in stored  # the control: the messages are in the files grepped
        assert ID_NUMBER.encode() not in stored and PHONE.encode() not in stored
        assert "王建国".encode() not in stored

        nats_server.start()  # 苏州 comes back: what was stored sealed opens and applies
        inbox.start()
        deadline = time.monotonic() + 15
        while True:
            try:
                if b.get_case(case.id).version == 2:
                    break
            except CaseNotFound:
                pass
            assert time.monotonic() < deadline, "苏州 did not apply the sealed events"
            time.sleep(0.02)
        assert b.get_case(case.id).shared_events()[0].data["applicant"]["id_number"] == ID_NUMBER
    finally:
        inbox.stop()
        partner.close()
        a.close()
        b.close()


def test_nats_config_writes_the_server_config_and_private_seeds(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from adapters.cli.main import main
    from adapters.free_port import free_port
    from adapters.launcher import make_certs

    certs = make_certs(tmp_path / "certs", RECEIVING, HANDLING)
    conf = tmp_path / "nats" / "nats.conf"
    args = ["nats-config", "--certs", str(certs), "--site", RECEIVING, "--site", HANDLING,
            "--listen", f"127.0.0.1:{free_port()}", "--out", str(conf)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    seeds = {site: conf.parent / f"{site}.nk" for site in (RECEIVING, HANDLING)}
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in seeds.values())
    text = conf.read_text()
    assert "verify: true" in text and f"tongban.*.events.{HANDLING}" in text
    assert not any(path.read_text().strip() in text for path in seeds.values())  # public keys only
    first = seeds[RECEIVING].read_bytes()
    assert CliRunner().invoke(main, args).exit_code == 0 and seeds[RECEIVING].read_bytes() == first  # kept

    server = NatsServer(tmp_path / "store", config=conf, certs_dir=certs)
    with server:
        assert asyncio.run(_messages(server, HANDLING)) == 0  # 苏州 gets in with the seed written for it
    missing = CliRunner().invoke(main, ["nats-config", "--certs", str(tmp_path / "none"), "--site", RECEIVING,
                                        "--out", str(tmp_path / "x.conf")])
    assert missing.exit_code == 2 and "--nats-server" in missing.output
