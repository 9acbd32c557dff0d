"""Dead letters on the gRPC path, end to end: a real partner port (mutual TLS) that refuses one case,
the relay on a real SQLite store, and the operator's `tongban exchange` commands on the site's config."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import grpc
import pytest
from click.testing import CliRunner

from adapters.bootstrap import build_hub
from adapters.cli.exchange import exchange
from adapters.exchange.grpc_client import GrpcPartner
from adapters.exchange.grpc_service import ExchangeServicer
from adapters.exchange.relay import Relay
from adapters.launcher import make_certs
from adapters.settings import Settings, load_settings
from adapters.tls import TlsFiles, channel_credentials, peer_site, server_credentials
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.application.dead_letters import DeadLetters
from hub.domain.case import Case
from hub.domain.errors import NotPermitted
from hub.domain.parked import ParkedStatus
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent
from tests.builders import CLERK, HANDLING, RECEIVING, actor_data, receive_request
from tongban.v1 import exchange_pb2_grpc


class Refusing(CaseSharing):
    """The partner's side: refuses (PERMISSION_DENIED, reason CASE_ON_HOLD) any batch with an event of a
    case in ``refused``, storing nothing; remembers the (case, seq) of each event it stored, in order."""

    def __init__(self, hub: CaseHub) -> None:
        super().__init__(hub)
        self.refused: set[UUID] = set()
        self.stored: list[tuple[UUID, int]] = []

    def ingest(self, sender: str, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        if any(e.case_id in self.refused for e in events):
            refusal = NotPermitted("本站暂不接收该办件")
            refusal.reason = "CASE_ON_HOLD"
            raise refusal
        before = {e.case_id: self.held(e.case_id) for e in events}
        receipts = super().ingest(sender, events)
        for event in sorted(events, key=lambda e: (str(e.case_id), e.seq)):
            if before[event.case_id] < event.seq <= self.held(event.case_id):
                self.stored.append((event.case_id, event.seq))
        return receipts

    def held(self, case_id: UUID) -> int:
        case = self.log.find(case_id, Case)
        return case.last_seq(RECEIVING) if case is not None else 0

    def of(self, case_id: UUID) -> list[int]:
        return [seq for case, seq in self.stored if case == case_id]


@dataclass
class Sites:
    sender: CaseHub
    partner: Refusing
    config: Path
    client: GrpcPartner
    cases: list[UUID]

    def relay(self) -> Relay:
        return Relay(CaseSharing(self.sender), self.client)

    def forward(self, case_id: UUID) -> None:
        self.sender.execute(c.parse(c.ForwardCase, {"case_id": str(case_id), "actor": actor_data(CLERK),
                                                    "courier": "EMS", "tracking_number": "1173945026718"}))

    def cli(self, *args: str) -> tuple[int, str]:
        done = CliRunner(env={"COLUMNS": "300"}).invoke(exchange, [args[0], "--config", str(self.config), *args[1:]])
        return done.exit_code, done.output

    def entries(self, *, include_closed: bool = False) -> list[dict[str, object]]:
        code, output = self.cli("parked", "--json", *(["--all"] if include_closed else []))
        assert code == 0, output
        listed: list[dict[str, object]] = json.loads(output)
        return listed


def drain(relay: Relay) -> None:
    for _ in range(1000):
        if not relay.pump():
            return
    raise AssertionError("the relay never went idle")


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[Sites]:
    certs = make_certs(tmp_path / "certs", RECEIVING, HANDLING)
    partner_hub = build_hub(Settings(site=HANDLING, data_dir=tmp_path / "b"))
    partner = Refusing(partner_hub)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[("grpc.so_reuseport", 0)])
    exchange_pb2_grpc.add_ExchangeServiceServicer_to_server(ExchangeServicer(partner, peer_site), server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(TlsFiles.for_site(certs, HANDLING)))
    server.start()
    config = tmp_path / "site.toml"
    config.write_text(
        f'[site]\ncode = "{RECEIVING}"\n[store]\nkind = "sqlite"\ndata_dir = "{tmp_path / "a"}"\n'
        f'[exchange]\ncerts_dir = "{certs}"\n'
        f'[[partners]]\nsite = "{HANDLING}"\nchannel = "grpc"\naddress = "127.0.0.1:{port}"\n', encoding="utf-8")
    sender = build_hub(load_settings(config))
    client = GrpcPartner(RECEIVING, HANDLING, f"127.0.0.1:{port}",
                         channel_credentials(TlsFiles.for_site(certs, RECEIVING)))
    cases = [sender.receive(c.parse(c.ReceiveCase, receive_request(f"r-{n}")))[0].id for n in range(4)]
    yield Sites(sender, partner, config, client, cases)
    client.close()
    server.stop(1).wait()
    sender.close()
    partner_hub.close()


def test_a_refused_case_is_parked_the_others_arrive_and_a_replay_delivers_it_once_in_order(sites: Sites) -> None:
    bad, good = sites.cases[1], sites.cases[2]
    sites.partner.refused.add(bad)
    relay = sites.relay()
    drain(relay)
    assert all(sites.partner.of(case) == [1] for case in sites.cases if case != bad)
    assert sites.partner.of(bad) == []

    sites.forward(bad)
    sites.forward(good)
    drain(relay)
    assert sites.partner.of(good) == [1, 2]  # later cases still arrive
    assert sites.partner.of(bad) == []  # the refused case's later events wait

    [entry] = sites.entries()
    assert entry["partner"] == HANDLING and entry["case_id"] == str(bad)
    assert (entry["seqs"], entry["types"], entry["held"]) == ([1], ["CaseReceived"], [2])
    refusal = (entry["code"], entry["reason"], entry["message"])
    assert refusal == ("PERMISSION_DENIED", "CASE_ON_HOLD", "本站暂不接收该办件")
    assert entry["status"] == "parked" and entry["parked_at"]
    code, table = sites.cli("parked")
    assert code == 0 and str(bad) in table and "CASE_ON_HOLD" in table

    code, output = sites.cli("replay", "--partner", HANDLING, "--case", str(bad), "--by", "王工")
    assert code == 4, output  # not fixed yet: refused again, still parked
    assert sites.entries()[0]["refusals"] == 2

    sites.partner.refused.clear()  # the partner fixed its side
    code, output = sites.cli("replay", "--partner", HANDLING, "--by", "王工")
    assert code == 0 and "已重放 1 件" in output, output
    assert sites.partner.of(bad) == [1, 2]  # once, in order
    assert sites.entries() == []
    [closed] = sites.entries(include_closed=True)
    assert closed["status"] == "replayed" and closed["by"] == "王工"

    drain(relay)  # the running relay carries on: nothing sent twice, later events go out as usual
    sites.forward(sites.cases[3])
    drain(relay)
    assert sites.partner.of(bad) == [1, 2] and sites.partner.of(sites.cases[3]) == [1, 2]


def test_discard_needs_a_reason_and_an_operator_and_keeps_the_case_undelivered_on_the_record(sites: Sites) -> None:
    bad = sites.cases[0]
    relay = sites.relay()
    drain(relay)
    sites.partner.refused.add(bad)  # the partner refuses the case's next step
    sites.forward(bad)
    drain(relay)
    [entry] = sites.entries()
    assert entry["seqs"] == [2] and entry["types"] == ["CaseForwarded"]

    assert sites.cli("discard", "--partner", HANDLING, "--case", str(bad), "--by", "王工")[0] == 2
    assert sites.cli("discard", "--partner", HANDLING, "--case", str(bad), "--reason", "已线下办结")[0] == 2
    code, output = sites.cli("discard", "--partner", HANDLING, "--case", str(bad), "--reason", "已线下办结",
                             "--by", "王工")
    assert code == 0, output
    assert sites.entries() == []
    [closed] = sites.entries(include_closed=True)
    assert (closed["status"], closed["by"], closed["why"]) == ("discarded", "王工", "已线下办结")
    sites.partner.refused.clear()
    drain(relay)
    assert sites.partner.of(bad) == [1]  # the case stays undelivered
    code, output = sites.cli("replay", "--partner", HANDLING, "--case", str(bad), "--by", "王工")
    assert code == 3, output  # nothing parked for it any more


def test_a_new_relay_on_the_same_store_neither_loses_nor_duplicates_a_parked_entry(sites: Sites) -> None:
    bad = sites.cases[3]
    sites.partner.refused.add(bad)
    drain(sites.relay())
    sites.forward(bad)
    drain(sites.relay())  # a restart: the held-back event is recorded by the new relay
    drain(sites.relay())  # and again: nothing new
    letters = DeadLetters(CaseSharing(sites.sender)).listed(HANDLING, "grpc", include_closed=True)
    assert [(e.case_id, e.seqs, e.held, e.status) for e in letters] == [(bad, (1,), (2,), ParkedStatus.PARKED)]
    assert sum(len(sites.partner.of(case)) for case in sites.cases) == 3
