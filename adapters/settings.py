"""Site configuration: one frozen, typed object, loaded once from a TOML file by the composition root.

Secrets never live in the file: the PII key is read from the environment variable the file names.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from grpc import StatusCode

from adapters.auth.oidc import OidcSettings
from adapters.retry import Backoff, GrpcRetry
from hub.domain.deadlines import DeadlinePolicy
from hub.domain.values import Role


class ConfigError(Exception):
    """The configuration file is missing, unreadable or wrong; the message says where."""


@dataclass(frozen=True)
class PostgresSettings:
    host: str = "127.0.0.1"
    port: int = 5432
    dbname: str = "tongban"
    user: str = "postgres"
    password: str = ""
    schema: str = "tongban"


@dataclass(frozen=True)
class PartnerSettings:
    """How to reach one partner site: over gRPC (its ExchangeService address) or NATS JetStream."""

    site: str
    channel: Literal["grpc", "nats"] = "grpc"
    address: str = ""


@dataclass(frozen=True)
class ReconcileSettings:
    """[reconcile]: how often to reconcile with each gRPC partner, and the safety bounds."""

    interval: float = 600.0  # seconds between scheduled runs per partner; 0 turns the schedule off
    breaker_share: float = 0.01  # stop auto-repair when more than this share of cases differ ...
    breaker_floor: int = 50  # ... and more than this many
    pending_grace: float = 300.0  # our events younger than this may still be in flight: recheck next run
    branching: int = 16
    id_list_threshold: int = 32
    max_frame_bytes: int = 1 << 20


@dataclass(frozen=True)
class RetrySettings:
    """[retry.relay], [retry.index], [retry.grpc]: how the followers and partner calls try again.

    Followers (the relays, the read model's follower) retry every failure after a growing pause: their
    work is idempotent from a stored position. A gRPC call retries inside itself on transient codes
    only (``grpc.transient``, by status name); any other answer is final and reaches the caller.
    """

    relay: Backoff = field(default_factory=lambda: Backoff(first=0.1, most=5.0))
    index: Backoff = field(default_factory=lambda: Backoff(first=0.5, most=10.0))
    grpc: GrpcRetry = field(default_factory=GrpcRetry)


@dataclass(frozen=True)
class AuthSettings:
    """[auth]: how staff-port callers prove who they are (adapters/auth).

    ``embedded``: the site's own staff directory and tokens it signs; ``oidc``: tokens of the
    province's identity service ([auth.oidc]). Either way, ``services`` maps service-account names
    (client certificates from ``tongban certs --service``) to roles.
    """

    mode: Literal["embedded", "oidc"] = "embedded"
    token_ttl: float = 8 * 3600.0  # seconds an embedded token is valid
    token_key_file: Path | None = None  # Ed25519 token key; default <data_dir>/staff-token.pem
    login_max_failures: int = 5  # failed logins per staff id before a lockout (per address: 4x this)
    login_lockout: float = 30.0  # first lockout in seconds, doubling with each further failure ...
    login_lockout_max: float = 900.0  # ... up to this
    active_cache_seconds: float = 5.0  # how long "this account is active" is believed before re-reading
    oidc: OidcSettings | None = None
    services: dict[str, Role] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    site: str
    site_name: str = ""
    environment: Literal["development", "production"] = "development"
    store: Literal["sqlite", "postgres"] = "sqlite"
    data_dir: Path = Path(".data")
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    listen: str = "127.0.0.1:7400"
    staff_workers: int = 16  # [server] workers: staff RPCs served at once (group commit batches what they send)
    staff_tls: bool = False  # [server] tls: the staff port over TLS with the site certificate (certs_dir)
    # [server] client_certs: "required" = every client shows a certificate from the site CA (service accounts
    # act by it; staff still send tokens). gRPC's Python server cannot ask for a certificate and verify it
    # without requiring it, so there is no "optional": run systems and staff on separate sites' ports if needed.
    staff_client_certs: Literal["none", "required"] = "none"
    auth: AuthSettings = field(default_factory=AuthSettings)
    pii_key_env: str = "TONGBAN_PII_KEY"
    calendar_dir: Path | None = None
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"  # "warning" drops the line per RPC and batch
    policy: DeadlinePolicy = field(default_factory=DeadlinePolicy)
    exchange_listen: str | None = None
    certs_dir: Path | None = None
    nats_url: str | None = None
    nats_credentials: Path | None = None  # [exchange] the site's nkey seed: TLS (certs_dir) and auth to NATS
    partners: tuple[PartnerSettings, ...] = ()
    max_clock_skew_seconds: float = 300.0  # [exchange] a partner's event may be this far ahead of our clock
    max_lamport_jump: int = 100_000  # [exchange] ... and its Lamport clock this far ahead of its seq
    agreements_file: Path | None = None  # None: the packaged seed agreements (routing/data)
    metrics_listen: str | None = None  # e.g. "127.0.0.1:9464": serves /metrics
    audit_listen: str | None = None  # the read-only audit port (mutual TLS; auditors and partner sites)
    audit_key_file: Path | None = None  # Ed25519 signing key for checkpoints; default <data_dir>/audit-signing.pem
    checkpoint_interval: float = 60.0  # seconds between signed checkpoints of the event chain
    health_interval: float = 2.0  # seconds between readiness checks of the store and NATS
    reconcile: ReconcileSettings = field(default_factory=ReconcileSettings)
    group_commit_max: int = 256  # [store] at most this many staff commands stored in one transaction (1: off)
    group_commit_window_ms: float = 5.0  # [store] how long the oldest waiting command waits for company
    snapshot_interval: int = 50  # [store] a snapshot of a case every this many of its events (0: none)
    retry: RetrySettings = field(default_factory=RetrySettings)

    @property
    def pii_key(self) -> str | None:
        return os.environ.get(self.pii_key_env) or None

    def event_store_env(self) -> dict[str, str]:
        """The eventsourcing library's environment for this site's store."""
        env: dict[str, str] = {}
        if self.store == "sqlite":
            env["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
            env["SQLITE_DBNAME"] = str(self.data_dir / "events.sqlite3")
            env["SQLITE_LOCK_TIMEOUT"] = "10"
            env["PROCESS_RECORDER_TOPIC"] = "adapters.store.digest_index:SqliteDigestRecorder"
        else:
            pg = self.postgres
            env.update(
                PERSISTENCE_MODULE="eventsourcing.postgres",
                POSTGRES_HOST=pg.host,
                POSTGRES_PORT=str(pg.port),
                POSTGRES_DBNAME=pg.dbname,
                POSTGRES_USER=pg.user,
                POSTGRES_PASSWORD=pg.password,
                POSTGRES_SCHEMA=pg.schema,
                PROCESS_RECORDER_TOPIC="adapters.store.digest_index:PostgresDigestRecorder",
            )
        if self.pii_key:
            env["CIPHER_TOPIC"] = "eventsourcing.cryptography:AESCipher"
            env["CIPHER_KEY"] = self.pii_key
        return env


def load_settings(path: Path, overrides: dict[str, Any] | None = None) -> Settings:
    """Read a site config file. Relative paths in it are relative to the file's folder."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for section, values in (overrides or {}).items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return settings_from(raw, base=path.parent)


def settings_from(raw: dict[str, Any], base: Path = Path(".")) -> Settings:
    """The settings a parsed config file gives; anything of the wrong type or shape is a ConfigError
    (one line for the operator), never a traceback."""
    try:
        return _settings_from(raw, base)
    except ConfigError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise ConfigError(f"a setting has the wrong type or shape: {type(exc).__name__}: {exc}") from None


def _settings_from(raw: dict[str, Any], base: Path) -> Settings:
    site = raw.get("site", {})
    store = raw.get("store", {})
    server = raw.get("server", {})
    code = str(site.get("code", ""))
    if not re.fullmatch(r"\d{6}", code):
        raise ConfigError(f"[site] code must be a 6-digit region code, got {code!r}")
    kind = store.get("kind", "sqlite")
    if kind not in ("sqlite", "postgres"):
        raise ConfigError(f"[store] kind must be 'sqlite' or 'postgres', got {kind!r}")
    try:
        postgres = PostgresSettings(**store.get("postgres", {}))
        policy = DeadlinePolicy(**raw.get("deadlines", {}))
        reconcile = ReconcileSettings(**raw.get("reconcile", {}))
    except TypeError as exc:
        raise ConfigError(f"unknown setting: {exc}") from None
    retry = _retry(raw.get("retry", {}))
    calendar_dir = raw.get("calendar", {}).get("notices_dir")
    log_format = raw.get("logging", {}).get("format", "console")
    if log_format not in ("console", "json"):
        raise ConfigError(f"[logging] format must be 'console' or 'json', got {log_format!r}")
    group_max, group_window = store.get("group_commit_max", 256), store.get("group_commit_window_ms", 5.0)
    if not isinstance(group_max, int) or group_max < 1:
        raise ConfigError(f"[store] group_commit_max must be a whole number >= 1, got {group_max!r}")
    if not isinstance(group_window, int | float) or not 0 <= group_window <= 1000:
        raise ConfigError(f"[store] group_commit_window_ms must be between 0 and 1000, got {group_window!r}")
    snapshot_interval = store.get("snapshot_interval", 50)
    if not isinstance(snapshot_interval, int) or snapshot_interval < 0:
        raise ConfigError(f"[store] snapshot_interval must be a whole number >= 0, got {snapshot_interval!r}")
    log_level = raw.get("logging", {}).get("level", "info")
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"[logging] level must be debug, info, warning or error, got {log_level!r}")
    exchange = raw.get("exchange", {})
    partners = tuple(_partner(p) for p in raw.get("partners", []))
    certs_dir = exchange.get("certs_dir")
    if any(p.channel == "nats" for p in partners) and not exchange.get("nats_url"):
        raise ConfigError("[exchange] nats_url is required when a partner uses channel = 'nats'")
    nats_credentials = exchange.get("nats_credentials")
    if nats_credentials and not exchange.get("nats_url"):
        raise ConfigError("[exchange] nats_credentials needs nats_url")
    if exchange.get("nats_url") and not certs_dir:
        raise ConfigError("[exchange] certs_dir is required with nats_url: NATS payloads are sealed with the "
                          "site certificates (and NATS TLS uses them)")
    skew, jump = exchange.get("max_clock_skew_seconds", 300.0), exchange.get("max_lamport_jump", 100_000)
    if isinstance(skew, bool) or not isinstance(skew, int | float) or not 0 <= skew <= 86_400:
        raise ConfigError(f"[exchange] max_clock_skew_seconds must be between 0 and 86400, got {skew!r}")
    if isinstance(jump, bool) or not isinstance(jump, int) or not 1 <= jump <= 1_000_000_000:
        raise ConfigError(f"[exchange] max_lamport_jump must be a whole number from 1 to 10**9, got {jump!r}")
    if (exchange.get("listen") or raw.get("audit", {}).get("listen")) and not certs_dir:
        raise ConfigError("[exchange] certs_dir is required: partners and auditors connect over mutual TLS")
    environment = site.get("environment", "development")
    if environment not in ("development", "production"):
        raise ConfigError(f"[site] environment must be 'development' or 'production', got {environment!r}")
    staff_tls, client_certs = server.get("tls", False), server.get("client_certs", "none")
    if not isinstance(staff_tls, bool):
        raise ConfigError(f"[server] tls must be true or false, got {staff_tls!r}")
    if client_certs not in ("none", "required"):
        raise ConfigError(f"[server] client_certs must be 'none' or 'required', got {client_certs!r}")
    if staff_tls and not certs_dir:
        raise ConfigError("[server] tls = true needs [exchange] certs_dir (the site certificate and CA)")
    auth = _auth(raw.get("auth", {}), base)
    return Settings(
        site=code,
        site_name=str(site.get("name", "")),
        environment=environment,
        store=kind,
        data_dir=(base / store.get("data_dir", ".data")).resolve(),
        postgres=postgres,
        listen=str(server.get("listen", "127.0.0.1:7400")),
        staff_workers=int(server.get("workers", 16)),
        staff_tls=staff_tls,
        staff_client_certs=client_certs,
        auth=auth,
        pii_key_env=str(raw.get("security", {}).get("pii_key_env", "TONGBAN_PII_KEY")),
        calendar_dir=(base / calendar_dir).resolve() if calendar_dir else None,
        log_format=log_format,
        log_level=log_level,
        policy=policy,
        exchange_listen=exchange.get("listen"),
        certs_dir=(base / certs_dir).resolve() if certs_dir else None,
        nats_url=exchange.get("nats_url"),
        nats_credentials=(base / nats_credentials).resolve() if nats_credentials else None,
        partners=partners,
        max_clock_skew_seconds=float(skew),
        max_lamport_jump=jump,
        metrics_listen=raw.get("metrics", {}).get("listen"),
        audit_listen=raw.get("audit", {}).get("listen"),
        audit_key_file=(base / key).resolve() if (key := raw.get("audit", {}).get("key_file")) else None,
        checkpoint_interval=float(raw.get("audit", {}).get("checkpoint_interval", 60.0)),
        health_interval=float(raw.get("health", {}).get("interval", 2.0)),
        reconcile=reconcile,
        group_commit_max=group_max,
        group_commit_window_ms=float(group_window),
        snapshot_interval=snapshot_interval,
        retry=retry,
        agreements_file=(base / agreements).resolve() if (agreements := raw.get("routing", {}).get("agreements"))
        else None,
    )


def _role(where: str, value: Any) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not a role ({', '.join(r.value for r in Role)})") from None


def _auth(raw: dict[str, Any], base: Path) -> AuthSettings:
    raw = dict(raw)
    oidc_raw, services = dict(raw.pop("oidc", {})), raw.pop("services", {})
    mode = raw.pop("mode", "embedded")
    if mode not in ("embedded", "oidc"):
        raise ConfigError(f"[auth] mode must be 'embedded' or 'oidc', got {mode!r}")
    key_file = raw.pop("token_key_file", None)
    try:
        numbers = {k: float(v) if k != "login_max_failures" else int(v) for k, v in raw.items()}
        auth = AuthSettings(mode=mode, token_key_file=(base / key_file).resolve() if key_file else None,
                            services={str(k): _role(f"[auth.services] {k}", v) for k, v in services.items()},
                            **numbers)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[auth]: {exc}") from None
    if auth.token_ttl <= 0 or auth.login_max_failures < 1:
        raise ConfigError("[auth] token_ttl must be > 0 and login_max_failures >= 1")
    if mode == "embedded":
        return auth
    roles = {str(k): _role(f"[auth.oidc.roles] {k}", v) for k, v in oidc_raw.pop("roles", {}).items()}
    for name in ("jwks_file", "public_key_file"):
        if oidc_raw.get(name):
            oidc_raw[name] = (base / oidc_raw[name]).resolve()
    if "algorithms" in oidc_raw:
        oidc_raw["algorithms"] = tuple(str(a) for a in oidc_raw["algorithms"])
    try:
        oidc = OidcSettings(roles=roles, **oidc_raw)
    except TypeError as exc:
        raise ConfigError(f"[auth.oidc]: {exc}") from None
    if not oidc.issuer or not oidc.audience or not (oidc.jwks_file or oidc.public_key_file):
        raise ConfigError("[auth.oidc] needs issuer, audience and jwks_file or public_key_file")
    if "none" in (a.lower() for a in oidc.algorithms):
        raise ConfigError("[auth.oidc] algorithms may not include 'none'")
    if not roles:
        raise ConfigError("[auth.oidc.roles] must map at least one identity-service role to ours")
    return replace(auth, oidc=oidc)


def production_problems(settings: Settings) -> list[str]:
    """Why a site that says it is production must not start (empty: it may). A production site keeps
    applicant PII encrypted at rest, serves staff only over TLS, and signs staff in through the
    province's identity service (a local password list has no central leaver process and no MFA)."""
    if settings.environment != "production":
        return []
    problems = []
    if not settings.pii_key:
        problems.append(f"no PII key (set {settings.pii_key_env})")
    if not settings.staff_tls:
        problems.append("the staff port is plaintext (set [server] tls = true)")
    if settings.auth.mode != "oidc":
        problems.append("staff sign in with embedded passwords (set [auth] mode = \"oidc\")")
    return problems


def _backoff(section: str, raw: dict[str, Any], default: Backoff) -> Backoff:
    try:
        backoff = Backoff(**{k: float(v) for k, v in raw.items()}) if raw else default
        backoff.check(f"[retry.{section}]")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"[retry.{section}]: {exc}") from None
    return backoff


def _retry(raw: dict[str, Any]) -> RetrySettings:
    defaults = RetrySettings()
    unknown = set(raw) - {"relay", "index", "grpc"}
    if unknown:
        raise ConfigError(f"[retry] has no section {', '.join(sorted(unknown))} (relay, index, grpc)")
    grpc_raw = dict(raw.get("grpc", {}))
    backoff = _backoff("grpc", {k: grpc_raw.pop(k) for k in ("first", "most", "multiplier", "jitter")
                                if k in grpc_raw}, defaults.grpc.backoff)
    try:
        codes = grpc_raw.pop("transient", None)
        transient = defaults.grpc.transient if codes is None else frozenset(
            StatusCode[str(name).upper()] for name in codes)
        call = GrpcRetry(backoff=backoff, transient=transient, **grpc_raw)
    except (TypeError, KeyError) as exc:
        raise ConfigError(f"[retry.grpc]: {exc}") from None
    return RetrySettings(relay=_backoff("relay", raw.get("relay", {}), defaults.relay),
                         index=_backoff("index", raw.get("index", {}), defaults.index), grpc=call)


def _partner(raw: dict[str, Any]) -> PartnerSettings:
    site, channel, address = str(raw.get("site", "")), raw.get("channel", "grpc"), str(raw.get("address", ""))
    if not re.fullmatch(r"\d{6}", site):
        raise ConfigError(f"[[partners]] site must be a 6-digit region code, got {site!r}")
    if channel not in ("grpc", "nats"):
        raise ConfigError(f"[[partners]] {site}: channel must be 'grpc' or 'nats', got {channel!r}")
    if channel == "grpc" and not address:
        raise ConfigError(f"[[partners]] {site}: address is required for channel 'grpc'")
    return PartnerSettings(site, channel, address)


def describe(settings: Settings) -> dict[str, str]:
    """Settings as strings for a start-up log line (no secrets)."""
    skip = ("postgres", "policy", "partners", "reconcile", "retry", "auth")
    out = {name: str(value) for name, value in vars(settings).items() if name not in skip}
    out["partners"] = ", ".join(f"{p.site}/{p.channel}" for p in settings.partners)
    if settings.store == "postgres":
        pg = settings.postgres
        out["postgres"] = f"{pg.user}@{pg.host}:{pg.port}/{pg.dbname} schema={pg.schema}"
    out["pii_encryption"] = "on" if settings.pii_key else "off"
    out["auth"] = settings.auth.mode + (f" services={','.join(sorted(settings.auth.services))}"
                                        if settings.auth.services else "")
    return out
