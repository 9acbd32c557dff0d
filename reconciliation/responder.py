"""The answering side of a partner's reconcile runs: one snapshot per session, and descriptions
of the cases the asker shares with us (never of any other case).

A session opens on the first round (after the handshake) and closes when the asker describes
its differing cases, when a reply has nothing left to ask, or after ``idle_seconds``; at most
``max_sessions`` per partner are open at once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack

from hub.application.ports import SiteLog
from hub.domain.case import Case
from hub.domain.errors import HubError, InvalidInput, RuleViolation
from reconciliation.messages import CaseCounts, CaseDescription, Message, OriginState, Params
from reconciliation.ports import DigestIndex
from reconciliation.rbsr import DigestSet, Participant, check_params


class Responder:
    """The answering side: a snapshot per session (closed when the asker describes, or when idle)."""

    def __init__(
        self, log: SiteLog, index: DigestIndex, params: Params | None = None, idle_seconds: float = 60.0,
        max_sessions: int = 4,
    ) -> None:
        self.log, self.index = log, index
        self.params = params or Params()
        self.idle_seconds, self.max_sessions = idle_seconds, max_sessions
        self._sessions: dict[str, tuple[str, ExitStack, Participant, float]] = {}
        self._lock = threading.Lock()

    def round(
        self, partner: str, session: str, params: Params | None, message: Message
    ) -> tuple[str, Params, Message]:
        self._expire()
        if not session:
            if params is None:
                raise InvalidInput.one("params", "新的对账会话须带握手参数")
            agreed = check_params(self.params, params)
            session = self._open(partner, agreed)
        with self._lock:
            found = self._sessions.get(session)
        if found is None or found[0] != partner:
            raise InvalidInput.one("session_id", "对账会话不存在或已过期，请重新开始")
        _partner, stack, side, _last = found
        try:
            reply = side.reply(message)
        except HubError:
            self.close(session)
            raise
        with self._lock:
            self._sessions[session] = (partner, stack, side, time.monotonic())
        if not reply.ranges and not message.more:  # the asker has nothing left to ask in this session
            self.close(session)
        return session, side.params, reply

    def _open(self, partner: str, params: Params) -> str:
        with self._lock:
            if sum(1 for p, *_ in self._sessions.values() if p == partner) >= self.max_sessions:
                raise RuleViolation("RECONCILE_BUSY", f"站点 {partner} 的对账会话过多，请稍后再试")
        stack = ExitStack()
        snapshot = stack.enter_context(self.index.snapshot(partner))
        side = Participant(DigestSet(snapshot), params, initiator=False)
        session = uuid.uuid4().hex
        with self._lock:
            self._sessions[session] = (partner, stack, side, time.monotonic())
        return session

    def close(self, session: str) -> None:
        with self._lock:
            found = self._sessions.pop(session, None)
        if found is not None:
            found[1].close()

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.idle_seconds
        with self._lock:
            stale = [s for s, (_p, _st, _side, last) in self._sessions.items() if last < cutoff]
        for session in stale:
            self.close(session)

    def describe(self, partner: str, session: str, asked: Sequence[CaseCounts]) -> list[CaseDescription]:
        """What we hold of each case shared with ``partner``; nothing about any other case."""
        if session:
            self.close(session)
        if len(asked) > 1000:
            raise InvalidInput.one("cases", "一次最多询问 1000 个办件")
        out = []
        for counts in asked:
            case = self.log.find(counts.case_id, Case)
            if case is None or partner not in case.sites or self.log.site not in case.sites:
                out.append(CaseDescription(counts.case_id, False))
                continue
            origins = {}
            for origin in (self.log.site, partner):
                n = case.last_seq(origin)
                theirs = counts.origins.get(origin, 0)
                at = case.chain_head(origin, theirs) if 0 < theirs <= n else ""
                origins[origin] = OriginState(n, case.chain_head(origin) if n else "", at)
            out.append(CaseDescription(counts.case_id, True, case.receiving_site, origins))
        return out
