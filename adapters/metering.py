"""The business collector's source: the case read model's counts, as ops/metrics.py wants them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from hub.application.read_model import CaseReadModel
from hub.domain.identifiers import LOCAL_TZ
from ops.metrics import CaseCounts


def case_counts(read_model: CaseReadModel) -> Callable[[], CaseCounts]:
    """The read model as it stands (IndexFollower keeps it up; a scrape never folds, so it answers at
    once whatever the backlog), and how far behind it is."""

    def read() -> CaseCounts:
        summary = read_model.summary(datetime.now(LOCAL_TZ).date())
        closed = summary.reviews.get("on_time", 0) + summary.reviews.get("late", 0)
        return CaseCounts(
            by_state_and_partner=summary.by_state_and_partner,
            warning=summary.warning,
            breached=summary.breached,
            bad_reviews_awaiting=summary.reviews.get("open", 0),
            rectified_on_time=summary.reviews.get("on_time", 0),
            rectified_total=closed,
            index_lag=read_model.lag(),
        )

    return read
