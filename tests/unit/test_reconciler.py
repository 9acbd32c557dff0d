"""Reconciliation between two sites' hubs on in-memory stores with the digest index: every class of
divergence is found, the safe ones repaired once, the rest opened as discrepancy cases."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.store.digest_index import MemoryDigestIndex, MemoryDigestRecorder
from hub.application import commands as c
from hub.application.case_hub import CaseHub
from hub.application.case_sharing import CaseSharing
from hub.domain.case import Case
from hub.domain.errors import CaseNotFound, InvalidInput, RuleViolation
from hub.domain.receipts import CaseReceipt
from hub.domain.shared import SharedEvent
from hub.domain.values import Actor, Role
from reconciliation.discrepancy import Status
from reconciliation.messages import Message, Mode, Params, Range
from reconciliation.rbsr import DigestSet
from reconciliation.reconciler import Policy, Reconciler, Summary
from reconciliation.responder import Responder
from routing.catalogue import Catalogue
from routing.regions import RegionDirectory
from tests.builders import CLERK, HANDLER, HANDLING, RECEIVING, actor_data, receive_request
from tests.digest_sets import Snapshot, SnapshotIndex, pair
from tests.local_peer import LocalPeer

CATALOGUE, REGIONS = Catalogue.load(), RegionDirectory.load()
LATER = timedelta(hours=1)  # runs "an hour later": nothing is still in flight unless a test says so
AUDITOR = Actor("PDS-SUP-1", Role.SUPERVISOR, RECEIVING, "赵审")


def hub(site: str) -> CaseHub:
    return CaseHub(site=site, catalogue=CATALOGUE, regions=REGIONS,
                   env={"PERSISTENCE_MODULE": "adapters.store.digest_index:MemoryDigestFactory"})


def index(h: CaseHub) -> MemoryDigestIndex:
    assert isinstance(h.recorder, MemoryDigestRecorder)
    return MemoryDigestIndex(h.recorder)


def relay(source: CaseHub, target: CaseHub) -> None:
    out, into = CaseSharing(source), CaseSharing(target)
    batch = out.outbound(target.site, out.position(target.site, "grpc"))
    receipts = into.ingest(source.site, batch.events) if batch.events else []
    out.record_receipts(target.site, "grpc", receipts, batch.through)


def step(h: CaseHub, command: type[c.CaseCommand], case_id: UUID, actor: Actor, **fields: object) -> None:
    h.execute(c.parse(command, {"case_id": str(case_id), "actor": actor_data(actor), **fields}))


def open_cases(a: CaseHub, n: int, prefix: str = "r") -> list[UUID]:
    ids = []
    for i in range(n):
        case, _ = a.receive(c.parse(c.ReceiveCase, receive_request(f"{prefix}-{i}")))
        step(a, c.ForwardCase, case.id, CLERK)
        ids.append(case.id)
    return ids


def run(a: CaseHub, b: CaseHub, later: timedelta = LATER, peer: LocalPeer | None = None, **policy: object
        ) -> Summary:
    reconciler = Reconciler(a, CaseSharing(a), index(a), Policy(**policy), now=lambda: datetime.now(UTC) + later)  # type: ignore
    return reconciler.run(peer or LocalPeer(Responder(b, index(b)), a.site))


def digests(h: CaseHub, partner: str) -> dict[bytes, bytes]:
    with index(h).snapshot(partner) as snap:
        return dict(snap.items(b"", None))


def converged(a: CaseHub, b: CaseHub) -> bool:
    return digests(a, b.site) == digests(b, a.site)


@pytest.fixture
def sites() -> tuple[CaseHub, CaseHub]:
    a, b = hub(RECEIVING), hub(HANDLING)
    ids = open_cases(a, 12)
    relay(a, b)
    for case_id in ids[:6]:
        step(b, c.SignCase, case_id, HANDLER)
    relay(b, a)
    assert converged(a, b)
    return a, b


def versions(h: CaseHub) -> dict[UUID, int]:
    with index(h).snapshot(HANDLING if h.site == RECEIVING else RECEIVING) as snap:
        return {UUID(bytes=k): h.get_case(UUID(bytes=k)).version for k, _ in snap.items(b"", None)}


def test_in_step_sites_cost_one_round_and_change_nothing(sites: tuple[CaseHub, CaseHub]) -> None:
    a, b = sites
    before = versions(a), versions(b)
    summary = run(a, b)
    assert (summary.rounds, summary.differing_cases, summary.repaired) == (1, 0, 0)
    assert summary.bytes_sent + summary.bytes_received < 1024
    assert (versions(a), versions(b)) == before


def test_missing_suffixes_and_cases_are_repaired_both_ways_exactly_once(sites: tuple[CaseHub, CaseHub]) -> None:
    a, b = sites
    ids = list(versions(a))
    step(b, c.SignCase, ids[8], HANDLER)  # b's event never reached a: a pulls it
    step(a, c.RaiseIssue, ids[0], CLERK, kind="dispute", description="材料争议")  # a's never reached b: a pushes
    new = open_cases(a, 2, "late")  # whole cases b never saw: a pushes them
    summary = run(a, b)
    assert summary.by_kind == {"missing_suffix": 2, "missing_case": 2}
    assert summary.repaired == 4 and summary.opened == 0
    assert converged(a, b)
    assert b.get_case(new[0]).state.value == "forwarded"
    after = versions(a), versions(b)
    again = run(a, b)
    assert (again.differing_cases, again.repaired) == (0, 0)
    assert (versions(a), versions(b)) == after  # nothing applied twice


def test_a_case_the_partner_opened_is_pulled_whole() -> None:
    a, b = hub(RECEIVING), hub(HANDLING)
    ids = open_cases(a, 3)
    relay(a, b)
    summary = run(b, a)  # the handling site reconciles; a's cases reached it, so nothing differs
    assert summary.differing_cases == 0
    lost = open_cases(a, 1, "unsent")[0]
    summary = run(b, a)
    assert summary.by_kind == {"missing_case": 1} and summary.repaired == 1
    assert b.get_case(lost).version == 2 and ids


def test_our_events_still_in_flight_are_pending_not_pushed(sites: tuple[CaseHub, CaseHub]) -> None:
    a, b = sites
    case_id = next(iter(versions(a)))
    step(a, c.RaiseIssue, case_id, CLERK, kind="dispute", description="争议")
    summary = run(a, b, later=timedelta(0))
    assert summary.by_kind == {"pending": 1} and summary.repaired == 0
    assert b.get_case(case_id).version == a.get_case(case_id).version - 1


def test_a_fork_is_opened_with_both_versions_and_never_twice(sites: tuple[CaseHub, CaseHub]) -> None:
    a, b = sites
    case_id = list(versions(a))[7]
    step(b, c.SignCase, case_id, HANDLER)
    signed = b.get_case(case_id).shared_events(HANDLING)[0]
    forged = dataclasses.replace(signed, event_id=str(uuid4()), actor={**signed.actor, "staff_id": "SZ-9"})
    CaseSharing(a).ingest(HANDLING, [forged])  # a holds another event under b's seq 1
    summary = run(a, b)
    assert summary.by_kind == {"fork": 1} and summary.opened == 1 and summary.repaired == 0
    reconciler = Reconciler(a, CaseSharing(a), index(a))
    [opened] = reconciler.discrepancies(HANDLING)
    assert (opened.kind, opened.origin, opened.first_differing_seq) == ("fork", HANDLING, 1)
    assert opened.our_event and opened.their_event
    assert opened.our_event["hash"] == forged.hash() and opened.their_event["hash"] == signed.hash()
    assert run(a, b).opened == 0  # seen again: still the same discrepancy
    reconciler.review(opened.id, AUDITOR)
    with pytest.raises(InvalidInput, match="理由"):
        reconciler.review(opened.id, AUDITOR, resolve=" ")
    done = reconciler.review(opened.id, AUDITOR, resolve="经两地核实，以办理地记录为准")
    assert done.status is Status.RESOLVED and done.resolution and done.resolution["by"]["staff_id"] == "PDS-SUP-1"
    assert reconciler.discrepancies(HANDLING) == []
    with pytest.raises(RuleViolation):
        reconciler.review(opened.id, AUDITOR)
    assert run(a, b).opened == 1  # resolved, yet still different: reopened
    assert [d.status for d in reconciler.discrepancies(HANDLING)] == [Status.OPEN]


def test_a_site_that_lost_its_own_events_gets_a_discrepancy_not_a_repair() -> None:
    a, b = hub(RECEIVING), hub(HANDLING)
    [case_id] = open_cases(a, 1)
    relay(a, b)
    restored = hub(RECEIVING)  # a restored from a backup taken before it forwarded the case
    first = a.get_case(case_id).shared_events(RECEIVING)[0]
    case = Case.from_partner(first)
    restored.save(case)
    summary = run(restored, b)
    assert summary.by_kind == {"own_data_loss": 1} and summary.repaired == 0
    [opened] = Reconciler(restored, CaseSharing(restored), index(restored)).discrepancies(HANDLING)
    assert (opened.lost_by, opened.ours, opened.theirs, opened.first_differing_seq) == (RECEIVING, 1, 2, 2)
    assert restored.get_case(case_id).version == 1
    assert run(b, restored).by_kind == {"own_data_loss": 1}  # the partner sees who lost what, too


def test_mass_divergence_trips_the_breaker_and_repairs_nothing() -> None:
    a, b = hub(RECEIVING), hub(HANDLING)
    open_cases(a, 2)
    relay(a, b)
    open_cases(a, 6, "flood")
    summary = run(a, b, breaker_floor=3, breaker_share=0.01)
    assert summary.tripped and summary.differing_cases == 6 and summary.repaired == 0
    assert not converged(a, b)
    assert run(a, b, breaker_floor=10).repaired == 6  # within bounds again (e.g. after a fix): repaired


def test_a_mass_divergence_stops_comparing_once_the_breaker_trips() -> None:
    """Past the breaker nothing is repaired, so the run stops learning differences: a million missing
    cases must not become a million keys in memory on both sides."""
    a, b = hub(RECEIVING), hub(HANDLING)
    open_cases(a, 120, "flood")
    small = Params(branching=2, id_list_threshold=2)
    tripped = run(a, b, breaker_floor=5, breaker_share=0.0, params=small)
    full = run(a, b, breaker_floor=1000, params=small)  # learns all 120 (and repairs them)
    assert full.differing_cases == 120 and not full.stopped_early
    assert tripped.tripped and tripped.stopped_early and tripped.repaired == 0
    assert tripped.differing_cases >= 5 and tripped.rounds <= full.rounds


class FlakyPeer(LocalPeer):
    """A partner whose link drops after ``fail_after`` deliveries (the run dies mid-repair)."""

    def __init__(self, responder: Responder, asker: str, fail_after: int) -> None:
        super().__init__(responder, asker)
        self.left = fail_after

    def deliver(self, events: Sequence[SharedEvent]) -> list[CaseReceipt]:
        if self.left == 0:
            raise ConnectionError("link down")
        self.left -= 1
        return super().deliver(events)


def test_a_run_that_dies_mid_repair_is_resumed_and_repeats_nothing() -> None:
    a, b = hub(RECEIVING), hub(HANDLING)
    open_cases(a, 2)
    relay(a, b)
    late = open_cases(a, 5, "late")
    with pytest.raises(ConnectionError):
        run(a, b, peer=FlakyPeer(Responder(b, index(b)), RECEIVING, fail_after=2))
    assert sum(b.find(i, Case) is not None for i in late) == 2
    summary = run(a, b)
    assert summary.resumed == 3 and converged(a, b)
    assert all(b.get_case(i).version == 2 for i in late)


class ForgingPeer(LocalPeer):
    """A partner whose fetched events do not chain to the heads it claims."""

    def fetch(self, case_id: UUID, origin: str, from_seq: int) -> list[SharedEvent]:
        return [dataclasses.replace(e, actor={**e.actor, "name": "冒名"}) for e in super().fetch(case_id, origin,
                                                                                                 from_seq)]


def test_events_that_do_not_match_the_claimed_head_are_refused(sites: tuple[CaseHub, CaseHub]) -> None:
    a, b = sites
    case_id = list(versions(a))[9]
    step(b, c.SignCase, case_id, HANDLER)
    before = a.get_case(case_id).version
    summary = run(a, b, peer=ForgingPeer(Responder(b, index(b)), RECEIVING))
    assert summary.rejected == 1 and summary.repaired == 0
    assert a.get_case(case_id).version == before


def test_a_responder_refuses_unknown_sessions_and_bad_handshakes(sites: tuple[CaseHub, CaseHub]) -> None:
    _a, b = sites
    responder = Responder(b, index(b))
    with pytest.raises(InvalidInput, match="会话"):
        responder.round(RECEIVING, "no-such-session", None, Message())
    with pytest.raises(InvalidInput, match="握手"):
        responder.round(RECEIVING, "", None, Message())
    with pytest.raises(RuleViolation, match="版本"):
        responder.round(RECEIVING, "", Params(version=2), Message())


def test_describe_tells_nothing_about_cases_not_shared_with_the_asker(sites: tuple[CaseHub, CaseHub]) -> None:
    a, b = sites
    from reconciliation.messages import CaseCounts

    case_id = next(iter(versions(a)))
    [answer] = Responder(b, index(b)).describe("330100", "", [CaseCounts(case_id, {})])
    assert not answer.found and not answer.origins


# ---------------------------------------------------------------------- convergence, as a property

ACTIONS = st.lists(st.tuples(st.sampled_from(["open", "forward", "sign", "issue", "relay_ab", "relay_ba"]),
                             st.integers(0, 7)), min_size=1, max_size=40)


def lossy_relay(source: CaseHub, target: CaseHub, drop: int) -> None:
    """One relay pass that loses the ``drop``-th event on the way (the position still advances)."""
    out, into = CaseSharing(source), CaseSharing(target)
    position = out.position(target.site, "grpc")
    batch = out.outbound(target.site, position)
    if batch.through == position:
        return
    kept = [e for i, e in enumerate(batch.events) if i != drop % 3]
    receipts = into.ingest(source.site, kept) if kept else []
    out.record_receipts(target.site, "grpc", receipts, batch.through)


def play(a: CaseHub, b: CaseHub, actions: list[tuple[str, int]]) -> None:
    ids: list[UUID] = []
    for n, (action, k) in enumerate(actions):
        try:
            if action == "open":
                case, _ = a.receive(c.parse(c.ReceiveCase, receive_request(f"p-{n}")))
                ids.append(case.id)
            elif ids and action == "forward":
                step(a, c.ForwardCase, ids[k % len(ids)], CLERK)
            elif ids and action == "sign":
                step(b, c.SignCase, ids[k % len(ids)], HANDLER)
            elif ids and action == "issue":
                step(a, c.RaiseIssue, ids[k % len(ids)], CLERK, kind="dispute", description=f"争议{n}")
            elif action == "relay_ab":
                lossy_relay(a, b, k)
            elif action == "relay_ba":
                lossy_relay(b, a, k)
        except (RuleViolation, InvalidInput, CaseNotFound):
            continue  # a step not legal here (the case is elsewhere in its life): people get the same error


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=ACTIONS, first=st.sampled_from(["a", "b"]))
def test_random_divergent_pairs_converge_and_nothing_is_applied_twice(actions: list[tuple[str, int]],
                                                                      first: str) -> None:
    a, b = hub(RECEIVING), hub(HANDLING)
    play(a, b, actions)
    x, y = (a, b) if first == "a" else (b, a)
    run(x, y)
    run(y, x)  # each side pulls the other's missing events; pushes cover what the partner lost
    assert converged(a, b)
    for h in (a, b):
        for case_id, version in versions(h).items():
            case = h.get_case(case_id)
            assert version == sum(len(chain) for chain in case.chains.values())  # each event stored once
    settled = versions(a), versions(b)
    assert run(a, b).differing_cases == 0 and run(b, a).differing_cases == 0
    assert (versions(a), versions(b)) == settled


def test_a_session_stays_open_while_the_asker_has_frames_queued() -> None:
    """A frame that needs no answer ends the session only if the asker said nothing more is queued."""
    a, _ = pair(3000, 0, 0, 0, seed=9, spread_days=2)
    keys = sorted(a)
    b = {**a, **{k: bytes(16) for k in keys[-100::20]}}  # differences only in the upper part
    responder = Responder(hub(HANDLING), SnapshotIndex(b))  # type: ignore[arg-type]
    ours, middle = DigestSet(Snapshot(a)), keys[1500]

    def frame(lo: bytes, hi: bytes | None, more: bool) -> Message:
        return Message((Range(lo, hi, Mode.FINGERPRINT, *ours.fingerprint(lo, hi)),), more=more)

    session, _params, reply = responder.round(RECEIVING, "", Params(), frame(b"", middle, more=True))
    assert not reply.ranges  # nothing differs below the middle, but more is coming
    session, _params, reply = responder.round(RECEIVING, session, None, frame(middle, None, more=False))
    assert reply.ranges  # the differences are above it
    _session, _params, reply = responder.round(RECEIVING, session, None, frame(b"", middle, more=False))
    assert not reply.ranges  # an empty answer to a last frame: the session is over
    with pytest.raises(InvalidInput, match="会话"):
        responder.round(RECEIVING, session, None, frame(middle, None, more=False))
