"""The case mapper writes the library's bytes and reads them back to the library's events, only faster."""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import Environment
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.application.case_mapper import CaseMapper
from hub.domain.claims import UniqueClaim
from hub.domain.errors import HubError
from hub.domain.lifecycle import Step
from tests.builders import ACTIONS, new_case, take
from tests.memory_sites import hub


def mappers(env: dict[str, str] | None = None) -> tuple[Mapper[UUID], CaseMapper]:
    library = Application[UUID](env={"PERSISTENCE_MODULE": "eventsourcing.popo", **(env or {})}).mapper
    return library, CaseMapper(library)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(ACTIONS), max_size=25))
def test_case_events_are_stored_byte_for_byte_as_the_library_stores_them(actions: list[tuple[str, Any]]) -> None:
    case = new_case()
    for _name, action in actions:
        with contextlib.suppress(HubError):
            take(case, action) if isinstance(action, Step) else action(case)
    library, fast = mappers()
    for event in case.collect_events():
        ours, theirs = fast.to_stored_event(event), library.to_stored_event(event)
        assert ours == theirs
        assert vars(fast.to_domain_event(theirs)) == vars(library.to_domain_event(theirs)) == vars(event)


def test_other_aggregates_keep_their_uuids_through_the_library_path() -> None:
    library, fast = mappers()
    claim = UniqueClaim.make("case_number", "41040020261129000001", uuid4(), "fp")
    for event in claim.collect_events():
        stored = fast.to_stored_event(event)
        assert stored == library.to_stored_event(event)
        back = fast.to_domain_event(stored)
        assert vars(back) == vars(event)
        assert isinstance(back.originator_id, UUID)


def test_a_tag_below_the_top_level_is_untagged_as_the_library_does() -> None:
    """Nothing writes one today; history written by another version might, and must read the same."""
    library, fast = mappers()
    case = new_case()
    take(case, Step.FORWARD)
    forward = case.collect_events()[-1]
    stored = library.to_stored_event(forward)
    nested = uuid4()
    state = stored.state.replace(b'"details":{', b'"details":{"ref":{"_type_":"uuid_hex","_data_":"%s"},'
                                 % nested.hex.encode(), 1)
    assert state != stored.state
    crafted = StoredEvent(stored.originator_id, stored.originator_version, stored.topic, state)
    assert fast.to_domain_event(crafted).details["ref"] == nested  # type: ignore[attr-defined]
    assert vars(fast.to_domain_event(crafted)) == vars(library.to_domain_event(crafted))


def test_encrypted_case_events_round_trip_and_read_with_the_library() -> None:
    key = AESCipher.create_key(16)
    library, fast = mappers({"CIPHER_TOPIC": "eventsourcing.cryptography:AESCipher", "CIPHER_KEY": key})
    assert isinstance(fast.cipher, AESCipher)
    cipher = AESCipher(Environment(env={"CIPHER_KEY": key}))
    event = new_case().collect_events()[0]
    stored = fast.to_stored_event(event)
    assert b"receiving_site" not in stored.state
    assert cipher.decrypt(stored.state) == cipher.decrypt(library.to_stored_event(event).state)
    assert vars(library.to_domain_event(stored)) == vars(fast.to_domain_event(stored)) == vars(event)


@pytest.mark.parametrize("value", [2**70, -(2**63) - 1, 2**63, 2**64 - 1, [[[1]]], "x" * 30 + "9" * 25])
def test_what_orjson_cannot_keep_goes_the_librarys_way(value: object) -> None:
    """Partner data is any JSON: integers orjson would refuse to write or read back as floats are stored
    and read exactly as the library stores and reads them."""
    library, fast = mappers()
    case = new_case()
    take(case, Step.FORWARD)
    forward = case.collect_events()[-1]
    object.__setattr__(forward, "details", {"n": value})
    stored = fast.to_stored_event(forward)
    assert stored == library.to_stored_event(forward)
    back = fast.to_domain_event(stored)
    assert back.details == {"n": value}  # type: ignore[attr-defined]
    assert type(back.details["n"]) is type(value)  # type: ignore[attr-defined]


def test_a_site_stores_case_events_through_the_fast_path() -> None:
    mapper = hub("410400").mapper
    assert isinstance(mapper, CaseMapper) and mapper._json is not None
