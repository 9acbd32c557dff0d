"""Retry policy is data: read from [retry.*], checked, and used as read."""

from __future__ import annotations

import grpc
import pytest

from adapters.retry import Backoff, GrpcRetry
from adapters.settings import ConfigError, settings_from

SITE = {"site": {"code": "410400"}}


def test_defaults_are_the_policies_the_site_always_had() -> None:
    retry = settings_from(dict(SITE)).retry
    assert (retry.relay.first, retry.relay.most) == (0.1, 5.0)
    assert (retry.index.first, retry.index.most) == (0.5, 10.0)
    assert retry.grpc == GrpcRetry()
    assert grpc.StatusCode.PERMISSION_DENIED not in retry.grpc.transient


def test_sections_override_what_they_name() -> None:
    retry = settings_from({**SITE, "retry": {
        "relay": {"first": 1, "most": 30},
        "grpc": {"attempts": 2, "timeout": 1.5, "transient": ["unavailable"], "most": 0.5},
    }}).retry
    assert retry.relay == Backoff(first=1.0, most=30.0)
    assert retry.index == Backoff(first=0.5, most=10.0)
    assert retry.grpc.attempts == 2 and retry.grpc.timeout == 1.5
    assert retry.grpc.transient == frozenset({grpc.StatusCode.UNAVAILABLE})
    assert retry.grpc.backoff.most == 0.5


@pytest.mark.parametrize("bad", [
    {"relay": {"first": 0}},
    {"relay": {"first": 5, "most": 1}},
    {"index": {"jitter": 2}},
    {"relay": {"pause": 1}},
    {"grpc": {"transient": ["NOT_A_CODE"]}},
    {"grpc": {"tries": 3}},
    {"outbox": {}},
])
def test_a_bad_policy_is_a_config_error_that_names_its_section(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match=r"\[retry"):
        settings_from({**SITE, "retry": bad})


def test_pauses_grow_to_the_cap_with_bounded_jitter() -> None:
    backoff = Backoff(first=0.1, most=1.0, jitter=0.1)
    pauses = [backoff.pause(n) for n in range(1, 8)]
    assert 0.1 <= pauses[0] <= 0.11 and 0.2 <= pauses[1] <= 0.22
    assert all(1.0 <= p <= 1.1 for p in pauses[4:])
    assert GrpcRetry().is_transient(ValueError()) is False


@pytest.mark.parametrize("raw", [
    {**SITE, "server": {"workers": "many"}},
    {**SITE, "audit": {"checkpoint_interval": "often"}},
    {"site": "410400"},
    {**SITE, "store": "sqlite"},
])
def test_a_setting_of_the_wrong_type_or_shape_is_a_config_error_not_a_traceback(raw: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        settings_from(raw)
