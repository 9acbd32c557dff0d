"""A real site: CaseHub on a real store behind a real gRPC server on a free loopback port."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest

from adapters.bootstrap import build_clocks, build_hub, build_index, staff_server
from adapters.grpc.server import SiteServer
from adapters.settings import PostgresSettings, Settings
from hub.application.case_hub import CaseHub
from hub.application.group_commit import GroupCommitter
from hub.application.ports import CaseIndex
from hub.application.read_model import CaseReadModel
from tests.builders import RECEIVING
from tongban.v1 import case_service_pb2_grpc


@dataclass
class RunningSite:
    settings: Settings
    hub: CaseHub
    index: CaseIndex
    server: SiteServer
    channel: grpc.Channel
    stub: case_service_pb2_grpc.CaseServiceStub
    committer: GroupCommitter | None = None

    def stop(self) -> None:
        self.channel.close()
        self.server.stop(grace=1)
        if self.committer is not None:
            self.committer.close()
        self.index.close()
        self.hub.close()


def start_site(
    settings: Settings, *, workers: int = 16,
    committer: Callable[[CaseHub], GroupCommitter] | None = None,
) -> RunningSite:
    """The staff port over a site built as the composition root builds it (no partners, no loops)."""
    hub = build_hub(settings)
    index = build_index(settings)
    clocks = build_clocks(settings, hub)
    writer = committer(hub) if committer is not None else None
    server = staff_server(hub, CaseReadModel(hub, index, clocks), clocks, "127.0.0.1:0", workers=workers,
                          committer=writer)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    return RunningSite(settings, hub, index, server, channel, case_service_pb2_grpc.CaseServiceStub(channel), writer)


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
