"""Why a case differs between two sites, per origin, from counts and chain heads alone.

Each site is the authority on the events it originated. So a partner missing the tail of our
chain is repaired by pushing it, our missing the tail of theirs by pulling it; chains that differ
at a common length are a fork, and a site holding fewer of its *own* events than its partner has
lost data: both go to people (the partner's copy may be the only one, but restoring it needs a
decision). What is still in flight is only pending, rechecked on the next run.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from hub.domain.values import LabelledEnum
from reconciliation.messages import CaseDescription, OriginState


class Kind(LabelledEnum):
    MISSING_SUFFIX = ("missing_suffix", "缺少后续事件")
    MISSING_CASE = ("missing_case", "缺少办件")
    FORK = ("fork", "事件链分叉")
    OWN_DATA_LOSS = ("own_data_loss", "本方数据丢失")
    PENDING = ("pending", "在途待核")


class Action(LabelledEnum):
    PULL = ("pull", "向对方补取")
    PUSH = ("push", "向对方补发")
    OPEN = ("open", "立差异件待人工处理")
    WAIT = ("wait", "下次对账复核")


@dataclass(frozen=True)
class Held:
    """What one site holds of one origin's chain for a case."""

    count: int
    head: str
    head_at_other_count: str = ""  # this side's chain head at the other side's count, if it holds that many


@dataclass(frozen=True)
class Finding:
    case_id: UUID
    origin: str
    kind: Kind
    action: Action
    ours: int
    theirs: int
    lost_by: str = ""  # OWN_DATA_LOSS: the site that lost events it originated
    claimed_head: str = ""  # the partner's chain head for this origin: pulled events must reach it

    @property
    def from_seq(self) -> int:
        """The first event to send or fetch when repairing."""
        return min(self.ours, self.theirs) + 1


def classify(
    site: str, partner: str, case_id: UUID, receiving_site: str | None,
    ours: dict[str, Held] | None, theirs: CaseDescription,
) -> list[Finding]:
    """``ours`` None: we do not hold the case. ``receiving_site``: ours if we hold it, else theirs."""
    if ours is None and not theirs.found:
        return []
    if ours is None:
        return _we_lack_the_case(site, partner, case_id, theirs)
    if not theirs.found:
        return [_they_lack_the_case(site, partner, case_id, receiving_site or "", ours)]
    findings = []
    for origin in sorted({site, partner}):
        found = _compare(site, partner, case_id, origin, ours.get(origin, Held(0, "")), theirs.origins.get(origin))
        if found is not None:
            findings.append(found)
    return findings


def _compare(
    site: str, partner: str, case_id: UUID, origin: str, mine: Held, other: OriginState | None
) -> Finding | None:
    their_count, their_head = (other.count, other.head) if other else (0, "")
    if (mine.count, mine.head) == (their_count, their_head) or mine.count == their_count == 0:
        return None
    kind, action, lost_by = Kind.FORK, Action.OPEN, ""
    if mine.count < their_count:
        if mine.count == 0 or (other is not None and other.head_at_your_count == mine.head):
            kind, action, lost_by = (
                (Kind.MISSING_SUFFIX, Action.PULL, "") if origin == partner else (Kind.OWN_DATA_LOSS, Action.OPEN, site)
            )
    elif mine.count > their_count and (their_count == 0 or mine.head_at_other_count == their_head):
        kind, action, lost_by = (
            (Kind.MISSING_SUFFIX, Action.PUSH, "") if origin == site else (Kind.OWN_DATA_LOSS, Action.OPEN, partner)
        )
    return Finding(case_id, origin, kind, action, mine.count, their_count, lost_by, their_head)


def _we_lack_the_case(site: str, partner: str, case_id: UUID, theirs: CaseDescription) -> list[Finding]:
    counts = {o: s.count for o, s in theirs.origins.items()}
    if theirs.receiving_site == site:  # we opened it and lost it
        return [Finding(case_id, site, Kind.OWN_DATA_LOSS, Action.OPEN, 0, counts.get(site, 0), site)]
    findings = []
    if theirs.receiving_site == partner:
        head = theirs.origins[partner].head if partner in theirs.origins else ""
        findings.append(Finding(case_id, partner, Kind.MISSING_CASE, Action.PULL, 0, counts.get(partner, 0), "", head))
    else:  # opened by a third site: it delivers the case to us itself
        findings.append(Finding(case_id, theirs.receiving_site, Kind.PENDING, Action.WAIT, 0, 0))
    if counts.get(site, 0):
        findings.append(Finding(case_id, site, Kind.OWN_DATA_LOSS, Action.OPEN, 0, counts[site], site))
    return findings


def _they_lack_the_case(
    site: str, partner: str, case_id: UUID, receiving_site: str, ours: dict[str, Held]
) -> Finding:
    mine = ours.get(site, Held(0, "")).count
    if receiving_site == site:
        return Finding(case_id, site, Kind.MISSING_CASE, Action.PUSH, mine, 0)
    if receiving_site == partner:
        return Finding(case_id, partner, Kind.OWN_DATA_LOSS, Action.OPEN, ours.get(partner, Held(0, "")).count, 0,
                       partner)
    return Finding(case_id, receiving_site, Kind.PENDING, Action.WAIT, 0, 0)
