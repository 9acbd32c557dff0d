"""The NATS JetStream channel between two real hubs (SQLite) through a real, secured nats-server.

Site A (410400, receiving) relays its events to B (320500, handling) with a NatsPartner; both run a
NatsInbox: B's applies the events, A's records B's receipts and resends on a gap. Every client connects
with its site's certificate and nkey, and every payload is sealed for its receiver. Outcomes are
awaited by polling with a deadline, never by sleeping a fixed time.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from uuid import UUID

import nats
import pytest
from click.testing import CliRunner
from nats.js.api import PubAck

from adapters.bootstrap import build_hub
from adapters.cli.exchange import exchange as exchange_cli
from adapters.exchange.nats_channel import (
    MESSAGE_ID,
    MSG_ID,
    DeliveryFailed,
    NatsChannelError,
    NatsInbox,
    NatsPartner,
    NatsUnavailable,
    ParkedMessage,
    Redelivery,
    Sealer,
    list_parked,
    replay_parked,
    stream_name,
    subject,
)
from adapters.exchange.relay import Relay
from adapters.exchange.wire import event_message, receipt_message
from adapters.free_port import free_port
from adapters.launcher import make_certs
from adapters.nats.access import NatsAccess
from adapters.nats.loop import LoopThread
from adapters.nats.server import NatsServer
from adapters.settings import Settings
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.domain.errors import CaseNotFound
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent
from tests.builders import CLERK, HANDLING, OTHER, RECEIVING, actor_data, receive_request
from tests.nats_fixtures import nats_server  # noqa: F401

FAST = Redelivery(gap_first=0.2, failure_first=0.2, longest=1.0)


def eventually(check: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``check`` every 20 ms until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except CaseNotFound:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {timeout}s")
        time.sleep(0.02)


class Probe:
    """Test-side raw access to the server as any of the test sites: publish (sealed or not), read consumer state."""

    def __init__(self, server: NatsServer) -> None:
        self.server = server
        self.loop = LoopThread("nats-probe")

    def sealer(self, site: str) -> Sealer:
        assert self.server.certs_dir is not None
        return Sealer.for_site(self.server.certs_dir, site)

    def _with_js(self, site: str, work: Callable[[Any], Any]) -> Any:
        access = self.server.access(site)

        async def run() -> Any:
            nc = await nats.connect(access.url, allow_reconnect=False, connect_timeout=2, **access.connect_options())
            try:
                return await work(nc.jetstream())
            finally:
                await nc.close()

        return self.loop.run(run(), timeout=10)

    def publish(self, to: str, data: bytes, headers: dict[str, str], as_site: str) -> PubAck:
        async def work(js: Any) -> PubAck:
            ack: PubAck = await js.publish(to, data, headers=dict(headers))
            return ack

        result: PubAck = self._with_js(as_site, work)
        return result

    def event(self, event: SharedEvent, sender: str | None = None, msg_id: str | None = None,
              data: bytes | None = None, sealed: bool = True) -> PubAck:
        """``event`` (or ``data`` in its place) from ``sender`` (its origin by default) to B, sealed by the sender."""
        sender = sender or event.origin
        payload = data if data is not None else event_message(event).SerializeToString()
        if sealed:
            payload = self.sealer(sender).seal("events", HANDLING, event.event_id, payload)
        return self.publish(subject(HANDLING, "events", sender), payload,
                            {MSG_ID: msg_id or f"{sender}:{event.event_id}", MESSAGE_ID: event.event_id},
                            as_site=sender)

    def settled(self, site: str) -> bool:
        """Both of the site's consumers have delivered and settled every message."""
        async def work(js: Any) -> bool:
            for durable in ("hub-events", "hub-receipts"):
                info = await js.consumer_info(stream_name(site), durable)
                if info.num_pending or info.num_ack_pending:
                    return False
            return True

        settled: bool = self._with_js(site, work)
        return settled

    def close(self) -> None:
        self.loop.stop()


class FlakyExchange(CaseSharing):
    """B's exchange whose store fails while ``failing`` is set (a fake, not a mock)."""

    def __init__(self, hub: CaseHub) -> None:
        super().__init__(hub)
        self.failing = False
        self.failures_left = 0
        self.calls = 0

    def ingest(self, sender: str, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        self.calls += 1
        if self.failing or self.failures_left > 0:
            self.failures_left = max(self.failures_left - 1, 0)
            raise OSError("disk I/O error")
        return super().ingest(sender, events)


class Net:
    """Two hubs joined by NATS: A relays to B; both inboxes run once ``start`` is called."""

    def __init__(self, tmp_path: Path, server: NatsServer) -> None:
        self.server, self.url = server, server.url
        assert server.certs_dir is not None
        self.certs = server.certs_dir
        self.a = build_hub(Settings(site=RECEIVING, data_dir=tmp_path / "a"))
        self.b = build_hub(Settings(site=HANDLING, data_dir=tmp_path / "b"))
        self.probe = Probe(server)
        self.to_b = NatsPartner(RECEIVING, HANDLING, server.access(RECEIVING), self.probe.sealer(RECEIVING))
        self.relay = Relay(CaseSharing(self.a), self.to_b)
        self.resending = True
        self.resent: list[CaseReceipt] = []
        self.inboxes: list[NatsInbox] = []

    def inbox(self, sharing: CaseSharing, **options: Any) -> NatsInbox:
        site = sharing.site
        return NatsInbox(sharing, self.server.access(site), self.probe.sealer(site), redelivery=FAST, **options)

    def start(self, exchange_b: CaseSharing | None = None, max_deliver: int = 5) -> None:
        self.inbox_b = self.inbox(exchange_b or CaseSharing(self.b), max_deliver=max_deliver)
        self.inbox_a = self.inbox(CaseSharing(self.a), resend=self._resend)
        for inbox in (self.inbox_b, self.inbox_a):
            inbox.start()
            self.inboxes.append(inbox)

    def _resend(self, receipt: CaseReceipt) -> None:
        if self.resending:
            self.resent.append(receipt)
            self.to_b.resend(CaseSharing(self.a).resend(receipt.case_id, receipt.origin, receipt.missing_from),
                             receipt)

    def new_case(self, n: int = 1) -> UUID:
        case, _ = self.a.receive(c.parse(c.ReceiveCase, receive_request(f"req-{n}")))
        self.step(c.ForwardCase, case.id)
        return case.id

    def step(self, command: type[c.CaseCommand], case_id: UUID, **fields: object) -> None:
        self.a.execute(c.parse(command, {"case_id": str(case_id), "actor": actor_data(CLERK), **fields}))

    def pump_all(self, timeout: float = 30.0) -> None:
        """Pump until the relay has nothing left, retrying failed pumps (server down) until the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.relay.pump() == 0:
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def hashes(self, hub: CaseHub, case_id: UUID) -> list[str]:
        return [e.hash() for e in hub.get_case(case_id).shared_events()]

    def same(self, case_id: UUID) -> bool:
        return self.hashes(self.b, case_id) == self.hashes(self.a, case_id)

    def receipted(self, case_id: UUID) -> bool:
        """A holds B's receipt for everything A sent, and every receipt matched A's chain."""
        receipts = CaseSharing(self.a).receipts(case_id)
        through = self.a.get_case(case_id).last_seq(RECEIVING)
        return bool(receipts) and all(r["matched"] for r in receipts) and any(
            r["stored_through"] == through and r["status"] == "stored" for r in receipts
        )

    def parked(self, site: str = HANDLING) -> list[ParkedMessage]:
        return list_parked(self.server.access(site), site)

    def replay(self, site: str, stream_seq: int | None = None) -> int:
        return replay_parked(self.server.access(site), site, stream_seq)

    def cli(self, site: str = HANDLING) -> list[str]:
        """The `tongban exchange` options that connect as ``site``."""
        return ["--nats", self.url, "--site", site, "--certs", str(self.certs),
                "--nats-credentials", str(self.server.seed_file(site))]

    def close(self) -> None:
        for inbox in self.inboxes:
            inbox.stop()
        self.to_b.close()
        self.probe.close()
        for hub in (self.a, self.b):
            hub.close()


@pytest.fixture
def net(tmp_path: Path, nats_server: NatsServer) -> Iterator[Net]:  # noqa: F811
    network = Net(tmp_path, nats_server)
    try:
        yield network
    finally:
        network.close()


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [t.name for t in set(threading.enumerate()) - before if t.is_alive() and t.name.startswith("nats")]
    assert not leaked, f"threads left running: {leaked}"


def test_events_reach_b_and_receipts_reach_a(net: Net) -> None:
    net.start()
    case_id = net.new_case()
    net.pump_all()
    eventually(lambda: net.same(case_id), what="B holds A's events")
    assert net.b.get_case(case_id).version == 2
    eventually(lambda: net.receipted(case_id), what="A records B's receipts")
    eventually(lambda: net.probe.settled(HANDLING) and net.probe.settled(RECEIVING), what="consumers settled")
    net.pump_all()  # A's log moved on (receipts recorded): nothing more to send
    assert net.parked(HANDLING) == [] and net.parked(RECEIVING) == []


def test_a_duplicate_is_stored_once_whatever_its_message_id(net: Net) -> None:
    net.start()
    case_id = net.new_case()
    net.pump_all()
    eventually(lambda: net.same(case_id) and net.probe.settled(HANDLING), what="first delivery")
    version = net.b.get_case(case_id).version
    first, second = net.a.get_case(case_id).shared_events()
    assert net.probe.event(second).duplicate is True  # same Nats-Msg-Id: the server drops it
    assert not net.probe.event(second, msg_id="another-id").duplicate  # reaches the hub, which ignores it
    assert not net.probe.event(first, msg_id="yet-another-id").duplicate
    eventually(lambda: net.probe.settled(HANDLING), what="duplicates consumed")
    assert net.b.get_case(case_id).version == version
    assert net.same(case_id)
    assert net.parked() == []


def test_an_event_that_overtakes_the_one_before_waits_for_it(net: Net) -> None:
    net.resending = False  # the gap closes because seq 1 arrives late, not because A resends it
    net.start()
    case_id = net.new_case()
    first, second = net.a.get_case(case_id).shared_events()
    net.probe.event(second)
    eventually(lambda: any(r["status"] == "gap" for r in CaseSharing(net.a).receipts(case_id)),
               what="B reports the gap to A")
    with pytest.raises(CaseNotFound):
        net.b.get_case(case_id)  # seq 2 was not stored on its own
    net.probe.event(first)
    eventually(lambda: net.same(case_id), what="both events applied, in order")
    assert [e.seq for e in net.b.get_case(case_id).shared_events(RECEIVING)] == [1, 2]
    eventually(lambda: net.receipted(case_id), what="A records the final receipt")
    eventually(lambda: net.probe.settled(HANDLING), what="seq 2 settled")
    assert net.parked() == []


def test_a_lost_event_is_resent_when_b_reports_the_gap(net: Net) -> None:
    net.start()
    case_id = net.new_case()
    _first, second = net.a.get_case(case_id).shared_events()
    net.probe.event(second)  # seq 1 never travels on its own
    eventually(lambda: net.same(case_id), what="the gap filled by A's resend")
    assert net.resent and net.resent[0].missing_from == 1
    eventually(lambda: net.receipted(case_id), what="A records the final receipt")


def test_poison_messages_are_parked_with_a_reason_and_replayable(net: Net) -> None:
    net.start()
    case_id = net.new_case()
    first, _second = net.a.get_case(case_id).shared_events()
    net.probe.event(first, sender=OTHER)  # a third site, on its own subject, passes A's event off as its own
    net.probe.event(first, msg_id="junk", data=b"\xff\x00 not a protobuf")  # sealed, but not an event
    net.probe.event(first, msg_id="unsealed", sealed=False)  # A's event in the clear
    tampered = event_message(first)
    tampered.data_json = b'{"note":"changed on the way"}'
    net.probe.event(first, msg_id="tampered", data=tampered.SerializeToString())
    forged = dataclasses.replace(first, origin=OTHER, event_id=str(uuid.uuid4()), actor={**first.actor, "site": OTHER})
    net.probe.event(forged)  # an event of OTHER's own, for a case not routed to it
    net.probe.publish(subject(RECEIVING, "receipts", HANDLING), b"\xff\xff", {MSG_ID: "bad-receipt",
                      MESSAGE_ID: "bad-receipt"}, as_site=HANDLING)

    eventually(lambda: len(net.parked()) == 5, what="five events parked at B")
    eventually(lambda: len(net.parked(RECEIVING)) == 1, what="the bad receipt parked at A")
    reasons = {p.reason.split(":", 1)[0]: p for p in net.parked()}
    assert set(reasons) == {"sender_mismatch", "undecodable", "unsealable", "HASH_MISMATCH", "NOT_ROUTED"}
    mismatch = reasons["sender_mismatch"]
    assert (mismatch.sender, mismatch.event_id, mismatch.case_id) == (OTHER, first.event_id, str(case_id))
    assert mismatch.parked_from == subject(HANDLING, "events", OTHER)
    assert reasons["unsealable"].sender == RECEIVING
    assert "未在" in reasons["NOT_ROUTED"].reason  # the hub's own words survive the header round trip
    assert net.parked(RECEIVING)[0].reason.startswith("unsealable")
    with pytest.raises(CaseNotFound):
        net.b.get_case(case_id)  # nothing stored

    assert net.replay(HANDLING, mismatch.stream_seq) == 1  # still refused: parked again, still as OTHER's
    eventually(lambda: any(p.reason.startswith("sender_mismatch") and p.stream_seq > mismatch.stream_seq
                           and p.sender == OTHER for p in net.parked()), what="the replayed message parked again")
    assert len(net.parked()) == 5
    assert net.replay(RECEIVING) == 1
    eventually(lambda: len(net.parked(RECEIVING)) == 1 and net.probe.settled(RECEIVING), what="receipt re-parked")

    # Message ids name their sender, so nothing OTHER sent took the genuine events' ids: they arrive.
    net.pump_all()
    eventually(lambda: net.same(case_id), what="genuine events applied")


def test_the_operator_cli_lists_and_replays_parked_messages(net: Net) -> None:
    net.start()
    case_id = net.new_case()
    first, _second = net.a.get_case(case_id).shared_events()
    net.probe.event(first, sender=OTHER)
    eventually(lambda: len(net.parked()) == 1, what="parked")
    runner = CliRunner()
    table = runner.invoke(exchange_cli, ["parked", *net.cli()])
    assert table.exit_code == 0, table.output
    assert all(h in table.output for h in ("序号", "原因", "来源站点", "事件", "办件")) and OTHER in table.output
    listed = json.loads(runner.invoke(exchange_cli, ["parked", *net.cli(), "--json"]).output)
    assert [(m["sender"], m["event_id"], m["case_id"]) for m in listed] == [(OTHER, first.event_id, str(case_id))]
    replayed = runner.invoke(exchange_cli, ["replay", *net.cli(),
                                            "--seq", str(listed[0]["stream_seq"])])
    assert replayed.exit_code == 0 and "已重放 1 条消息" in replayed.output
    missing = runner.invoke(exchange_cli, ["replay", *net.cli(), "--seq", "9999"])
    assert missing.exit_code == 3
    eventually(lambda: len(net.parked()) == 1, what="still refused: parked again")
    again = str(net.parked()[0].stream_seq)
    no_reason = runner.invoke(exchange_cli, ["discard", *net.cli(), "--seq", again,
                                             "--by", "王工"])
    assert no_reason.exit_code == 2 and len(net.parked()) == 1
    discarded = runner.invoke(exchange_cli, ["discard", *net.cli(), "--seq", again,
                                             "--reason", "伪造的发送方", "--by", "王工"])
    assert discarded.exit_code == 0, discarded.output
    assert net.parked() == []
    gone = runner.invoke(exchange_cli, ["replay", *net.cli(), "--seq", again])
    assert gone.exit_code == 3  # no longer a parked message: kept on the discarded subject instead
    unknown = runner.invoke(exchange_cli, ["parked", *net.cli(OTHER)])  # OTHER never started an inbox
    assert unknown.exit_code == 3 and len(unknown.output.strip().splitlines()) == 1
    bare = runner.invoke(exchange_cli, ["parked", "--nats", net.url, "--site", HANDLING])  # no credentials
    assert bare.exit_code == 6 and len(bare.output.strip().splitlines()) == 1


def _dead_url() -> str:
    return f"nats://127.0.0.1:{free_port()}"  # below the ephemeral range: no client socket lands on it


def test_an_unreachable_server_fails_fast_and_leaks_nothing(tmp_path: Path) -> None:
    url = _dead_url()
    certs = make_certs(tmp_path / "certs", RECEIVING, HANDLING)
    access, sealer = NatsAccess(url, RECEIVING), Sealer.for_site(certs, RECEIVING)
    hub = build_hub(Settings(site=RECEIVING, data_dir=tmp_path / "a"))
    try:
        case, _ = hub.receive(c.parse(c.ReceiveCase, receive_request()))
        partner = NatsPartner(RECEIVING, HANDLING, access, sealer, timeout=2.0)
        started = time.monotonic()
        with pytest.raises(NatsChannelError):
            partner.deliver(hub.get_case(case.id).shared_events())
        assert time.monotonic() - started < 10  # its 2 s timeout, not the client's minutes of reconnecting
        partner.close()
        inbox = NatsInbox(CaseSharing(hub), access, sealer)
        with pytest.raises(NatsUnavailable):
            inbox.start(wait=1.0)
        with pytest.raises(NatsUnavailable):
            list_parked(access, RECEIVING, timeout=2.0)
        result = CliRunner().invoke(exchange_cli, ["replay", "--nats", url, "--site", RECEIVING])  # open: no TLS
        assert result.exit_code == 6 and len(result.output.strip().splitlines()) == 1
    finally:
        hub.close()


def test_a_hub_failure_is_retried_not_acknowledged_and_parks_only_when_deliveries_run_out(net: Net) -> None:
    flaky = FlakyExchange(net.b)
    net.start(exchange_b=flaky, max_deliver=3)
    flaky.failures_left = 2  # two deliveries fail, the third stores
    case_id = net.new_case()
    net.pump_all()
    eventually(lambda: net.same(case_id), what="stored on the third delivery")
    assert flaky.calls >= 3 and net.parked() == []

    flaky.failing = True  # the store stays down: the event uses up its deliveries and is parked
    net.step(c.RaiseIssue, case_id, kind="dispute", description="争议")
    net.pump_all()
    eventually(lambda: len(net.parked()) == 1, what="parked after 3 deliveries")
    parked = net.parked()[0]
    assert parked.reason.startswith("gave_up after 3 deliveries")
    assert parked.parked_from == subject(HANDLING, "events", RECEIVING)
    assert net.b.get_case(case_id).version == 2

    flaky.failing = False  # the store is back: the operator replays
    assert net.replay(HANDLING) == 1
    eventually(lambda: net.same(case_id), what="the replayed event stored")
    assert net.parked() == []
    eventually(lambda: net.receipted(case_id), what="A records the receipt")


def test_a_server_restart_in_the_middle_of_traffic_loses_and_doubles_nothing(net: Net) -> None:
    net.start()
    cases = [net.new_case(n) for n in range(10)]
    net.pump_all()
    net.server.restart()  # B is still consuming the first wave, A's receipts are in flight
    cases += [net.new_case(n) for n in range(10, 20)]
    for case_id in cases[:5]:
        net.step(c.RaiseIssue, case_id, kind="dispute", description="争议")
    net.pump_all(timeout=30)

    net.server.stop()  # down while A has more to send: the pump fails, fast
    cases += [net.new_case(n) for n in range(20, 25)]
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - whichever error the dead server produces
        net.relay.pump()
    assert time.monotonic() - started < net.to_b.timeout + 10  # bounded by its timeout: catches a hang only
    net.server.start()
    net.pump_all(timeout=30)

    for case_id in cases:
        eventually(functools.partial(net.same, case_id), timeout=30, what=f"case {case_id} at B")
        assert net.b.get_case(case_id).version == len(net.hashes(net.a, case_id))
    for case_id in cases:
        eventually(functools.partial(net.receipted, case_id), timeout=30, what=f"receipts of {case_id}")
    eventually(lambda: net.probe.settled(HANDLING) and net.probe.settled(RECEIVING), timeout=30, what="settled")
    assert net.parked() == [] and net.parked(RECEIVING) == []


def test_unacknowledged_publishes_fail_the_batch_and_free_their_window_slots(net: Net) -> None:
    """No stream yet at B: publish_async gets no acknowledgement, the batch fails as a whole, and the
    slots it held are free again, so once B's stream exists the same partner delivers at once."""
    case_id = net.new_case()
    events = net.a.get_case(case_id).shared_events()
    partner = NatsPartner(RECEIVING, HANDLING, net.server.access(RECEIVING), net.probe.sealer(RECEIVING),
                          timeout=2.0, in_flight=1)  # one slot: a leak stalls
    try:
        with pytest.raises(DeliveryFailed) as refused:
            partner.deliver(events)
        assert refused.value.total == len(events) == 2
        net.start()  # B's inbox creates B's stream
        partner.deliver(events)
        eventually(lambda: net.same(case_id), what="B holds A's events")
    finally:
        partner.close()


def test_receipts_fetched_together_are_recorded_together_and_only_the_bad_one_is_parked(net: Net) -> None:
    net.start()
    case_id = net.new_case()
    net.inbox_a.stop()  # A's receipts wait in its stream, to be fetched in one batch
    case = net.a.get_case(case_id)
    through = case.last_seq(RECEIVING)
    genuine = CaseReceipt(case_id, RECEIVING, through, case.chain_head(RECEIVING), "stored", 0)
    for n, sender in enumerate((HANDLING, OTHER, HANDLING)):  # OTHER does not share the case
        receipt = dataclasses.replace(genuine, stored_through=through - 1) if n == 2 else genuine
        sealed = net.probe.sealer(sender).seal("receipts", RECEIVING, f"receipt-{n}",
                                              receipt_message(receipt).SerializeToString())
        net.probe.publish(subject(RECEIVING, "receipts", sender), sealed,
                          {MSG_ID: f"receipt-{n}", MESSAGE_ID: f"receipt-{n}"}, as_site=sender)
    inbox = net.inbox(CaseSharing(net.a))
    inbox.start()
    net.inboxes.append(inbox)
    eventually(lambda: len(net.parked(RECEIVING)) == 1, what="the receipt from a site outside the case parked")
    assert net.parked(RECEIVING)[0].reason.startswith("NOT_ROUTED")
    eventually(lambda: len(CaseSharing(net.a).receipts(case_id)) == 2, what="both of B's receipts recorded")
    assert {r["stored_through"] for r in CaseSharing(net.a).receipts(case_id)} == {through, through - 1}
