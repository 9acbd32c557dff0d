"""Region codes (行政区划代码, GB/T 2260): which codes are current, what they are called, what contains them.

The code history comes from python-stdnum's ``cn/loc`` database (already a dependency, kept current by
its maintainers), so we ship no copy of it. Revisions newer than that data go into a small overlay,
``routing/data/regions.toml``, and a site may add its own overlay file on top: codes get revised, and
that must be a data change, not a release.

Nothing is read at import time; ``RegionDirectory.load`` builds the table when called.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from stdnum import numdb

from hub.domain.values import LabelledEnum
from routing.errors import RegionDataError, UnknownRegion

__all__ = ["Region", "RegionDirectory", "RegionLevel"]

_CODE = re.compile(r"[0-9]{6}")
# One name in stdnum's history: "[1983-1987]新密区", "[-2010]崇文区", "[1986-]房山区" or a bare name.
_SEGMENT = re.compile(r"(?:\[(?P<start>[0-9]{4})?-(?P<end>[0-9]{4})?\])?(?P<name>[^\[\],]+)")
# Rows that reserve a block of codes rather than name a place: nobody applies "in 市辖区".
_PLACEHOLDERS = frozenset(
    {
        "市辖区",
        "县",
        "省直辖县级行政单位",
        "自治区直辖县级行政单位",
        "省直辖县级行政区划",
        "自治区直辖县级行政区划",
    }
)
_OVERLAY_KEYS = frozenset({"code", "name", "status", "note"})


class RegionLevel(LabelledEnum):
    PROVINCE = ("province", "省级")
    PREFECTURE = ("prefecture", "地级")
    COUNTY = ("county", "县级")

    @classmethod
    def of(cls, code: str) -> RegionLevel:
        """The level GB/T 2260 encodes in the digits: xx0000 province, xxxx00 prefecture, else county."""
        if code.endswith("0000"):
            return cls.PROVINCE
        if code.endswith("00"):
            return cls.PREFECTURE
        return cls.COUNTY


@dataclass(frozen=True)
class Region:
    """A current region. ``prefecture_code`` is the containing prefecture (itself for a prefecture),
    or None for provinces and for counties placed directly under a province or municipality
    (e.g. 济源市 419001, 北京市东城区 110101)."""

    code: str
    name: str
    level: RegionLevel
    province_code: str
    prefecture_code: str | None


@dataclass(frozen=True)
class _Entry:
    name: str
    active: bool


class RegionDirectory:
    """The table of current region codes, with lookups the routing and intake code need."""

    def __init__(self, regions: Iterable[Region], retired: Mapping[str, str] | None = None) -> None:
        self._regions = {region.code: region for region in regions}
        self._retired = dict(retired or {})

    @classmethod
    def load(cls, overlay: Path | None = None) -> RegionDirectory:
        """Build the table: stdnum's history, then our packaged overlay, then ``overlay`` if given.

        Raises:
            RegionDataError: an overlay file is malformed or names a code it cannot apply to.
        """
        entries = _stdnum_entries()
        packaged = resources.files("routing") / "data" / "regions.toml"
        _apply_overlay(entries, packaged.read_text(encoding="utf-8"), "routing/data/regions.toml")
        if overlay is not None:
            _apply_overlay(entries, overlay.read_text(encoding="utf-8"), str(overlay))
        return cls(*_build(entries))

    def __contains__(self, code: object) -> bool:
        return code in self._regions

    def __len__(self) -> int:
        return len(self._regions)

    def __iter__(self) -> Iterator[Region]:
        return iter(self._regions.values())

    def get(self, code: str) -> Region:
        """The current region for ``code``; raises UnknownRegion (saying so if it was retired)."""
        try:
            return self._regions[code]
        except KeyError:
            raise UnknownRegion(code, self._retired.get(code)) from None

    def is_valid(self, code: str) -> bool:
        """True for a 6-digit code that is current; retired, placeholder and malformed codes are not."""
        return _CODE.fullmatch(code) is not None and code in self._regions

    def name(self, code: str) -> str:
        return self.get(code).name

    def province_of(self, code: str) -> Region:
        return self.get(self.get(code).province_code)

    def prefecture_of(self, code: str) -> Region | None:
        prefecture = self.get(code).prefecture_code
        return None if prefecture is None else self.get(prefecture)

    def display(self, code: str) -> str:
        """The full name staff read on a receipt, e.g. "河南省 平顶山市 新华区"."""
        region = self.get(code)
        chain = [region.province_code, region.prefecture_code, region.code]
        seen: list[str] = []
        for link in chain:
            if link is not None and link not in seen:
                seen.append(link)
        return " ".join(self._regions[link].name for link in seen)


def _stdnum_entries() -> dict[str, _Entry]:
    """Every code in stdnum's history, with its current name or, if retired, its last name."""
    history: dict[str, list[tuple[int, int | None, str]]] = {}
    for _, low, high, props, children in numdb.get("cn/loc").prefixes:
        for province in _expand(low, high):
            history.setdefault(province + "0000", []).extend(_segments(props.get("province", "")))
            for _, child_low, child_high, child_props, _ in children:
                for suffix in _expand(child_low, child_high):
                    segments = _segments(child_props.get("county", ""))
                    if suffix == "0000":
                        # the county row of a province is the authoritative one; the province line is a label
                        history[province + suffix] = segments
                    else:
                        history.setdefault(province + suffix, []).extend(segments)
    entries: dict[str, _Entry] = {}
    for code, segments in history.items():
        current = [seg for seg in segments if seg[1] is None]
        if current:
            entries[code] = _Entry(max(current, key=lambda seg: seg[0])[2], True)
        elif segments:
            entries[code] = _Entry(max(segments, key=lambda seg: seg[1] or 0)[2], False)
    return entries


def _expand(low: str, high: str) -> Iterator[str]:
    width = len(low)
    for number in range(int(low), int(high) + 1):
        yield str(number).zfill(width)


def _segments(value: str) -> list[tuple[int, int | None, str]]:
    """Parse a history value into (start year, end year or None if still current, name) triples."""
    segments: list[tuple[int, int | None, str]] = []
    for piece in value.split(","):
        match = _SEGMENT.fullmatch(piece.strip())
        if match is None:
            continue
        start, end = match.group("start"), match.group("end")
        segments.append((int(start) if start else 0, int(end) if end else None, match.group("name")))
    return segments


def _apply_overlay(entries: dict[str, _Entry], text: str, source: str) -> None:
    """Apply ``[[region]]`` revisions in file order (later entries win)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegionDataError(source, "file", f"not valid TOML: {exc}") from None
    extra = set(document) - {"region"}
    if extra:
        raise RegionDataError(source, "file", f"unknown top-level keys {sorted(extra)}")
    rows = document.get("region", [])
    if not isinstance(rows, list):
        raise RegionDataError(source, "file", "region must be an array of tables ([[region]])")
    for index, row in enumerate(rows, start=1):
        code, name, active = _overlay_row(row, f"region #{index}", source)
        label = f"{code} {name}".strip()
        if active:
            if code[2:] != "0000" and not _is_active(entries, code[:2] + "0000"):
                raise RegionDataError(source, label, f"province {code[:2]}0000 is not a current region")
            entries[code] = _Entry(name, True)
        else:
            known = entries.get(code)
            if known is None:
                raise RegionDataError(source, label, "cannot retire a code that never existed")
            if code[2:] == "0000" and any(
                other[:2] == code[:2] and other != code and entry.active for other, entry in entries.items()
            ):
                raise RegionDataError(source, label, "cannot retire a province with current regions in it")
            entries[code] = _Entry(name or known.name, False)


def _overlay_row(row: Any, where: str, source: str) -> tuple[str, str, bool]:
    if not isinstance(row, dict):
        raise RegionDataError(source, where, "each [[region]] must be a table")
    code, name, status = row.get("code"), row.get("name", ""), row.get("status")
    if not isinstance(code, str) or _CODE.fullmatch(code) is None:
        raise RegionDataError(source, where, f"code must be a 6-digit string, got {code!r}")
    where = f"{where} {code}"
    extra = set(row) - _OVERLAY_KEYS
    if extra:
        raise RegionDataError(source, where, f"unknown keys {sorted(extra)}")
    if status not in ("active", "retired"):
        raise RegionDataError(source, where, f'status must be "active" or "retired", got {status!r}')
    if not isinstance(name, str) or (status == "active" and not name.strip()):
        raise RegionDataError(source, where, "an active region needs a non-empty name")
    return code, name.strip(), status == "active"


def _is_active(entries: Mapping[str, _Entry], code: str) -> bool:
    entry = entries.get(code)
    return entry is not None and entry.active


def _build(entries: Mapping[str, _Entry]) -> tuple[list[Region], dict[str, str]]:
    """Turn resolved entries into Regions (placeholders dropped) plus the retired names."""
    places = {
        code: entry.name
        for code, entry in entries.items()
        if entry.active and entry.name not in _PLACEHOLDERS
    }
    regions: list[Region] = []
    for code, name in places.items():
        level = RegionLevel.of(code)
        if level is RegionLevel.PROVINCE:
            prefecture: str | None = None
        elif level is RegionLevel.PREFECTURE:
            prefecture = code
        else:
            prefecture = code[:4] + "00" if code[:4] + "00" in places else None
        regions.append(Region(code, name, level, code[:2] + "0000", prefecture))
    retired = {
        code: entry.name
        for code, entry in entries.items()
        if not entry.active and entry.name not in _PLACEHOLDERS
    }
    return regions, retired
