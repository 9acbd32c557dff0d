"""Partner events on the wire: what is not JSON is refused before anything is stored."""

from __future__ import annotations

import pytest

from adapters.exchange.wire import event_from, event_message
from hub.domain.errors import InvalidInput
from tests.builders import new_case


@pytest.mark.parametrize("data", [b'{"x":NaN}', b'{"x":-Infinity}', b'{"x":1e400}'])
def test_non_finite_numbers_are_refused_as_unparseable(data: bytes) -> None:
    message = event_message(new_case().shared_events()[0])
    message.data_json = data
    with pytest.raises(InvalidInput, match="无法解析"):
        event_from(message)


def test_an_event_round_trips() -> None:
    event = new_case().shared_events()[0]
    assert event_from(event_message(event)) == event
