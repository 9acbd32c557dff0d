"""A real site: CaseHub on a real store behind a real gRPC server on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest

from adapters.bootstrap import build_hub
from adapters.grpc.server import SiteServer
from adapters.settings import PostgresSettings, Settings
from tests.builders import RECEIVING
from tongban.v1 import case_service_pb2_grpc


@dataclass
class RunningSite:
    settings: Settings
    server: SiteServer
    channel: grpc.Channel
    stub: case_service_pb2_grpc.CaseServiceStub

    @property
    def hub(self):  # type: ignore[no-untyped-def]
        return self.server.hub

    def stop(self) -> None:
        self.channel.close()
        self.server.stop(grace=1)


def start_site(settings: Settings) -> RunningSite:
    server = SiteServer(build_hub(settings), "127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    return RunningSite(settings, server, channel, case_service_pb2_grpc.CaseServiceStub(channel))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def site_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    base = Settings(site=RECEIVING, data_dir=tmp_path / "data", listen="127.0.0.1:0")
    if request.param == "sqlite":
        return base
    postgres: PostgresSettings = request.getfixturevalue("postgres_schema")
    return replace(base, store="postgres", postgres=postgres)


@pytest.fixture
def site_factory(site_settings: Settings) -> Iterator[Callable[[], RunningSite]]:
    started: list[RunningSite] = []

    def start() -> RunningSite:
        site = start_site(site_settings)
        started.append(site)
        return site

    yield start
    for site in started:
        site.stop()


@pytest.fixture
def site(site_factory: Callable[[], RunningSite]) -> RunningSite:
    return site_factory()
