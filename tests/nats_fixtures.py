"""A real nats-server with JetStream per test. Conftests opt in with
``from tests.nats_fixtures import nats_server  # noqa: F401``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.nats.server import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started server on a free loopback port, its store under tmp_path; stopped (or reaped) afterwards."""
    server = NatsServer(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()
