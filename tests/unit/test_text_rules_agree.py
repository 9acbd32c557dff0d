"""What a clerk can type, the partner can store: any text the staff commands accept passes the partner's
schema for the events it produces (a case received here must never be parked for good at the handling
site because of a character in a name). And the characters that hide or reorder text are refused on
both sides."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.application import commands as c
from hub.application.text_rules import no_control, no_control_in_text
from hub.domain.errors import InvalidInput
from tests.builders import CLERK, HANDLING, RECEIVING, actor_data, receive_request
from tests.memory_sites import hub, step
from tests.partner_events import intake

# Text as people and broken clients produce it: CJK, ASCII, whitespace and the controls and format
# characters that must never reach the record.
SPECIAL = "\x00\x1b\x7f\u0085\u200b\u200d\u202e\u2066\ufeff\t\n\r "
text = st.text(alphabet=st.sampled_from("王建国平顶山abc-1 ") | st.sampled_from(SPECIAL), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(name=text, note=text, address=text, material=text)
def test_a_receipt_the_window_accepts_is_one_the_handling_site_accepts(
    name: str, note: str, address: str, material: str,
) -> None:
    a = hub(RECEIVING)
    request: dict[str, Any] = receive_request(
        note=note, materials=[{"name": material}],
        applicant={**receive_request()["applicant"], "name": name, "address": address},
    )
    try:
        case, _ = a.receive(c.parse(c.ReceiveCase, request))
    except InvalidInput:
        return  # refused at the window: nothing to send
    intake(HANDLING).check(RECEIVING, a.get_case(case.id).shared_events())


@settings(max_examples=150, deadline=None)
@given(courier=text, tracking=text, description=text)
def test_steps_the_window_takes_are_steps_the_partner_accepts(courier: str, tracking: str, description: str) -> None:
    a = hub(RECEIVING)
    case, _ = a.receive(c.parse(c.ReceiveCase, receive_request()))
    for command, fields in [(c.ForwardCase, {"courier": courier, "tracking_number": tracking}),
                            (c.RaiseIssue, {"kind": "dispute", "description": description})]:
        try:
            step(a, command, case.id, actor_data(CLERK), **fields)
        except InvalidInput:
            continue
    intake(HANDLING).check(RECEIVING, a.get_case(case.id).shared_events())


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\u0085", "\u200b", "\u202e", "\u2066", "\ufeff"])
def test_controls_and_invisible_format_characters_are_refused_everywhere(char: str) -> None:
    for rule in (no_control, no_control_in_text):
        with pytest.raises(ValueError, match="控制字符"):
            rule(f"王{char}建国")
    with pytest.raises(InvalidInput) as refused:
        c.parse(c.ReceiveCase, receive_request(note=f"备{char}注"))
    assert {v.field for v in refused.value.violations} == {"note"}


def test_line_breaks_and_tabs_stay_in_free_text_only() -> None:
    assert no_control_in_text("第一行\n第二行\t完") == "第一行\n第二行\t完"
    with pytest.raises(ValueError, match="控制字符"):
        no_control("王\n建国")
