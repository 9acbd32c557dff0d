"""Applicant PII: encrypted at rest when a key is configured, masked in logs and in default output."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
import structlog
from eventsourcing.cryptography import AESCipher
from psycopg import sql

from adapters.bootstrap import build_clocks, build_hub, build_index
from adapters.settings import PostgresSettings, Settings
from hub.application import commands as c
from hub.application.read_model import CaseReadModel
from ops.logging import configure_logging
from tests.builders import HANDLING, ID_NUMBER, RECEIVING, receive_request
from tests.integration.conftest import SitePair, start_site
from tests.integration.test_grpc_site import LIFECYCLE, run_lifecycle

PHONE = "13837512345"


def raw_sqlite(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.glob("*.sqlite3*"))


@pytest.mark.parametrize("encrypted", [True, False])
def test_sqlite_store_holds_pii_only_encrypted_when_keyed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encrypted: bool
) -> None:
    if encrypted:
        monkeypatch.setenv("TONGBAN_PII_KEY", AESCipher.create_key(32))
    else:
        monkeypatch.delenv("TONGBAN_PII_KEY", raising=False)
    settings = Settings(site=RECEIVING, data_dir=tmp_path)
    hub, index = build_hub(settings), build_index(settings)
    case, _ = hub.receive(c.parse(c.ReceiveCase, receive_request()))
    CaseReadModel(hub, index, build_clocks(settings, hub)).refresh()
    assert hub.get_case(case.id).applicant["id_number"] == ID_NUMBER
    index.close()
    hub.close()
    raw = raw_sqlite(tmp_path)
    assert (ID_NUMBER.encode() in raw) is not encrypted
    assert (PHONE.encode() in raw) is not encrypted
    assert ID_NUMBER.encode() not in (tmp_path / "case_index.sqlite3").read_bytes()


def test_postgres_store_encrypts_pii(postgres_schema: PostgresSettings, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGBAN_PII_KEY", AESCipher.create_key(32))
    settings = Settings(site=RECEIVING, store="postgres", postgres=postgres_schema, data_dir=tmp_path)
    hub = build_hub(settings)
    case, _ = hub.receive(c.parse(c.ReceiveCase, receive_request()))
    assert hub.get_case(case.id).applicant["phone"] == PHONE
    hub.close()
    with psycopg.connect(host=postgres_schema.host, port=postgres_schema.port, user=postgres_schema.user,
                         dbname=postgres_schema.dbname) as conn:
        rows = conn.execute(
            sql.SQL("SELECT state FROM {}.tongban_events").format(sql.Identifier(postgres_schema.schema))
        ).fetchall()
    assert rows and not any(ID_NUMBER.encode() in bytes(r[0]) or PHONE.encode() in bytes(r[0]) for r in rows)


def test_wrong_key_does_not_silently_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TONGBAN_PII_KEY", AESCipher.create_key(32))
    hub = build_hub(Settings(site=RECEIVING, data_dir=tmp_path))
    case, _ = hub.receive(c.parse(c.ReceiveCase, receive_request()))
    hub.close()
    monkeypatch.setenv("TONGBAN_PII_KEY", AESCipher.create_key(32))
    other = build_hub(Settings(site=RECEIVING, data_dir=tmp_path))
    with pytest.raises(Exception):  # noqa: B017 - the library's cipher error; what matters is no garbage
        other.get_case(case.id)
    other.close()


def test_logs_of_a_full_lifecycle_carry_no_pii(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json")
    site = start_site(Settings(site=RECEIVING, data_dir=tmp_path, listen="127.0.0.1:0"))
    handling = start_site(Settings(site=HANDLING, data_dir=tmp_path / "handling", listen="127.0.0.1:0"))
    try:
        run_lifecycle(SitePair(site, handling))
        # Even a careless log call with PII in it comes out masked.
        structlog.get_logger("test").info("careless", applicant={"id_number": ID_NUMBER}, note=f"电话 {PHONE}")
    finally:
        site.stop()
        handling.stop()
        err = capsys.readouterr().err
        structlog.reset_defaults()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(lines) >= len(LIFECYCLE) + 1
    assert ID_NUMBER not in err and PHONE not in err
    assert any(line.get("event") == "careless" and "138****2345" in line["note"] for line in lines)


def test_settings_without_key_report_encryption_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adapters.settings import describe

    monkeypatch.delenv("TONGBAN_PII_KEY", raising=False)
    settings = Settings(site=RECEIVING, data_dir=tmp_path)
    assert describe(settings)["pii_encryption"] == "off"
    monkeypatch.setenv("TONGBAN_PII_KEY", "k")
    assert describe(replace(settings))["pii_encryption"] == "on"
