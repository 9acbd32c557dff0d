"""The staff port's gate, over real gRPC: who the caller is comes from a credential, never a request.

Each refusal is checked for its status and reason code, and for storing nothing (the site's log
head is unchanged).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from adapters.auth.caller import Caller
from adapters.auth.client import login, signed_channel
from adapters.auth.oidc import OidcSettings
from adapters.auth.passwords import hash_password
from adapters.auth.tokens import AUDIENCE, TokenSigner, issuer, load_or_create_signing_key
from adapters.grpc.errors import error_info
from adapters.settings import AuthSettings, Settings
from adapters.tls import (
    TlsFiles,
    create_ca,
    issue_service_cert,
    issue_site_cert,
    staff_server_credentials,
)
from hub.domain.values import Actor, Role
from tests.builders import CLERK, HANDLING, RECEIVING
from tests.integration.conftest import PASSWORD, RunningSite, start_site
from tests.integration.test_grpc_site import WIRE_CLERK, receive_request
from tongban.v1 import auth_pb2, auth_pb2_grpc, case_service_pb2_grpc
from tongban.v1 import case_pb2 as pb
from tongban.v1 import case_service_pb2 as svc

AUDITOR = Actor("AUD-1", Role.AUDITOR, RECEIVING, "审计员")


def refused(call: Any, code: grpc.StatusCode, reason: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call()
    assert error.value.code() == code, error.value.details()
    info = error_info(error.value)
    assert info is not None and info.reason == reason, (info, error.value.details())
    return error.value


def stub_with(site: RunningSite, token: str) -> case_service_pb2_grpc.CaseServiceStub:
    return case_service_pb2_grpc.CaseServiceStub(signed_channel(site.channel, token))


@pytest.fixture
def site(tmp_path: Path) -> Iterator[RunningSite]:
    settings = Settings(site=RECEIVING, data_dir=tmp_path / "data", listen="127.0.0.1:0",
                        auth=AuthSettings(active_cache_seconds=0.0))
    running = start_site(settings, staff=[CLERK, AUDITOR])
    yield running
    running.stop()


def test_no_credential_is_unauthenticated_for_writes_and_reads_and_stores_nothing(site: RunningSite) -> None:
    anonymous = case_service_pb2_grpc.CaseServiceStub(site.channel)
    case = site.stub.ReceiveCase(receive_request(), timeout=10).case
    head = site.hub.head()
    refused(lambda: anonymous.ReceiveCase(receive_request(), timeout=10), grpc.StatusCode.UNAUTHENTICATED,
            "UNAUTHENTICATED")
    refused(lambda: anonymous.ForwardCase(svc.ForwardCaseRequest(case_id=case.case_id, actor=WIRE_CLERK),
                                          timeout=10), grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    for read in (lambda: anonymous.GetCase(svc.GetCaseRequest(case_id=case.case_id), timeout=10),
                 lambda: anonymous.GetCaseHistory(svc.GetCaseHistoryRequest(case_id=case.case_id), timeout=10),
                 lambda: anonymous.ListCases(svc.ListCasesRequest(), timeout=10)):
        refused(read, grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED")
    refused(lambda: stub_with(site, "").GetCase(svc.GetCaseRequest(case_id=case.case_id), timeout=10),
            grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
    assert site.hub.head() == head


def test_a_clerk_whose_request_claims_another_site_role_or_id_is_refused(site: RunningSite) -> None:
    case = site.stub.ReceiveCase(receive_request(), timeout=10).case
    head = site.hub.head()
    claims = [
        pb.Actor(staff_id=CLERK.staff_id, role=pb.ROLE_WINDOW_CLERK, site=HANDLING),  # 苏州
        pb.Actor(staff_id=CLERK.staff_id, role=pb.ROLE_HANDLER, site=RECEIVING),
        pb.Actor(staff_id="SZ-1", role=pb.ROLE_HANDLER, site=HANDLING, name="周婷"),
        pb.Actor(staff_id=CLERK.staff_id, role=99, site=RECEIVING),
    ]
    for claim in claims:
        error = refused(lambda claim=claim: site.stub.ForwardCase(
            svc.ForwardCaseRequest(case_id=case.case_id, actor=claim), timeout=10),
            grpc.StatusCode.PERMISSION_DENIED, "ACTOR_MISMATCH")
        assert "登录身份" in error.details()
        refused(lambda claim=claim: site.stub.ReceiveCase(receive_request(actor=claim), timeout=10),
                grpc.StatusCode.PERMISSION_DENIED, "ACTOR_MISMATCH")
    assert site.hub.head() == head
    # The same clerk, not claiming anyone else, acts as itself.
    site.stub.ForwardCase(svc.ForwardCaseRequest(case_id=case.case_id), timeout=10)
    history = site.stub.GetCaseHistory(svc.GetCaseHistoryRequest(case_id=case.case_id), timeout=10)
    assert [e.actor.site for e in history.entries] == [RECEIVING, RECEIVING]


def test_wrong_passwords_are_refused_then_throttled_and_never_logged(site: RunningSite) -> None:
    auth = auth_pb2_grpc.AuthServiceStub(site.channel)
    with capture_logs() as logs:
        for _ in range(5):
            refused(lambda: auth.Login(auth_pb2.LoginRequest(staff_id=CLERK.staff_id, password="wrong-guess-9"),
                                       timeout=10), grpc.StatusCode.UNAUTHENTICATED, "LOGIN_FAILED")
        refused(lambda: auth.Login(auth_pb2.LoginRequest(staff_id="NOBODY", password="x"), timeout=10),
                grpc.StatusCode.UNAUTHENTICATED, "LOGIN_FAILED")
        error = refused(lambda: auth.Login(auth_pb2.LoginRequest(staff_id=CLERK.staff_id, password=PASSWORD),
                                           timeout=10), grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_THROTTLED")
    assert int(error_info(error).metadata["retry_after_seconds"]) >= 1  # type: ignore[union-attr]
    failures = [e for e in logs if e["event"] == "login_failed"]
    assert len(failures) == 6 and {e["staff_id"] for e in failures} == {CLERK.staff_id, "NOBODY"}
    assert "wrong-guess-9" not in json.dumps(logs, default=str) and PASSWORD not in json.dumps(logs, default=str)


def test_expired_forged_unsigned_and_other_sites_tokens_are_unauthenticated(site: RunningSite,
                                                                            tmp_path: Path) -> None:
    case = site.stub.ReceiveCase(receive_request(), timeout=10).case
    head = site.hub.head()
    ours = load_or_create_signing_key(site.settings.data_dir / "staff-token.pem")
    clerk = Caller(CLERK.staff_id, CLERK.name, Role.WINDOW_CLERK, RECEIVING, "password")
    expired = TokenSigner(RECEIVING, ours, timedelta(minutes=5)).issue(clerk, datetime.now(UTC) - timedelta(hours=1))
    forged = TokenSigner(RECEIVING, Ed25519PrivateKey.generate(), timedelta(hours=1)).issue(clerk)
    suzhou = TokenSigner(HANDLING, load_or_create_signing_key(tmp_path / "sz.pem"), timedelta(hours=1)).issue(
        Caller("SZ-1", "周婷", Role.HANDLER, HANDLING, "password"))
    claims = {"iss": issuer(RECEIVING), "aud": AUDIENCE, "sub": CLERK.staff_id, "site": RECEIVING,
              "role": "supervisor", "exp": datetime.now(UTC) + timedelta(hours=1)}
    unsigned = jwt.encode(claims, None, algorithm="none")
    tampered = expired.token.rsplit(".", 1)[0] + "." + forged.token.rsplit(".", 1)[1]
    cases = [(expired.token, "TOKEN_EXPIRED"), (forged.token, "TOKEN_INVALID"), (suzhou.token, "TOKEN_INVALID"),
             (unsigned, "TOKEN_INVALID"), (tampered, "TOKEN_INVALID"), ("not.a.jwt", "TOKEN_INVALID")]
    for token, reason in cases:
        stub = stub_with(site, token)
        refused(lambda stub=stub: stub.ForwardCase(svc.ForwardCaseRequest(case_id=case.case_id), timeout=10),
                grpc.StatusCode.UNAUTHENTICATED, reason)
        refused(lambda stub=stub: stub.GetCase(svc.GetCaseRequest(case_id=case.case_id), timeout=10),
                grpc.StatusCode.UNAUTHENTICATED, reason)
    assert site.hub.head() == head


def test_an_auditor_reads_but_never_writes(site: RunningSite) -> None:
    case = site.stub.ReceiveCase(receive_request(), timeout=10).case
    auditor = site.sign_in(AUDITOR.staff_id)
    head = site.hub.head()
    assert auditor.GetCase(svc.GetCaseRequest(case_id=case.case_id), timeout=10).case.case_id == case.case_id
    assert [c.case_id for c in auditor.ListCases(svc.ListCasesRequest(), timeout=10).cases] == [case.case_id]
    refused(lambda: auditor.ForwardCase(svc.ForwardCaseRequest(case_id=case.case_id), timeout=10),
            grpc.StatusCode.PERMISSION_DENIED, "READ_ONLY")
    refused(lambda: auditor.ReceiveCase(receive_request(), timeout=10), grpc.StatusCode.PERMISSION_DENIED,
            "READ_ONLY")
    refused(lambda: auditor.RaiseIssue(svc.RaiseIssueRequest(case_id=case.case_id, kind=pb.ISSUE_KIND_OTHER,
                                                             description="x"), timeout=10),
            grpc.StatusCode.PERMISSION_DENIED, "READ_ONLY")
    assert site.hub.head() == head


def test_a_disabled_account_stops_working_at_once_and_cannot_log_in(site: RunningSite) -> None:
    case = site.stub.ReceiveCase(receive_request(), timeout=10).case
    assert site.identity.directory is not None
    site.identity.directory.set_active(CLERK.staff_id, False, by="test-admin")
    head = site.hub.head()
    refused(lambda: site.stub.ForwardCase(svc.ForwardCaseRequest(case_id=case.case_id), timeout=10),
            grpc.StatusCode.UNAUTHENTICATED, "ACCOUNT_DISABLED")
    refused(lambda: site.sign_in(CLERK.staff_id), grpc.StatusCode.UNAUTHENTICATED, "LOGIN_FAILED")
    assert site.hub.head() == head
    assert [(c.change, c.by) for c in site.identity.directory.changes(CLERK.staff_id)] == [
        ("added", "test"), ("disabled", "test-admin")]


def test_who_am_i_and_the_token_claims(site: RunningSite) -> None:
    response = login(site.channel, CLERK.staff_id, PASSWORD)
    claims = jwt.decode(response.token, options={"verify_signature": False})
    assert claims["sub"] == CLERK.staff_id and claims["site"] == RECEIVING and claims["role"] == "window_clerk"
    assert claims["iss"] == issuer(RECEIVING) and claims["exp"] - claims["iat"] == 8 * 3600
    assert jwt.get_unverified_header(response.token)["alg"] == "EdDSA"
    me = auth_pb2_grpc.AuthServiceStub(signed_channel(site.channel, response.token)).WhoAmI(
        auth_pb2.WhoAmIRequest(), timeout=10)
    assert me.via == "password" and me.actor == WIRE_CLERK
    assert (site.settings.data_dir / "staff-token.pem").stat().st_mode & 0o777 == 0o600


# ------------------------------------------------------------------ OIDC (the province's identity service)
ISSUER, CLIENT = "https://idp.example.gov.cn/realms/henan", "tongban-hub"


@pytest.fixture
def idp_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def oidc_site(tmp_path: Path, idp_key: ec.EllipticCurvePrivateKey) -> Iterator[RunningSite]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(idp_key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "ES256"}]}))
    oidc = OidcSettings(issuer=ISSUER, audience=CLIENT, jwks_file=jwks, roles_claim="groups",
                        roles={"tongban-clerk": Role.WINDOW_CLERK, "tongban-audit": Role.AUDITOR})
    settings = Settings(site=RECEIVING, data_dir=tmp_path / "data", listen="127.0.0.1:0",
                        auth=AuthSettings(mode="oidc", oidc=oidc))
    running = start_site(settings, staff=[])
    yield running
    running.stop()


def idp_token(key: Any, **changes: Any) -> str:
    claims = {"iss": ISSUER, "aud": CLIENT, "sub": "410400-zhangli", "name": "张丽", "site": RECEIVING,
              "groups": ["staff", "tongban-clerk"], "exp": datetime.now(UTC) + timedelta(minutes=10)}
    claims.update(changes)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm="ES256",
                      headers={"kid": "k1"})


def test_an_oidc_token_with_a_mapped_role_acts_as_its_subject(oidc_site: RunningSite, idp_key: Any) -> None:
    stub = stub_with(oidc_site, idp_token(idp_key))
    case = stub.ReceiveCase(receive_request(actor=None), timeout=10).case
    history = stub.GetCaseHistory(svc.GetCaseHistoryRequest(case_id=case.case_id), timeout=10)
    assert history.entries[0].actor == pb.Actor(staff_id="410400-zhangli", role=pb.ROLE_WINDOW_CLERK,
                                                site=RECEIVING, name="张丽")
    refused(lambda: login(oidc_site.channel, CLERK.staff_id, PASSWORD), grpc.StatusCode.FAILED_PRECONDITION,
            "EMBEDDED_LOGIN_OFF")
    auditor = stub_with(oidc_site, idp_token(idp_key, groups=["tongban-audit"]))
    refused(lambda: auditor.ForwardCase(svc.ForwardCaseRequest(case_id=case.case_id), timeout=10),
            grpc.StatusCode.PERMISSION_DENIED, "READ_ONLY")


@pytest.mark.parametrize(("changes", "code", "reason"), [
    ({"aud": "another-app"}, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
    ({"iss": "https://idp.example.com/evil"}, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
    ({"site": HANDLING}, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
    ({"site": None}, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
    ({"sub": "张丽 (410400)"}, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
    ({"exp": datetime.now(UTC) - timedelta(minutes=5)}, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED"),
    ({"groups": ["staff"]}, grpc.StatusCode.PERMISSION_DENIED, "NO_ROLE"),
    ({"groups": ["tongban-clerk", "tongban-audit"]}, grpc.StatusCode.PERMISSION_DENIED, "NO_ROLE"),
])
def test_oidc_tokens_for_another_audience_issuer_or_site_are_refused(
    oidc_site: RunningSite, idp_key: Any, changes: dict[str, Any], code: grpc.StatusCode, reason: str,
) -> None:
    head = oidc_site.hub.head()
    stub = stub_with(oidc_site, idp_token(idp_key, **changes))
    refused(lambda: stub.ReceiveCase(receive_request(actor=None), timeout=10), code, reason)
    assert oidc_site.hub.head() == head


def test_an_oidc_token_signed_by_another_key_is_refused(oidc_site: RunningSite) -> None:
    stub = stub_with(oidc_site, idp_token(ec.generate_private_key(ec.SECP256R1())))
    refused(lambda: stub.ListCases(svc.ListCasesRequest(), timeout=10), grpc.StatusCode.UNAUTHENTICATED,
            "TOKEN_INVALID")


# ------------------------------------------------------------------ service accounts (mutual TLS)
def test_a_service_account_certificate_acts_as_its_account(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    create_ca(certs)
    issue_site_cert(certs, RECEIVING)
    issue_service_cert(certs, RECEIVING, "window-system")
    issue_service_cert(certs, HANDLING, "window-system")  # 苏州's system, same CA
    issue_service_cert(certs, RECEIVING, "unlisted")
    settings = Settings(site=RECEIVING, data_dir=tmp_path / "data", listen="127.0.0.1:0", certs_dir=certs,
                        staff_tls=True, auth=AuthSettings(services={"window-system": Role.WINDOW_CLERK}))
    ca = (certs / "ca.pem").read_bytes()

    def client(stem: str | None) -> grpc.ChannelCredentials:
        if stem is None:
            return grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.ssl_channel_credentials(root_certificates=ca, private_key=(certs / f"{stem}.key").read_bytes(),
                                            certificate_chain=(certs / f"{stem}.pem").read_bytes())

    server_tls = staff_server_credentials(TlsFiles.for_site(certs, RECEIVING), require_client_certs=True)
    # Staff on a port that requires client certificates sign in through a certified client (here the
    # site's own certificate, which by itself names no account).
    site = start_site(settings, staff=[CLERK], tls=(server_tls, client(RECEIVING)))
    target = f"127.0.0.1:{site.server.port}"
    try:
        with grpc.secure_channel(target, client(f"service-{RECEIVING}-window-system")) as channel:
            stub = case_service_pb2_grpc.CaseServiceStub(channel)
            case = stub.ReceiveCase(receive_request(actor=None), timeout=10).case
            me = auth_pb2_grpc.AuthServiceStub(channel).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10)
        assert me.via == "service"
        assert me.actor == pb.Actor(staff_id="window-system", role=pb.ROLE_WINDOW_CLERK, site=RECEIVING,
                                    name="window-system")
        history = site.stub.GetCaseHistory(svc.GetCaseHistoryRequest(case_id=case.case_id), timeout=10)
        assert history.entries[0].actor.staff_id == "window-system"
        head = site.hub.head()
        for stem, reason in ((f"service-{HANDLING}-window-system", "UNKNOWN_SERVICE"),
                             (f"service-{RECEIVING}-unlisted", "UNKNOWN_SERVICE"), (RECEIVING, "UNAUTHENTICATED")):
            with grpc.secure_channel(target, client(stem)) as channel:
                stub = case_service_pb2_grpc.CaseServiceStub(channel)
                refused(lambda stub=stub: stub.ReceiveCase(receive_request(actor=None), timeout=10),
                        grpc.StatusCode.UNAUTHENTICATED, reason)
        assert site.hub.head() == head
        for insecure in (grpc.insecure_channel(target), grpc.secure_channel(target, client(None))):
            with pytest.raises(grpc.RpcError) as no_handshake, insecure as channel:  # plaintext, or no client cert
                case_service_pb2_grpc.CaseServiceStub(channel).ListCases(svc.ListCasesRequest(), timeout=3)
            assert no_handshake.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        site.stop()


def test_directory_refuses_bad_accounts(site: RunningSite) -> None:
    from adapters.auth.directory import DirectoryError

    assert site.identity.directory is not None
    for staff_id, role in (("PDS-1", Role.WINDOW_CLERK), ("bad id", Role.HANDLER), ("SYS", Role.SYSTEM)):
        with pytest.raises(DirectoryError):
            site.identity.directory.add(staff_id, "名", role, hash_password("long-enough-1"), by="t")
    with pytest.raises(ValueError):
        hash_password("short")


def test_production_settings_refuse_plaintext_embedded_and_no_pii_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.settings import production_problems

    monkeypatch.delenv("TONGBAN_PII_KEY", raising=False)
    dev = Settings(site=RECEIVING)
    assert production_problems(dev) == []
    prod = replace(dev, environment="production")
    assert len(production_problems(prod)) == 3
    monkeypatch.setenv("TONGBAN_PII_KEY", "k")
    oidc = OidcSettings(issuer=ISSUER, audience=CLIENT, public_key_file=Path("k.pem"),
                        roles={"c": Role.WINDOW_CLERK})
    assert production_problems(replace(prod, staff_tls=True, auth=AuthSettings(mode="oidc", oidc=oidc))) == []
    structlog.reset_defaults()
