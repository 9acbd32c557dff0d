"""A real site: CaseHub on a real store behind a real gRPC server on a free loopback port.

Every call on the staff port is authenticated: a site starts with the staff accounts a test names
(in its own directory, password ``PASSWORD``), and ``site.stub`` is the first account signed in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import pytest

from adapters.auth.client import login, signed_channel
from adapters.auth.passwords import hash_password
from adapters.bootstrap import StaffIdentity, build_clocks, build_hub, build_identity, build_index, staff_server
from adapters.grpc.server import SiteServer
from adapters.settings import PostgresSettings, Settings
from hub.application.case_hub import CaseHub
from hub.application.group_commit import GroupCommitter
from hub.application.ports import CaseIndex
from hub.application.read_model import CaseReadModel
from hub.domain.values import Actor, Role
from tests.builders import CLERK, HANDLER, HANDLING, RECEIVING
from tests.memory_sites import relay
from tongban.v1 import case_service_pb2_grpc

PASSWORD = "test-password-1"
APPLICANT_CHANNEL = Actor("applicant", Role.APPLICANT, RECEIVING, "好差评系统")
STAFF_OF = {RECEIVING: (CLERK, APPLICANT_CHANNEL), HANDLING: (HANDLER,)}


@dataclass
class RunningSite:
    settings: Settings
    hub: CaseHub
    index: CaseIndex
    server: SiteServer
    channel: grpc.Channel
    identity: StaffIdentity
    stubs: dict[str, case_service_pb2_grpc.CaseServiceStub] = field(default_factory=dict)
    committer: GroupCommitter | None = None

    @property
    def stub(self) -> case_service_pb2_grpc.CaseServiceStub:
        """The first staff account's signed-in client."""
        return next(iter(self.stubs.values()))

    def add_staff(self, actor: Actor, password: str = PASSWORD) -> None:
        assert self.identity.directory is not None
        self.identity.directory.add(actor.staff_id, actor.name or actor.staff_id, actor.role,
                                    hash_password(password), by="test")

    def sign_in(self, staff_id: str, password: str = PASSWORD) -> case_service_pb2_grpc.CaseServiceStub:
        token = login(self.channel, staff_id, password).token
        self.stubs[staff_id] = case_service_pb2_grpc.CaseServiceStub(signed_channel(self.channel, token))
        return self.stubs[staff_id]

    def stop(self) -> None:
        self.channel.close()
        self.server.stop(grace=1)
        if self.committer is not None:
            self.committer.close()
        self.identity.close()
        self.index.close()
        self.hub.close()


def start_site(
    settings: Settings, *, workers: int = 16,
    committer: Callable[[CaseHub], GroupCommitter] | None = None, staff: Sequence[Actor] | None = None,
    tls: tuple[grpc.ServerCredentials, grpc.ChannelCredentials] | None = None,
) -> RunningSite:
    """The staff port over a site built as the composition root builds it (no partners, no loops), with
    ``staff`` (default: the site's accounts in STAFF_OF) in its directory and signed in."""
    hub = build_hub(settings)
    index = build_index(settings)
    clocks = build_clocks(settings, hub)
    identity = build_identity(settings)
    writer = committer(hub) if committer is not None else None
    server = staff_server(hub, CaseReadModel(hub, index, clocks), clocks, "127.0.0.1:0", identity=identity,
                          workers=workers, committer=writer, credentials=tls[0] if tls else None)
    server.start()
    target = f"127.0.0.1:{server.port}"
    channel = grpc.secure_channel(target, tls[1]) if tls else grpc.insecure_channel(target)
    grpc.channel_ready_future(channel).result(timeout=10)
    site = RunningSite(settings, hub, index, server, channel, identity, committer=writer)
    for actor in STAFF_OF.get(settings.site, ()) if staff is None else staff:
        if identity.directory is not None and identity.directory.get(actor.staff_id) is None:
            site.add_staff(actor)
        site.sign_in(actor.staff_id)
    return site


@dataclass
class SitePair:
    """The receiving site (the parametrised store) and the handling site (SQLite), each with its own
    staff: a step is taken at the site whose staff may take it, and ``sync`` relays both ways (the
    exchange itself is tested elsewhere; here it is CaseSharing directly)."""

    receiving: RunningSite
    handling: RunningSite

    def sync(self) -> None:
        relay(self.receiving.hub, self.handling.hub)
        relay(self.handling.hub, self.receiving.hub)

    def at(self, site: str) -> RunningSite:
        return self.receiving if site == self.receiving.settings.site else self.handling


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


@pytest.fixture
def handling_site(tmp_path: Path) -> Iterator[RunningSite]:
    site = start_site(Settings(site=HANDLING, data_dir=tmp_path / "handling", listen="127.0.0.1:0"))
    yield site
    site.stop()


@pytest.fixture
def pair(site: RunningSite, handling_site: RunningSite) -> SitePair:
    return SitePair(site, handling_site)
