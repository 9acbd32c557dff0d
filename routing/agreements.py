"""Point-to-point partner agreements (点对点通办协议): which sites receive which items for each other.

Agreements are data (``routing/data/agreements.toml``, or a site's own signed file) because sites sign,
extend and amend them without a release. The file is checked whole when loaded, so a bad edit fails at
start-up naming the agreement and the problem, never later in the middle of a case.

A *site* is the prefecture-level (xxxx00) or province-level (xx0000) region that runs a hub. Every
agreement carries a ``version`` that is bumped on each change; routes record id and version, so the
audit trail can tell which text a case was routed under.

Nothing is read at import time; ``Agreements.load`` reads the file when called.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from hub.domain.values import Mode
from routing.catalogue import Catalogue
from routing.data_files import read_tables
from routing.errors import AgreementError, UnknownAgreement
from routing.regions import RegionDirectory

__all__ = ["Agreement", "Agreements", "SiteAgreements", "is_site_code", "site_covers"]

_SITE = re.compile(r"[1-9][0-9]{3}00")
_ALL_ITEMS = "*"
_REQUIRED = frozenset({"id", "version", "title", "sites", "items", "modes", "valid_from"})
_OPTIONAL = frozenset({"valid_to"})
_MODES = {mode.value: mode for mode in Mode}


def is_site_code(code: str) -> bool:
    """True for a code shaped like a site: province level (xx0000) or prefecture level (xxxx00)."""
    return _SITE.fullmatch(code) is not None


def site_covers(site: str, region: str) -> bool:
    """Whether ``site`` handles business that belongs to ``region`` (the region is it or lies under it)."""
    if region == site:
        return True
    if site.endswith("0000"):
        return region[:2] == site[:2]
    return region[:4] == site[:4]


@dataclass(frozen=True)
class Agreement:
    """One signed agreement. ``items`` None means every catalogued item; both dates are inclusive."""

    id: str
    version: int
    title: str
    sites: frozenset[str]
    items: frozenset[str] | None
    modes: frozenset[Mode]
    valid_from: date
    valid_to: date | None = None

    def in_force(self, on: date) -> bool:
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)

    def covers_item(self, item_code: str) -> bool:
        return self.items is None or item_code in self.items

    def covers(self, item_code: str, mode: Mode, on: date) -> bool:
        """True when the agreement lets its parties route ``item_code`` in ``mode`` on the day ``on``."""
        return self.covers_item(item_code) and mode in self.modes and self.in_force(on)

    @property
    def label(self) -> str:
        """How errors name the agreement: id, version and title."""
        return f"{self.id} v{self.version} {self.title}"


class Agreements:
    """The agreements a site has loaded, checked as a whole."""

    def __init__(self, agreements: Iterable[Agreement], *, source: str = "<in memory>") -> None:
        """Hold ``agreements`` after checking each one; raises AgreementError naming the first bad one."""
        self._by_id: dict[str, Agreement] = {}
        for agreement in agreements:
            _check_rules(agreement, source)
            if agreement.id in self._by_id:
                raise AgreementError(source, agreement.id, "duplicate id")
            self._by_id[agreement.id] = agreement
        self._source = source

    @classmethod
    def load(cls, path: Path | None = None) -> Agreements:
        """Read and check the agreements: the packaged seed file, or ``path`` (the site's signed ones) instead.

        Raises:
            AgreementError: the file is not valid TOML, or an agreement is malformed or breaks a rule.
        """
        rows, source = read_tables(path, "agreements.toml", "agreement", AgreementError)
        return cls((_parse(row, index, source) for index, row in enumerate(rows, start=1)), source=source)

    def __contains__(self, agreement_id: object) -> bool:
        return agreement_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Agreement]:
        return iter(self._by_id.values())

    def get(self, agreement_id: str) -> Agreement:
        try:
            return self._by_id[agreement_id]
        except KeyError:
            raise UnknownAgreement(agreement_id) from None

    def including(self, sites: Iterable[str]) -> list[Agreement]:
        """Agreements to which every one of ``sites`` is a party, in id order."""
        wanted = frozenset(sites)
        return sorted((a for a in self._by_id.values() if wanted <= a.sites), key=lambda a: a.id)

    def between(self, a: str, b: str) -> list[Agreement]:
        """Agreements to which both ``a`` and ``b`` are parties (multi-party ones included), in id order."""
        return self.including((a, b))

    def partners_of(self, site: str) -> frozenset[str]:
        """Every site that shares at least one agreement with ``site`` (whatever its dates)."""
        partners: set[str] = set()
        for agreement in self._by_id.values():
            if site in agreement.sites:
                partners |= agreement.sites
        partners.discard(site)
        return frozenset(partners)

    def check_references(self, *, catalogue: Catalogue, regions: RegionDirectory) -> None:
        """Check that every party is a current region and every listed item is in ``catalogue``.

        Separate from loading because it needs the site's catalogue and region table; the composition
        root calls it at start-up so a stale code fails there, naming the agreement.
        """
        for agreement in self._by_id.values():
            for site in sorted(agreement.sites):
                if not regions.is_valid(site):
                    raise AgreementError(self._source, agreement.label, f"site {site} is not a current region")
            for item in sorted(agreement.items or ()):
                if item not in catalogue:
                    raise AgreementError(self._source, agreement.label, f"item {item} is not in the catalogue")


@dataclass(frozen=True)
class SiteAgreements:
    """The agreements as one site holds them: the application's ``Agreements`` port
    (hub/application/ports.py), asked whether a partner may open a case here."""

    site: str
    agreements: Agreements

    def covers(self, partner: str, item_code: str, mode: Mode, on: date) -> bool:
        """True when an agreement between this site and ``partner`` covers the item and mode on ``on``."""
        return partner != self.site and any(
            a.covers(item_code, mode, on) for a in self.agreements.between(self.site, partner))


def _parse(row: Any, index: int, source: str) -> Agreement:
    """Turn one ``[[agreement]]`` table into an Agreement, rejecting missing, unknown or mistyped fields."""
    if not isinstance(row, dict):
        raise AgreementError(source, f"agreement #{index}", "each [[agreement]] must be a table")
    label = " ".join(str(row[key]) for key in ("id", "title") if row.get(key))
    where = label or f"agreement #{index}"

    def fail(problem: str) -> AgreementError:
        return AgreementError(source, where, problem)

    missing = _REQUIRED - set(row)
    if missing:
        raise fail(f"missing fields {sorted(missing)}")
    extra = set(row) - _REQUIRED - _OPTIONAL
    if extra:
        raise fail(f"unknown fields {sorted(extra)}")

    def text(key: str) -> str:
        value = row[key]
        if not isinstance(value, str) or not value.strip():
            raise fail(f"{key} must be a non-empty string, got {value!r}")
        return value.strip()

    def texts(key: str) -> list[str]:
        value = row[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise fail(f"{key} must be a list of non-empty strings, got {value!r}")
        return [v.strip() for v in value]

    def day(key: str) -> date:
        value = row[key]
        if isinstance(value, datetime) or not isinstance(value, date):
            raise fail(f"{key} must be a TOML date such as 2026-01-01, got {value!r}")
        return value

    version = row["version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise fail(f"version must be an integer, got {version!r}")
    sites = texts("sites")
    if len(set(sites)) != len(sites):
        raise fail(f"sites lists a party twice: {sites}")
    items = texts("items")
    if _ALL_ITEMS in items and len(items) > 1:
        raise fail('items is either ["*"] (all items) or a list of catalogue codes, not both')
    if len(set(items)) != len(items):
        raise fail(f"items lists an item twice: {items}")
    modes = texts("modes")
    unknown = [value for value in modes if value not in _MODES]
    if unknown:
        raise fail(f"unknown modes {unknown} (expected some of {sorted(_MODES)})")
    return Agreement(
        id=text("id"),
        version=version,
        title=text("title"),
        sites=frozenset(sites),
        items=None if items == [_ALL_ITEMS] else frozenset(items),
        modes=frozenset(_MODES[value] for value in modes),
        valid_from=day("valid_from"),
        valid_to=day("valid_to") if "valid_to" in row else None,
    )


def _check_rules(agreement: Agreement, source: str) -> None:
    """The rules routing relies on, for agreements built in memory as well as loaded ones."""
    where = " ".join(part for part in (agreement.id, agreement.title) if part) or "agreement"
    problem: str | None = None
    bad_sites = sorted(site for site in agreement.sites if not is_site_code(site))
    if not agreement.id.strip() or not agreement.title.strip():
        problem = "id and title must not be empty"
    elif agreement.version < 1:
        problem = f"version must be at least 1, got {agreement.version}"
    elif len(agreement.sites) < 2:
        problem = f"an agreement needs at least 2 party sites, got {sorted(agreement.sites)}"
    elif bad_sites:
        problem = (
            f"site codes must be 6-digit province-level (xx0000) or prefecture-level (xxxx00) codes, "
            f"got {bad_sites}"
        )
    elif agreement.items is not None and (not agreement.items or _ALL_ITEMS in agreement.items):
        problem = 'items must name at least one catalogue code, or be ["*"] for all items'
    elif not agreement.modes:
        problem = "modes must name at least one 通办 mode"
    elif agreement.valid_to is not None and agreement.valid_to < agreement.valid_from:
        problem = f"valid_to ({agreement.valid_to}) is before valid_from ({agreement.valid_from})"
    if problem is not None:
        raise AgreementError(source, where, problem)
