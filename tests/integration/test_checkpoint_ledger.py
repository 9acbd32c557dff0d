"""A site signs a checkpoint a minute for years: its ledger keeps only the latest in state, and an old case's
bundle still finds the checkpoint that covers it, with its countersignatures, in the ledger's events."""

from __future__ import annotations

import json
from pathlib import Path

from adapters.audit.chain_store import MemoryChainStore
from adapters.audit.signing import Checkpointer
from adapters.audit.site_chain import SiteChain
from adapters.bootstrap import build_hub
from adapters.settings import Settings
from audit import checkpoints
from audit.bundle import verify_bundle
from audit.ledger import RECENT, CheckpointLedger, covering
from hub.application import commands as c
from tests.builders import receive_request


def signed(position: int) -> dict[str, object]:
    return {"checkpoint": {"position": position}, "countersignatures": []}


def test_the_ledger_keeps_its_latest_checkpoints_and_its_events_keep_all() -> None:
    ledger = CheckpointLedger.open("410400")
    for position in range(1, 3 * RECENT + 1):
        ledger.record(signed=signed(position))
    ledger.countersigned(position=5, countersignature={"signer": "320500"})  # long trimmed from state
    ledger.countersigned(position=3 * RECENT, countersignature={"signer": "320500"})
    assert len(ledger.checkpoints) == RECENT and ledger.last_position == 3 * RECENT
    assert ledger.checkpoints[-1]["countersignatures"] == [{"signer": "320500"}]
    events = ledger.collect_events()
    assert covering(events, 5) == {"checkpoint": {"position": 5}, "countersignatures": [{"signer": "320500"}]}
    assert covering(events, 0)["checkpoint"] == {"position": 1}  # type: ignore[index]
    assert covering(events, 3 * RECENT + 1) is None


def test_an_old_case_is_exported_with_the_checkpoint_that_covers_it(tmp_path: Path) -> None:
    hub = build_hub(Settings(site="410400", store="sqlite", data_dir=tmp_path))
    try:
        checkpointer = Checkpointer(hub, SiteChain(hub, MemoryChainStore()), checkpoints.generate_key(), None)
        first, _ = hub.receive(c.parse(c.ReceiveCase, receive_request("first")))
        for n in range(RECENT + 5):  # each checkpoint covers one more case: the first one's is trimmed
            checkpointer.checkpoint(force=True)
            hub.receive(c.parse(c.ReceiveCase, receive_request(f"later-{n}")))
        assert checkpointer.ledger().checkpoints[0]["checkpoint"]["position"] > 3  # type: ignore[index]
        exported = json.loads(checkpointer.export(first.id))
        assert verify_bundle(exported) == []
        assert exported["checkpoints"][0]["checkpoint"]["position"] == 3  # the case and its two claims
    finally:
        hub.close()
