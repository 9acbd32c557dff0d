"""What a case IS, derived by folding its shared events in their agreed order.

Both sites hold the same set of shared events for a case (some originated here, some at the
partner). Folding them in the same total order, (Lamport, origin, seq), gives the same state on
both sites, whatever order they arrived in. An event that is not legal at its place in that order
(two sites acted concurrently, e.g. one withdrew while the other accepted) is not applied: it is
kept and listed in ``conflicts`` for people to settle, identically on both sites.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from hub.domain.errors import IllegalStep
from hub.domain.lifecycle import TERMINAL, CaseState, Step, next_state
from hub.domain.shared import SharedEvent, chain_next, chain_start
from hub.domain.values import Mode, Outcome, Party

Mark = tuple[str, datetime, str, dict[str, Any]]


@dataclass(frozen=True)
class Entry:
    """One absorbed event: its shared form plus the stored event's local version."""

    shared: SharedEvent
    version: int


class CaseFold:
    """The derived state of a case; mixed into the Case aggregate."""

    id: UUID
    log: list[Entry]
    chains: dict[str, list[str]]
    lamport: int

    def _reset(self) -> None:
        self.state = CaseState.RECEIVED
        self.committed_days: int | None = None
        self.outcome: Outcome | None = None
        self.result: dict[str, str] = {}
        self.supplement_requested = False
        self.issues: dict[str, dict[str, Any]] = {}
        self.rating: dict[str, Any] | None = None
        self.marks: list[Mark] = []
        self.conflicts: list[dict[str, str]] = []

    # ------------------------------------------------------------------ absorbing
    def _absorb(self, shared: SharedEvent, version: int) -> None:
        """Add one event: in order it is applied at once; out of order the case is refolded."""
        if not hasattr(self, "log"):
            self.log, self.chains, self.lamport = [], {}, 0
        entry = Entry(shared, version)
        keys = [e.shared.key for e in self.log]
        position = bisect.bisect(keys, shared.key)
        self.log.insert(position, entry)
        chain = self.chains.setdefault(shared.origin, [])
        chain.append(chain_next(chain[-1] if chain else chain_start(self.id, shared.origin), shared.hash()))
        self.lamport = max(self.lamport, shared.lamport)
        if position == len(self.log) - 1:
            self._apply(shared)
        else:
            self._reset()
            for earlier in self.log:
                self._apply(earlier.shared)

    def _apply(self, e: SharedEvent) -> None:
        handler = _HANDLERS.get(e.type)
        if handler is not None:
            handler(self, e)
        else:
            self._apply_step(e)

    def _step_of(self, event_type: str) -> Step:
        """The main-track step an event type records: the aggregate, which defines the event classes, says."""
        raise NotImplementedError

    def _conflict(self, e: SharedEvent, reason: str) -> None:
        self.conflicts.append({"event_id": e.event_id, "type": e.type, "origin": e.origin, "reason": reason})

    def _mark(self, step: str, e: SharedEvent, subject: str = "", data: dict[str, Any] | None = None) -> None:
        """Remember when a step happened: the clocks in deadlines.py are derived from these marks."""
        self.marks.append((step, e.occurred_at, subject, data if data is not None else dict(e.data)))

    # ------------------------------------------------------------------ the facts
    def _on_received(self, e: SharedEvent) -> None:
        d = e.data
        self.case_number: str = d["case_number"]
        self.request_id: str = d["request_id"]
        self.item: dict[str, Any] = d["item"]
        self.mode = Mode(d["mode"])
        self.receiving_site: str = d["receiving_site"]
        self.handling_site: str = d["handling_site"]
        self.co_handling_sites: list[str] = list(d["co_handling_sites"])
        self.applicant: dict[str, str] = d["applicant"]
        self.materials: list[dict[str, Any]] = list(d["materials"])
        self.note: str = d["note"]
        self.route: dict[str, Any] = dict(d.get("route") or {})
        self._mark(Step.RECEIVE.value, e, data={})

    def _apply_step(self, e: SharedEvent) -> None:
        step = self._step_of(e.type)
        details = e.data["details"]
        try:
            self.state = next_state(self.state, step)
        except IllegalStep as refused:
            self._conflict(e, refused.message)
            return
        if step is Step.REQUEST_SUPPLEMENT:
            self.supplement_requested = True
        elif step is Step.SUBMIT_SUPPLEMENT:
            self.materials.extend(details.get("materials", []))
        elif step is Step.ACCEPT:
            self.committed_days = int(details["committed_days"])
        elif step is Step.DECIDE:
            self.outcome = Outcome(details["outcome"])
        elif step is Step.DISPATCH:
            self.result = {k: str(v) for k, v in details.items()}
        self._mark(step.value, e, data=details)

    def _on_issue_raised(self, e: SharedEvent) -> None:
        d = e.data
        if d["issue_id"] in self.issues:
            self._conflict(e, f"问题件 {d['issue_id']} 已存在")
            return
        side = Party.RECEIVING_PLACE if e.actor["site"] == self.receiving_site else Party.HANDLING_PLACE
        self.issues[d["issue_id"]] = {
            "kind": d["kind"], "description": d["description"], "responsible": None,
            "raised_by_party": side.value, "resolved": False, "resolution": "", "raised_at": e.occurred_at,
        }
        self._mark("issue_raised", e, d["issue_id"], {"holder": side.value})

    def _on_responsibility_assigned(self, e: SharedEvent) -> None:
        issue = self._issue_for(e)
        if issue is not None:
            issue["responsible"] = e.data["party"]
            self._mark("responsibility_assigned", e, e.data["issue_id"], {"holder": e.data["party"]})

    def _on_issue_resolved(self, e: SharedEvent) -> None:
        issue = self._issue_for(e)
        if issue is not None:
            issue.update(resolved=True, resolution=e.data["resolution"])
            self._mark("issue_resolved", e, e.data["issue_id"], {})

    def _issue_for(self, e: SharedEvent) -> dict[str, Any] | None:
        issue = self.issues.get(e.data["issue_id"])
        if issue is None or issue["resolved"]:
            self._conflict(e, f"问题件 {e.data['issue_id']} 不存在或已办结")
            return None
        return issue

    def _on_rated(self, e: SharedEvent) -> None:
        if self.rating is not None:
            self._conflict(e, "该办件已评价，一件一评")
            return
        d = e.data
        bad = int(d["score"]) < 3
        self.rating = {
            "score": int(d["score"]), "reason": d["reason"], "about": d["about"], "bad_review": bad,
            "callback_done": False, "outcome": None, "feedback": None,
        }
        if bad:
            self._mark("bad_review", e, "rating", {"holder": d["about"]})

    def _on_callback(self, e: SharedEvent) -> None:
        if self._review_for(e) is not None:
            self.rating["callback_done"] = True  # type: ignore[index]

    def _on_review_closed(self, e: SharedEvent) -> None:
        if self._review_for(e) is not None:
            self.rating["outcome"] = e.data["outcome"]  # type: ignore[index]
            self._mark("bad_review_closed", e, "rating", {})

    def _on_feedback(self, e: SharedEvent) -> None:
        if self._review_for(e) is not None:
            self.rating["feedback"] = {"satisfied": e.data["satisfied"], "note": e.data["note"]}  # type: ignore[index]

    def _review_for(self, e: SharedEvent) -> dict[str, Any] | None:
        if self.rating is None or not self.rating["bad_review"]:
            self._conflict(e, "该办件没有差评")
            return None
        return self.rating

    # ------------------------------------------------------------------ views
    @property
    def handling_sites(self) -> tuple[str, ...]:
        return (self.handling_site, *self.co_handling_sites)

    @property
    def sites(self) -> tuple[str, ...]:
        return (self.receiving_site, *self.handling_sites)

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL

    def shared_events(self, origin: str | None = None) -> list[SharedEvent]:
        """Shared events in the agreed order, or one origin's in seq order."""
        if origin is None:
            return [e.shared for e in self.log]
        return sorted((e.shared for e in self.log if e.shared.origin == origin), key=lambda s: s.seq)

    def last_seq(self, origin: str) -> int:
        return len(self.chains.get(origin, ()))

    def chain_head(self, origin: str, through: int | None = None) -> str:
        chain = self.chains.get(origin, [])
        n = len(chain) if through is None else through
        if n == 0:
            return chain_start(self.id, origin)
        return chain[n - 1]


def receipt_sites(data: dict[str, Any]) -> tuple[str, ...]:
    """The sites a CaseReceived names, receiving site first: what ``CaseFold.sites`` will be, read
    from the event alone (a partner's, not yet checked, so missing fields read as empty)."""
    return (data.get("receiving_site", ""), data.get("handling_site", ""), *data.get("co_handling_sites", []))


# The events that are not main-track steps, by type name (the steps are all folded by _apply_step).
_HANDLERS = {
    "CaseReceived": CaseFold._on_received,
    "IssueRaised": CaseFold._on_issue_raised,
    "ResponsibilityAssigned": CaseFold._on_responsibility_assigned,
    "IssueResolved": CaseFold._on_issue_resolved,
    "CaseRated": CaseFold._on_rated,
    "BadReviewCallbackMade": CaseFold._on_callback,
    "BadReviewClosed": CaseFold._on_review_closed,
    "RectificationFeedbackRecorded": CaseFold._on_feedback,
}
