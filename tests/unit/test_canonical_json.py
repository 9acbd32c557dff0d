"""The canonical bytes every hash and signature covers must not change with the encoder behind them:
orjson must write exactly what the standard library's sorted, compact, non-ASCII-escaping dump writes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hub.domain.shared import canonical_json


def reference(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


text = st.text(st.characters(exclude_categories=("Cs",)))  # lone surrogates cannot be UTF-8 in either
scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | text
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                         max_leaves=20)


@given(documents)
def test_same_bytes_as_the_standard_library(doc: Any) -> None:
    assert canonical_json(doc) == reference(doc)


def test_chinese_control_characters_and_key_order() -> None:
    doc = {"申请人": "王建国\n\t\x00\x1f\x7f\"\\", "b": [1, None, True], "a": {"z": "", "é": -1}, "𝔘": "😀"}
    assert canonical_json(doc) == reference(doc)


def test_what_orjson_refuses_still_encodes() -> None:
    doc = {"big": 2**70, "1": "x"}
    assert canonical_json(doc) == reference(doc)
    assert canonical_json({1: "integer key"}) == reference({1: "integer key"})
