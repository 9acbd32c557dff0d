"""A real nats-server with JetStream per test, secured as the sites run it: mutual TLS from a test CA and
an nkey user per site with per-subject permissions (``tongban nats-config``). Conftests opt in with
``from tests.nats_fixtures import nats_server  # noqa: F401``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.launcher import make_certs
from adapters.nats.server import NatsServer
from tests.builders import HANDLING, OTHER, RECEIVING

NATS_SITES = (RECEIVING, HANDLING, OTHER)  # 平顶山, 苏州, 杭州


def secured_server(root: Path) -> NatsServer:
    """A secured server (not started) for the three test sites; certificates in ``root/certs``."""
    certs = make_certs(root / "certs", *NATS_SITES)
    return NatsServer.secured(root / "nats", certs, list(NATS_SITES))


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started secured server on a free loopback port, its store under tmp_path; stopped afterwards.
    ``nats_server.access(site)`` is how a site connects; ``nats_server.certs_dir`` holds the certificates."""
    server = secured_server(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
