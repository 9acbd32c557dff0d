"""The service catalogue (事项目录): which items the hub routes and the legal rules it enforces for each.

The catalogue is data (``routing/data/catalogue.toml``) because sites confirm and adjust limits,
departments and materials without a release. It is checked whole when loaded, so a bad edit fails at
start-up with the item and the problem named, never later in the middle of a case.

Nothing is read at import time; ``Catalogue.load`` reads the file when called.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hub.domain.values import CaseType, Mode, ServiceItem
from routing.data_files import read_tables
from routing.errors import CatalogueError, UnknownItem

__all__ = ["Catalogue"]

_REQUIRED = frozenset({"code", "name", "department", "modes", "legal_days", "committed_days"})
_OPTIONAL = frozenset({"implementation_code", "case_type", "extension_days", "paper_originals", "materials"})
_DEFAULT_EXTENSION_DAYS = 10
_MODES = {mode.value: mode for mode in Mode}
_CASE_TYPES = {case_type.value: case_type for case_type in CaseType}


class Catalogue:
    """The loaded catalogue, keyed by our stable item code (``KSTB-nnn``)."""

    def __init__(
        self,
        items: Iterable[ServiceItem],
        implementation_codes: Mapping[str, str] | None = None,
        *,
        source: str = "<in memory>",
    ) -> None:
        """Hold ``items`` after checking the rules every item must obey.

        ``implementation_codes`` maps item code to the site's 31-char 实施编码, which ServiceItem does
        not carry. Raises CatalogueError naming the first item that breaks a rule.
        """
        self._items: dict[str, ServiceItem] = {}
        self._by_name: dict[str, ServiceItem] = {}
        for item in items:
            _check_rules(item, source)
            if item.code in self._items:
                raise CatalogueError(source, _label(item.code, item.name), "duplicate code")
            if item.name in self._by_name:
                other = self._by_name[item.name].code
                raise CatalogueError(source, _label(item.code, item.name), f"same name as {other}")
            self._items[item.code] = item
            self._by_name[item.name] = item
        self._implementation_codes = {
            code: value for code, value in (implementation_codes or {}).items() if value
        }
        unknown = set(self._implementation_codes) - set(self._items)
        if unknown:
            raise CatalogueError(source, min(unknown), "implementation code for an item not in the catalogue")

    @classmethod
    def load(cls, path: Path | None = None) -> Catalogue:
        """Read and check the catalogue: the packaged file, or ``path`` (a site's own catalogue) instead.

        Raises:
            CatalogueError: the file is not valid TOML, or an item is malformed or breaks a rule.
        """
        rows, source = read_tables(path, "catalogue.toml", "item", CatalogueError)
        items: list[ServiceItem] = []
        implementation_codes: dict[str, str] = {}
        for index, row in enumerate(rows, start=1):
            item, implementation_code = _parse_item(row, index, source)
            items.append(item)
            if implementation_code:
                implementation_codes[item.code] = implementation_code
        return cls(items, implementation_codes, source=source)

    def __contains__(self, code: object) -> bool:
        return code in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, code: str) -> ServiceItem:
        try:
            return self._items[code]
        except KeyError:
            raise UnknownItem(code) from None

    def items(self) -> tuple[ServiceItem, ...]:
        """All items, in file order."""
        return tuple(self._items.values())

    def find(self, name: str) -> ServiceItem | None:
        """The item with exactly this Chinese name, as partner systems often send names, not our codes."""
        return self._by_name.get(name)

    def implementation_code(self, code: str) -> str | None:
        """This site's 实施编码 for the item, or None where the site has not mapped one yet."""
        self.get(code)
        return self._implementation_codes.get(code)


def _label(code: object, name: object) -> str:
    return " ".join(str(part) for part in (code, name) if part)


def _parse_item(row: Any, index: int, source: str) -> tuple[ServiceItem, str]:
    """Turn one ``[[item]]`` table into a ServiceItem, rejecting missing, unknown or mistyped fields."""
    if not isinstance(row, dict):
        raise CatalogueError(source, f"item #{index}", "each [[item]] must be a table")
    where = _label(row.get("code"), row.get("name")) or f"item #{index}"

    def fail(problem: str) -> CatalogueError:
        return CatalogueError(source, where, problem)

    missing = _REQUIRED - set(row)
    if missing:
        raise fail(f"missing fields {sorted(missing)}")
    extra = set(row) - _REQUIRED - _OPTIONAL
    if extra:
        raise fail(f"unknown fields {sorted(extra)}")

    def text(key: str, default: str | None = None) -> str:
        value = row.get(key, default)
        if not isinstance(value, str) or (default is None and not value.strip()):
            raise fail(f"{key} must be a non-empty string, got {value!r}")
        return value.strip()

    def days(key: str, default: int | None = None) -> int:
        value = row.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail(f"{key} must be a whole number of working days >= 0, got {value!r}")
        return value

    def texts(key: str) -> list[str]:
        value = row.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise fail(f"{key} must be a list of non-empty strings")
        return [v.strip() for v in value]

    unknown_modes = [value for value in texts("modes") if value not in _MODES]
    if unknown_modes:
        raise fail(f"unknown modes {unknown_modes} (expected some of {sorted(_MODES)})")
    modes = frozenset(_MODES[value] for value in texts("modes"))
    case_type = _CASE_TYPES.get(text("case_type", CaseType.COMMITTED.value))
    if case_type is None:
        raise fail(f"case_type must be one of {sorted(_CASE_TYPES)}, got {row.get('case_type')!r}")
    paper_originals = row.get("paper_originals", False)
    if not isinstance(paper_originals, bool):
        raise fail(f"paper_originals must be true or false, got {paper_originals!r}")
    item = ServiceItem(
        code=text("code"),
        name=text("name"),
        department=text("department"),
        modes=modes,
        legal_days=days("legal_days"),
        committed_days=days("committed_days"),
        case_type=case_type,
        extension_days=days("extension_days", _DEFAULT_EXTENSION_DAYS),
        materials=tuple(texts("materials")),
        paper_originals=paper_originals,
    )
    return item, text("implementation_code", "")


def _check_rules(item: ServiceItem, source: str) -> None:
    """The legal rules the hub relies on when it sets deadlines (DOMAIN.md, acceptance)."""
    where = _label(item.code, item.name)
    problem: str | None = None
    if not item.code or not item.name or not item.department:
        problem = "code, name and department must not be empty"
    elif not item.modes:
        problem = "modes must name at least one 通办 mode"
    elif item.legal_days < 1:
        problem = f"legal_days must be at least 1, got {item.legal_days}"
    elif item.extension_days < 0:
        problem = f"extension_days must not be negative, got {item.extension_days}"
    elif not 0 <= item.committed_days <= item.legal_days:
        problem = (
            f"committed_days ({item.committed_days}) must be between 0 and legal_days ({item.legal_days})"
        )
    elif item.case_type is CaseType.INSTANT and item.committed_days != 0:
        problem = f"an instant item (即办件) has committed_days 0, got {item.committed_days}"
    elif item.case_type is CaseType.COMMITTED and item.committed_days == 0:
        problem = "a committed item (承诺件) needs committed_days >= 1; use case_type instant for 即办件"
    if problem is not None:
        raise CatalogueError(source, where, problem)
