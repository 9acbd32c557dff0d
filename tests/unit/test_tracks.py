"""The parallel tracks on a case: issue cases with accountability, and rating with bad-review handling."""

from __future__ import annotations

import pytest

from hub.domain.errors import NotPermitted, RuleViolation
from hub.domain.lifecycle import CaseState
from hub.domain.values import IssueKind, Party, RatingLevel, RectificationOutcome
from tests.builders import APPLICANT, CLERK, HANDLER, OUTSIDER, SUPERVISOR, case_in, new_case


def test_issue_is_raised_assigned_and_resolved() -> None:
    case = case_in(CaseState.FORWARDED)
    issue = case.raise_issue(CLERK, IssueKind.LOST_PARCEL, "EMS 显示已签收但办理地未收到原件", site=CLERK.site)
    with pytest.raises(RuleViolation) as early:
        case.resolve_issue(HANDLER, issue, "已找到", site=HANDLER.site)
    assert early.value.reason == "RESPONSIBILITY_FIRST"
    with pytest.raises(NotPermitted) as judging:  # a place does not judge fault: a supervisor does
        case.assign_responsibility(HANDLER, issue, Party.COURIER, "寄递企业确认误投", site=HANDLER.site)
    assert judging.value.reason == "WRONG_ROLE"
    case.assign_responsibility(SUPERVISOR, issue, Party.COURIER, "寄递企业确认误投", site=SUPERVISOR.site)
    case.resolve_issue(HANDLER, issue, "原件已重新投递", site=HANDLER.site)
    assert case.issues[issue]["resolved"] and case.issues[issue]["responsible"] == "courier"
    with pytest.raises(RuleViolation, match="已办结"):
        case.resolve_issue(HANDLER, issue, "again", site=HANDLER.site)


def test_issue_needs_a_participating_site() -> None:
    with pytest.raises(NotPermitted) as refused:
        new_case().raise_issue(OUTSIDER, IssueKind.DISPUTE, "x", site=OUTSIDER.site)
    assert refused.value.reason == "WRONG_SIDE"


def test_low_rating_needs_a_reason() -> None:
    case = case_in(CaseState.DELIVERED)
    with pytest.raises(RuleViolation) as refused:
        case.rate(CLERK, RatingLevel.DISSATISFIED, " ", Party.HANDLING_PLACE, site=CLERK.site)
    assert refused.value.reason == "REASON_REQUIRED"
    case.rate(CLERK, RatingLevel.BASICALLY_SATISFIED, "", Party.HANDLING_PLACE, site=CLERK.site)
    assert case.rating is not None and not case.rating["bad_review"]
    with pytest.raises(RuleViolation, match="一件一评"):
        case.rate(CLERK, RatingLevel.VERY_SATISFIED, "", Party.HANDLING_PLACE, site=CLERK.site)


def test_bad_review_goes_to_the_place_it_is_about() -> None:
    case = case_in(CaseState.DELIVERED)
    case.rate(CLERK, RatingLevel.VERY_DISSATISFIED, "态度差", Party.RECEIVING_PLACE, site=CLERK.site)
    with pytest.raises(NotPermitted) as wrong:
        case.record_callback(HANDLER, "回访", site=HANDLER.site)
    assert wrong.value.reason == "WRONG_SIDE"
    with pytest.raises(RuleViolation, match="回访"):
        case.close_bad_review(CLERK, RectificationOutcome.RECTIFIED, "已整改", site=CLERK.site)
    case.record_callback(CLERK, "已电话回访", site=CLERK.site)
    with pytest.raises(RuleViolation, match="尚未"):
        case.record_feedback(CLERK, True, "", site=CLERK.site)
    case.close_bad_review(CLERK, RectificationOutcome.APPEAL_UPHELD, "系误评，申诉成立", site=CLERK.site)
    with pytest.raises(NotPermitted) as not_the_applicant:
        case.record_feedback(HANDLER, False, "申请人不认可", site=HANDLER.site)
    assert not_the_applicant.value.reason == "WRONG_ROLE"
    case.record_feedback(APPLICANT, False, "申请人不认可", site=APPLICANT.site)
    assert case.rating is not None and case.rating["feedback"] == {"satisfied": False, "note": "申请人不认可"}
