"""A case's deadline clocks as of a moment, on the site's working-day calendar and deadline policy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from hub.domain.case import Case
from hub.domain.deadlines import Clock, DeadlinePolicy, clocks
from hub.domain.workdays import WorkCalendar


class CaseClocks:
    """``clocks(case, as_of)``: every deadline of the case, open or stopped (as of now by default)."""

    def __init__(
        self, calendar: WorkCalendar | None = None, policy: DeadlinePolicy | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.calendar = calendar or WorkCalendar()
        self.policy = policy or DeadlinePolicy()
        self.now = now or (lambda: datetime.now(UTC))

    def __call__(self, case: Case, as_of: datetime | None = None) -> list[Clock]:
        return clocks(case.marks, self.calendar, self.policy, as_of or self.now())
