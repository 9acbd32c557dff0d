"""Rows as column arrays: what ``INSERT ... SELECT * FROM unnest(%b::bigint[], ...)`` takes, so a batch of
rows is one statement with binary parameters rather than one statement per row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]
