"""[exchange] NATS settings and what the site builds from them: sealing needs the certs dir, a seed
means mutual TLS and an nkey, and the subjects name the sender."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.bootstrap import nats_access
from adapters.exchange.nats_channel import parked_subject, replay_subject, sender_of, subject
from adapters.nats.access import inbox_prefix
from adapters.nats.config import site_permissions
from adapters.settings import ConfigError, settings_from

SITE = {"site": {"code": "410400"}}


def test_nats_needs_the_certs_dir_and_credentials_need_a_url() -> None:
    with pytest.raises(ConfigError, match="certs_dir"):
        settings_from({**SITE, "exchange": {"nats_url": "nats://127.0.0.1:4222"}})
    with pytest.raises(ConfigError, match="nats_url"):
        settings_from({**SITE, "exchange": {"certs_dir": "certs", "nats_credentials": "nats/410400.nk"}})


def test_credentials_mean_mutual_tls_and_an_nkey(tmp_path: Path) -> None:
    settings = settings_from({**SITE, "exchange": {"nats_url": "nats://127.0.0.1:4222", "certs_dir": "certs",
                                                   "nats_credentials": "nats/410400.nk"}}, base=tmp_path)
    assert settings.nats_credentials == (tmp_path / "nats" / "410400.nk").resolve()
    access = nats_access(settings)
    assert access.tls is not None and access.tls.cert.name == "410400.pem"
    assert access.seed_file == settings.nats_credentials
    open_server = nats_access(settings_from({**SITE, "exchange": {"nats_url": "nats://127.0.0.1:4222",
                                                                  "certs_dir": "certs"}}, base=tmp_path))
    assert open_server.tls is None and open_server.connect_options() == {}


def test_the_subject_names_the_sender_and_only_a_well_formed_one_counts() -> None:
    assert subject("320500", "events", "410400") == "tongban.320500.events.410400"
    assert sender_of("tongban.320500.events.410400", "320500", "events") == "410400"
    assert sender_of(replay_subject("tongban.320500.receipts.410400"), "320500", "receipts") == "410400"
    for other in ("tongban.320500.events", "tongban.320500.events.4104", "tongban.330100.events.410400",
                  "tongban.320500.receipts.410400", "tongban.320500.events.410400.x", parked_subject("320500")):
        assert sender_of(other, "320500", "events") is None, other
    with pytest.raises(ValueError):
        subject("320500", "events", "*")


def test_a_site_may_publish_only_as_itself_and_listen_only_to_its_inbox() -> None:
    allowed = site_permissions("320500")
    publish, sub = allowed["publish"]["allow"], allowed["subscribe"]["allow"]
    assert "tongban.*.events.320500" in publish and "tongban.*.receipts.320500" in publish
    assert all(p.endswith(".320500") or p.startswith("tongban.320500.") for p in publish if p.startswith("tongban."))
    assert all("TONGBAN_320500" in p for p in publish if p.startswith("$JS"))
    assert sub == [f"{inbox_prefix('320500')}.>"]
