"""JSON from outside, parsed within bounds: size first, then depth, never by recursion.

The standard library's parser recurses once per nesting level, so a document nested 100,000 deep
raises RecursionError (an INTERNAL answer) and costs the stack on the way. orjson parses without
recursion and stops at 1024 levels; the document's real depth is then measured with an explicit
stack and held to ``max_depth``. NaN and infinities are refused (not JSON), and so are lone
surrogates (not text).
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 16  # the deepest document an event or checkpoint holds is 4 levels
MAX_BYTES = 256 * 1024


class JsonRefused(ValueError):
    """The document is not JSON, or not within the bounds; ``reason`` says which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def loads(text: str | bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text``; JsonRefused (reason JSON_TOO_LARGE, JSON_TOO_DEEP or UNDECODABLE) otherwise."""
    size = len(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    if size > max_bytes:
        raise JsonRefused("JSON_TOO_LARGE", f"{size} bytes, more than {max_bytes}")
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        reason = "JSON_TOO_DEEP" if "depth" in str(error) else "UNDECODABLE"
        raise JsonRefused(reason, str(error)) from None
    if depth(document) > max_depth:
        raise JsonRefused("JSON_TOO_DEEP", f"nested deeper than {max_depth} levels")
    return document


def depth(document: Any) -> int:
    """How deeply lists and objects nest in ``document`` (a scalar is 0), with no recursion."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest
