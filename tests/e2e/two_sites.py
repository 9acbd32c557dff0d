"""Helpers for tests that run several real sites: certificates, processes, staff calls, waiting."""

from __future__ import annotations

import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
from prometheus_client.parser import text_string_to_metric_families

from adapters.auth.client import login, signed_channel
from adapters.launcher import SiteProcess, SiteSpec
from hub.domain.values import Role
from tests.builders import ID_NUMBER
from tongban.v1 import case_pb2 as pb
from tongban.v1 import case_service_pb2 as svc
from tongban.v1 import case_service_pb2_grpc

PDS, SZ, HZ = "410400", "320500", "330100"
NAMES = {PDS: "平顶山市", SZ: "苏州市", HZ: "杭州市"}
T = TypeVar("T")


PASSWORD = "e2e-password-1"


def actor(site: str, role: int = pb.ROLE_HANDLER) -> pb.Actor:
    """A staff member of ``site``; Staff signs in as them (creating the account at their site first)."""
    kind = pb.Role.Name(role).removeprefix("ROLE_")
    return pb.Actor(staff_id=f"S-{site}-{kind}", role=role, site=site, name=f"{NAMES[site]}工作人员")


CLERK = actor(PDS, pb.ROLE_WINDOW_CLERK)


def eventually(check: Callable[[], T | None], timeout: float = 20.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except grpc.RpcError as error:
            last_error, result = error, None
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


class Staff:
    """Staff clients of one site's CaseService, each signed in at that site: ``step`` acts as ``who``
    (who must belong to this site; their account is created in its directory on first use), reads go
    as the site's reader account."""

    def __init__(self, process: SiteProcess) -> None:
        self.process = process
        self.site = process.spec.site
        self.reader = actor(self.site, pb.ROLE_SUPERVISOR)
        self._tokens: dict[str, str] = {}

    def token(self, who: pb.Actor) -> str:
        assert who.site == self.site, f"{who.staff_id} of {who.site} cannot sign in at {self.site}"
        if who.staff_id not in self._tokens:
            self.process.add_staff(who.staff_id, who.name,
                                   Role(pb.Role.Name(who.role).removeprefix("ROLE_").lower()), PASSWORD)
            with grpc.insecure_channel(self.process.staff_address) as channel:
                self._tokens[who.staff_id] = login(channel, who.staff_id, PASSWORD).token
        return self._tokens[who.staff_id]

    @contextmanager
    def _stub(self, who: pb.Actor) -> Iterator[case_service_pb2_grpc.CaseServiceStub]:
        token = self.token(who)
        with grpc.insecure_channel(self.process.staff_address) as channel:
            yield case_service_pb2_grpc.CaseServiceStub(signed_channel(channel, token))

    def call(self, rpc: str, who: pb.Actor | None = None, **fields: Any) -> Any:
        with self._stub(who or self.reader) as stub:
            return getattr(stub, rpc)(getattr(svc, f"{rpc}Request")(**fields), timeout=10)

    def step(self, rpc: str, case_id: str, who: pb.Actor, **fields: Any) -> pb.Case:
        return self.call(rpc, who, case_id=case_id, actor=who, **fields).case

    def receive(self, handling_site: str = SZ, mode: int = pb.MODE_PROXY, item: str = "KSTB-006",
                co_sites: tuple[str, ...] = ()) -> pb.Case:
        return self.call(
            "ReceiveCase", CLERK, request_id=uuid.uuid4().hex, actor=CLERK, item_code=item, mode=mode,
            handling_site=handling_site, co_handling_sites=list(co_sites),
            applicant=pb.Applicant(kind=pb.APPLICANT_KIND_PERSON, name="王建国", id_type=pb.ID_TYPE_RESIDENT_ID,
                                   id_number=ID_NUMBER, phone="13837512345"),
            materials=[pb.Material(name="居民身份证", copies=1)], applicant_consent=True, identity_verified=True,
        ).case

    def case(self, case_id: str) -> pb.Case | None:
        try:
            return self.call("GetCase", case_id=case_id).case
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise

    def shared(self, case_id: str) -> list[tuple[str, int, str]]:
        """(origin, seq, hash) of every event this site holds for the case, sorted."""
        history = self.call("GetCaseHistory", case_id=case_id)
        return sorted((e.origin_site, e.seq, e.event_hash) for e in history.entries)

    def wait_state(self, case_id: str, state: int, timeout: float = 20.0) -> pb.Case:
        return eventually(lambda: (c := self.case(case_id)) is not None and c.state == state and c,
                          timeout, f"{self.process.spec.site} to see {pb.CaseState.Name(state)}")


def start_sites(started: list[SiteProcess], *processes: SiteProcess) -> list[Staff]:
    """Start each site process (the ``started`` fixture stops them) and give a staff client of each."""
    for process in processes:
        process.start()
        started.append(process)
    return [Staff(p) for p in processes]


def spec(site: str, root: Path, certs: Path, **changes: Any) -> SiteSpec:
    return SiteSpec(site=site, name=NAMES[site], data_dir=root / site / "data", certs_dir=certs, **changes)


def assert_same_shared_events(case_id: str, *sites: Staff, timeout: float = 20.0) -> None:
    """Every site ends up holding exactly the same shared events for the case."""
    def same() -> bool:
        held = [s.shared(case_id) for s in sites]
        return all(h == held[0] for h in held) and bool(held[0])

    eventually(same, timeout, "all sites to hold the same shared events")


def scrape(process: SiteProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{process.spec.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)
