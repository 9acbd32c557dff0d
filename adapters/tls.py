"""Mutual TLS between sites: a demo CA, one certificate per site, gRPC credentials, the caller's site.

Each city's hub is a *site* named by its 6-digit region code. A site's certificate carries that code
twice: as the subject CN and as the SAN URI ``urn:tongban:site:<code>``; the URI is what
:func:`peer_site` trusts first because a SAN is the modern place for identity and the URI form cannot
be confused with a host name. The same certificate serves as server and client identity
(serverAuth + clientAuth), so one file pair per site is enough for point-to-point exchange.

Keys are EC P-256: every gRPC/BoringSSL build accepts it for TLS, Ed25519 certificates are not.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "AUDITOR_URI_PREFIX",
    "NATS_SERVER",
    "SITE_URI_PREFIX",
    "TlsError",
    "TlsFiles",
    "channel_credentials",
    "client_ssl_context",
    "create_ca",
    "issue_auditor_cert",
    "issue_nats_server_cert",
    "issue_service_cert",
    "issue_site_cert",
    "peer_identity",
    "peer_site",
    "server_credentials",
    "service_account",
    "site_key",
    "site_public_key",
    "staff_server_credentials",
    "write_private",
]

SITE_URI_PREFIX = "urn:tongban:site:"
AUDITOR_URI_PREFIX = "urn:tongban:auditor:"
NATS_SERVER = "nats-server"  # the stem of the NATS server's certificate files
_NATS_SERVER_URI = "urn:tongban:nats-server"
SERVICE_URI_PREFIX = "urn:tongban:service:"
_AUDITOR_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
ORGANIZATION = "Tongban Hub"
CA_VALIDITY = datetime.timedelta(days=3652)
SITE_VALIDITY = datetime.timedelta(days=730)
_SITE_CODE = re.compile(r"\d{6}")
_HINT = "run `tongban certs --out DIR --site CODE` to create them"


class TlsError(Exception):
    """A certificate or key file is missing, unreadable or not what it should be.

    Attributes:
        path: the file at fault.
    """

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}; {_HINT}")
        self.path = path


def _check_site(site: str) -> str:
    if not _SITE_CODE.fullmatch(site):
        raise ValueError(f"site code must be 6 digits (a region code such as 410400), got {site!r}")
    return site


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TlsError(path, "file not found") from None
    except OSError as error:
        raise TlsError(path, f"cannot read ({error.strerror or error})") from None


def write_private(path: Path, data: bytes) -> None:
    """Write a secret (a key, a seed, a token) readable by its owner only, also when the file already existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> datetime.datetime:
    # A minute of slack so a peer whose clock runs slightly behind still accepts a fresh certificate.
    return datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)


def create_ca(directory: Path, name: str = "Tongban Demo CA") -> None:
    """Create a self-signed CA (``ca.pem``, ``ca.key``) in ``directory``, valid 10 years.

    Idempotent: an existing ``ca.pem`` is kept, so certificates already issued stay valid.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "ca.pem").exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, name), x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION)]
    )
    start = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(directory / "ca.key", _key_pem(key))
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = directory / "ca.pem", directory / "ca.key"
    try:
        cert = x509.load_pem_x509_certificate(_read(cert_path))
    except ValueError:
        raise TlsError(cert_path, "not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(_read(key_path), password=None)
    except (ValueError, TypeError):
        raise TlsError(key_path, "not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(key_path, "CA key is not an EC key")
    return cert, key


def issue_site_cert(directory: Path, site: str) -> None:
    """Issue ``<site>.pem`` and ``<site>.key`` in ``directory``, signed by the CA there, valid 2 years.

    Subject CN = site code, O = Tongban Hub; SAN = DNS localhost, IP 127.0.0.1 and
    ``urn:tongban:site:<site>``; usable as both TLS server and client. Re-issuing overwrites.

    Raises:
        ValueError: ``site`` is not 6 digits.
        TlsError: the CA files are missing or unreadable.
    """
    _check_site(site)
    _issue(directory, site, site, SITE_URI_PREFIX + site)


def issue_auditor_cert(directory: Path, name: str) -> None:
    """Issue ``auditor-<name>.pem``/``.key``: a client certificate for the read-only audit port.

    SAN URI ``urn:tongban:auditor:<name>``; CN ``auditor:<name>``. It names no site, so the partner
    port refuses it, and the audit port lets it read but never write.
    """
    if not _AUDITOR_NAME.fullmatch(name):
        raise ValueError(f"auditor name must be 1-32 letters, digits, '-' or '_': {name!r}")
    _issue(directory, f"auditor-{name}", f"auditor:{name}", AUDITOR_URI_PREFIX + name)


def issue_nats_server_cert(directory: Path) -> None:
    """Issue ``nats-server.pem``/``.key``: the NATS server's TLS identity, signed by the site CA.

    SAN DNS localhost, IP 127.0.0.1 and ``urn:tongban:nats-server``; server use only, so it cannot pass
    for a site on any port. Re-issuing overwrites.
    """
    _issue(directory, NATS_SERVER, NATS_SERVER, _NATS_SERVER_URI, client=False)


def issue_service_cert(directory: Path, site: str, name: str) -> None:
    """Issue ``service-<site>-<name>.pem``/``.key``: a client certificate for a system (a city's own
    window system) calling the staff API of ``site`` as the service account ``name``.

    SAN URI ``urn:tongban:service:<site>:<name>``; CN ``service:<site>:<name>``. The staff port maps
    the name to a role (``[auth.services]``); the partner port refuses it (it names no site).
    """
    _check_site(site)
    if not _AUDITOR_NAME.fullmatch(name):
        raise ValueError(f"service name must be 1-32 letters, digits, '-' or '_': {name!r}")
    _issue(directory, f"service-{site}-{name}", f"service:{site}:{name}", f"{SERVICE_URI_PREFIX}{site}:{name}")


def _issue(directory: Path, stem: str, common_name: str, uri: str, client: bool = True) -> None:
    site = common_name
    ca_cert, ca_key = _load_ca(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    start = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, site),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + SITE_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=client,  # a site's key also derives the NATS sealing keys (ECDH)
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if client
                                  else [ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                    x509.UniformResourceIdentifier(uri),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_private(directory / f"{stem}.key", _key_pem(key))
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@dataclass(frozen=True)
class TlsFiles:
    """Where a site's TLS material lives: the CA to trust, and the site's own certificate and key."""

    ca: Path
    cert: Path
    key: Path

    @classmethod
    def for_site(cls, directory: Path, site: str) -> TlsFiles:
        """The layout ``tongban certs`` writes: ``ca.pem``, ``<site>.pem``, ``<site>.key``."""
        _check_site(site)
        return cls(ca=directory / "ca.pem", cert=directory / f"{site}.pem", key=directory / f"{site}.key")

    def read(self) -> tuple[bytes, bytes, bytes]:
        """(ca, cert, key) as PEM bytes; TlsError naming the first file that cannot be read."""
        return _read(self.ca), _read(self.cert), _read(self.key)


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate signed by our CA (mutual TLS)."""
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def staff_server_credentials(files: TlsFiles, require_client_certs: bool) -> grpc.ServerCredentials:
    """The staff port over TLS. Without ``require_client_certs`` clients only verify us (staff send tokens);
    with it every client must present a certificate our CA issued, which is how a service account
    authenticates (gRPC Python offers no verified-but-optional mode: not requiring means not asking)."""
    ca, cert, key = files.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=require_client_certs)


def service_account(auth: dict[str, list[bytes]]) -> tuple[str, str] | None:
    """(site, name) from a verified client certificate issued to a service account, else None."""
    for pem in auth.get("x509_pem_cert", []):
        try:
            cert = x509.load_pem_x509_certificate(pem)
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, x509.ExtensionNotFound):
            continue
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            site, _, name = uri.removeprefix(SERVICE_URI_PREFIX).partition(":")
            if uri.startswith(SERVICE_URI_PREFIX) and _SITE_CODE.fullmatch(site) and _AUDITOR_NAME.fullmatch(name):
                return site, name
    return None


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Channel credentials that present this site's certificate and verify the server against our CA."""
    ca, cert, key = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def client_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """A TLS client context (for NATS) that verifies the server against our CA, host name included, and
    presents this site's certificate (mutual TLS)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_verify_locations(cafile=str(files.ca))
    except (OSError, ssl.SSLError) as error:
        raise TlsError(files.ca, f"not a usable CA certificate ({error})") from None
    try:
        context.load_cert_chain(str(files.cert), str(files.key))
    except (OSError, ssl.SSLError) as error:
        raise TlsError(files.cert, f"certificate and key not usable ({error})") from None
    return context


def site_key(files: TlsFiles) -> ec.EllipticCurvePrivateKey:
    """This site's private key (EC P-256), as ``tongban certs`` wrote it."""
    try:
        key = serialization.load_pem_private_key(_read(files.key), password=None)
    except (ValueError, TypeError):
        raise TlsError(files.key, "not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TlsError(files.key, "site key is not an EC P-256 key")
    return key


def site_public_key(ca: Path, cert_path: Path, site: str) -> ec.EllipticCurvePublicKey:
    """The public key of ``site``'s certificate at ``cert_path``, once it is shown to be that site's.

    Checked: signed directly by our CA, valid now, the SAN URI ``urn:tongban:site:<site>``, an EC P-256
    key. What a partner's NATS messages are opened with, so a certificate of another site, another CA
    or past its validity is refused (TlsError) rather than used.
    """
    _check_site(site)
    try:
        ca_cert = x509.load_pem_x509_certificate(_read(ca))
        cert = x509.load_pem_x509_certificate(_read(cert_path))
    except ValueError:
        raise TlsError(cert_path, "not a PEM certificate") from None
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise TlsError(cert_path, f"not issued by the CA in {ca}") from None
    now = datetime.datetime.now(datetime.UTC)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise TlsError(cert_path, "certificate not valid now")
    if _site_from_pem(cert.public_bytes(serialization.Encoding.PEM)) != site:
        raise TlsError(cert_path, f"certificate does not name site {site}")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TlsError(cert_path, "certificate key is not EC P-256")
    return key


def _site_from_pem(pem: bytes) -> str | None:
    try:
        cert = x509.load_pem_x509_certificate(pem)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith(SITE_URI_PREFIX):
            site = uri.removeprefix(SITE_URI_PREFIX)
            if _SITE_CODE.fullmatch(site):
                return site
    return None


def peer_identity(context: grpc.ServicerContext) -> tuple[str, str] | None:
    """("site", code) or ("auditor", name) from the verified client certificate; None without one."""
    for pem in context.auth_context().get("x509_pem_cert", []):
        try:
            cert = x509.load_pem_x509_certificate(pem)
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, x509.ExtensionNotFound):
            continue
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith(AUDITOR_URI_PREFIX) and _AUDITOR_NAME.fullmatch(uri.removeprefix(AUDITOR_URI_PREFIX)):
                return ("auditor", uri.removeprefix(AUDITOR_URI_PREFIX))
    site = peer_site(context)
    return ("site", site) if site is not None else None


def peer_site(context: grpc.ServicerContext) -> str | None:
    """The calling site's code, from the client certificate gRPC verified during the handshake.

    Prefers the SAN URI ``urn:tongban:site:<code>``, falls back to a 6-digit CN. ``None`` when the
    call did not come over mutual TLS (an insecure server has no verified peer).
    """
    auth = context.auth_context()
    for pem in auth.get("x509_pem_cert", []):
        site = _site_from_pem(pem)
        if site is not None:
            return site
    for raw in auth.get("x509_common_name", []):
        name: str = raw.decode("utf-8", "replace")
        if _SITE_CODE.fullmatch(name):
            return name
    return None
