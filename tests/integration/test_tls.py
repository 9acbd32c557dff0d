"""Mutual TLS between sites over real gRPC on loopback: who may connect, and who the server sees."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from adapters.cli.certs import certs
from adapters.tls import (
    TlsError,
    TlsFiles,
    channel_credentials,
    create_ca,
    issue_site_cert,
    peer_site,
    server_credentials,
)

SERVER, CLIENT = "410400", "320500"
WHOAMI = "/tongban.test.Whoami/Who"
OPTIONS = (("grpc.ssl_target_name_override", "localhost"),)
TIMEOUT = 10


@dataclass
class Server:
    port: int
    seen: list[str | None] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def _start(credentials: grpc.ServerCredentials | None) -> tuple[grpc.Server, Server]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    state = Server(port=0)

    def who(request: bytes, context: grpc.ServicerContext) -> bytes:
        site = peer_site(context)
        state.seen.append(site)
        return (site or "").encode()

    handlers = {"Who": grpc.unary_unary_rpc_method_handler(who)}  # bytes in, bytes out
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("tongban.test.Whoami", handlers),))
    if credentials is None:
        state.port = server.add_insecure_port("127.0.0.1:0")
    else:
        state.port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return server, state


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    create_ca(directory)
    issue_site_cert(directory, SERVER)
    issue_site_cert(directory, CLIENT)
    return directory


@pytest.fixture
def site(pki: Path) -> Iterator[Server]:
    server, state = _start(server_credentials(TlsFiles.for_site(pki, SERVER)))
    yield state
    server.stop(grace=None)


def _who(channel: grpc.Channel) -> bytes:
    call = channel.unary_unary(WHOAMI)  # bytes in, bytes out: no (de)serializers
    return call(b"", timeout=TIMEOUT)  # type: ignore[no-any-return]


def _refused(channel: grpc.Channel) -> grpc.RpcError:
    with channel, pytest.raises(grpc.RpcError) as raised:
        _who(channel)
    return raised.value


def test_a_site_with_a_certificate_from_our_ca_is_seen_as_that_site(site: Server, pki: Path) -> None:
    with grpc.secure_channel(site.target, channel_credentials(TlsFiles.for_site(pki, CLIENT)), OPTIONS) as channel:
        grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
        health_stub = health_pb2_grpc.HealthStub(channel)
        assert health_stub.Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT).status == (
            health_pb2.HealthCheckResponse.SERVING
        )
        assert _who(channel) == CLIENT.encode()
    assert site.seen == [CLIENT]


def test_a_certificate_from_another_ca_is_refused_before_any_handler_runs(
    site: Server, pki: Path, tmp_path: Path
) -> None:
    rogue = tmp_path / "rogue"
    create_ca(rogue, name="Rogue CA")
    issue_site_cert(rogue, CLIENT)
    # Trusts our CA (so the server checks out) but presents a certificate our CA never signed.
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(rogue / f"{CLIENT}.key").read_bytes(),
        certificate_chain=(rogue / f"{CLIENT}.pem").read_bytes(),
    )
    error = _refused(grpc.secure_channel(site.target, credentials, OPTIONS))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert site.seen == []


def test_a_client_without_a_certificate_is_refused(site: Server, pki: Path) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=(pki / "ca.pem").read_bytes())
    error = _refused(grpc.secure_channel(site.target, credentials, OPTIONS))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert site.seen == []


def test_a_plaintext_client_is_refused(site: Server) -> None:
    error = _refused(grpc.insecure_channel(site.target))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert site.seen == []


def test_a_client_refuses_a_server_from_another_ca(pki: Path, tmp_path: Path) -> None:
    rogue = tmp_path / "rogue"
    create_ca(rogue, name="Rogue CA")
    issue_site_cert(rogue, SERVER)
    impostor = TlsFiles(pki / "ca.pem", rogue / f"{SERVER}.pem", rogue / f"{SERVER}.key")
    server, state = _start(server_credentials(impostor))
    try:
        ours = channel_credentials(TlsFiles.for_site(pki, CLIENT))
        error = _refused(grpc.secure_channel(state.target, ours, OPTIONS))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert state.seen == []
    finally:
        server.stop(grace=None)


def test_without_tls_there_is_no_peer_site() -> None:
    server, state = _start(None)
    try:
        with grpc.insecure_channel(state.target) as channel:
            assert _who(channel) == b""
        assert state.seen == [None]
    finally:
        server.stop(grace=None)


def test_site_certificate_carries_the_site_code_and_keys_are_private(pki: Path) -> None:
    cert = x509.load_pem_x509_certificate((pki / f"{CLIENT}.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == CLIENT
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"urn:tongban:site:{CLIENT}" in san.get_values_for_type(x509.UniformResourceIdentifier)
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    for key in ("ca.key", f"{SERVER}.key", f"{CLIENT}.key"):
        assert stat.S_IMODE((pki / key).stat().st_mode) == 0o600


def test_create_ca_keeps_an_existing_ca(pki: Path) -> None:
    before = (pki / "ca.pem").read_bytes()
    create_ca(pki)
    assert (pki / "ca.pem").read_bytes() == before


def test_bad_site_code_and_missing_files_are_clear(tmp_path: Path, pki: Path) -> None:
    with pytest.raises(ValueError, match="6 digits"):
        issue_site_cert(pki, "41040")
    with pytest.raises(TlsError, match="tongban certs") as raised:
        issue_site_cert(tmp_path, SERVER)
    assert raised.value.path == tmp_path / "ca.pem"
    with pytest.raises(TlsError, match=r"999999\.pem"):
        server_credentials(TlsFiles.for_site(pki, "999999"))


def test_certs_command_writes_a_ca_and_one_certificate_per_site(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = CliRunner().invoke(certs, ["--out", str(out), "--site", SERVER, "--site", CLIENT])
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 6
    assert all(line.startswith("已生成 ") for line in result.output.splitlines())
    for name in ("ca.pem", "ca.key", f"{SERVER}.pem", f"{SERVER}.key", f"{CLIENT}.pem", f"{CLIENT}.key"):
        assert (out / name).is_file()
    ca = (out / "ca.pem").read_bytes()

    again = CliRunner().invoke(certs, ["--out", str(out), "--site", "110000"])
    assert again.exit_code == 0, again.output
    assert len(again.output.splitlines()) == 2
    assert (out / "ca.pem").read_bytes() == ca


def test_certs_command_rejects_a_bad_site_code(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = CliRunner().invoke(certs, ["--out", str(out), "--site", SERVER, "--site", "41A400"])
    assert result.exit_code == 2
    assert "41A400" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not out.exists()
