"""The route decision: which partner site handles a case, under which agreement. Pure: no I/O, no clock.

The receiving site (收件地) only ever forwards a case under a signed point-to-point agreement
(点对点通办协议) that covers the item, the mode and the day; decision authority (办事权) stays with the
handling place (办理地). The chosen agreement's id and version are part of the Route so the case's
events record exactly which text the case was routed under.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from hub.domain.values import Mode, ServiceItem
from routing.agreements import Agreement, Agreements, is_site_code, site_covers
from routing.catalogue import Catalogue
from routing.errors import RoutingError, UnknownRegion, Unroutable
from routing.regions import RegionDirectory, RegionLevel

__all__ = ["Route", "Router"]


@dataclass(frozen=True)
class Route:
    """Where a case goes: the handling site, any co-handling sites (多地联办), the department, and the
    agreement (id and version) that allows it."""

    handling_site: str
    co_handling_sites: tuple[str, ...]
    department: str
    agreement_id: str
    agreement_version: int

    def as_data(self) -> dict[str, object]:
        """JSON primitives, for storing in an event."""
        return {
            "handling_site": self.handling_site,
            "co_handling_sites": list(self.co_handling_sites),
            "department": self.department,
            "agreement_id": self.agreement_id,
            "agreement_version": self.agreement_version,
        }

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> Route:
        """The inverse of ``as_data``, for reading a stored event back."""
        co_sites = data["co_handling_sites"]
        version = data["agreement_version"]
        if not isinstance(co_sites, list | tuple) or not isinstance(version, int):
            raise ValueError(f"not a stored route: {dict(data)!r}")
        return cls(
            handling_site=str(data["handling_site"]),
            co_handling_sites=tuple(str(site) for site in co_sites),
            department=str(data["department"]),
            agreement_id=str(data["agreement_id"]),
            agreement_version=version,
        )


class Router:
    """Decides routes for one site (``site``, our own region code) from its catalogue and agreements."""

    def __init__(self, site: str, catalogue: Catalogue, regions: RegionDirectory, agreements: Agreements) -> None:
        """Raises UnknownRegion if ``site`` is not a current region, RoutingError if it is not site-shaped."""
        regions.get(site)
        if not is_site_code(site):
            raise RoutingError(f"站点代码必须是省级或地级行政区划代码: {site}")
        self.site = site
        self._catalogue = catalogue
        self._regions = regions
        self._agreements = agreements

    def route(
        self,
        *,
        item_code: str,
        mode: Mode,
        handling_region: str,
        co_handling_regions: Sequence[str] = (),
        on: date,
    ) -> Route:
        """Route a case received here for ``item_code`` in ``mode`` on the day ``on``.

        ``handling_region`` is where the business belongs (a county such as 320505 or a city such as
        320500); the handling site is the partner site covering it, the most specific one if several do.
        ``co_handling_regions`` (多地联办 only) map to sites the same way, and one agreement must then
        bind us, the handling site and every co-handling site.

        Raises:
            Unroutable: with ``reason`` UNKNOWN_ITEM, UNKNOWN_REGION, LOCAL_MATTER, NO_AGREEMENT,
                ITEM_NOT_COVERED, MODE_NOT_COVERED or AGREEMENT_EXPIRED and a Chinese message saying why.
        """
        facts = {
            "site": self.site,
            "item_code": item_code,
            "mode": mode.value,
            "handling_region": handling_region,
            "on": on.isoformat(),
        }
        if co_handling_regions:
            facts["co_handling_regions"] = ",".join(co_handling_regions)

        def refuse(reason: str, message: str, **extra: str) -> Unroutable:
            return Unroutable(reason, message, {**facts, **extra})

        if item_code not in self._catalogue:
            raise refuse(Unroutable.UNKNOWN_ITEM, f"未知的事项编码: {item_code!r}")
        item = self._catalogue.get(item_code)
        for region in (handling_region, *co_handling_regions):
            if not self._regions.is_valid(region):
                raise refuse(Unroutable.UNKNOWN_REGION, _region_problem(region, self._regions), region=region)
        if co_handling_regions and mode is not Mode.JOINT:
            raise refuse(
                Unroutable.MODE_NOT_COVERED,
                f"只有「{Mode.JOINT.label}」才能指定协办地，「{mode.label}」不能",
            )
        if mode not in item.modes:
            raise refuse(Unroutable.MODE_NOT_COVERED, f"事项「{item.name}」不支持「{mode.label}」模式")

        here = self._regions.name(self.site)
        candidates = self._agreements.partners_of(self.site) | {self.site}
        handling_site = _covering_site(handling_region, candidates)
        if handling_site == self.site:
            raise refuse(
                Unroutable.LOCAL_MATTER,
                f"{self._place(handling_region)}的事项由本地（{here}）办理，是本地事项，无需通办",
            )
        if handling_site is None:
            raise refuse(Unroutable.NO_AGREEMENT, f"{here}与{self._place(handling_region)}之间没有点对点通办协议")
        co_sites: list[str] = []
        for region in co_handling_regions:
            co_site = _covering_site(region, candidates)
            if co_site is None:
                raise refuse(
                    Unroutable.NO_AGREEMENT,
                    f"{here}与{self._place(region)}之间没有点对点通办协议",
                    region=region,
                )
            if co_site != handling_site and co_site not in co_sites:
                co_sites.append(co_site)
        co_sites.sort()

        parties = [self.site, handling_site, *co_sites]
        names = _join([self._regions.name(site) for site in parties])
        facts["handling_site"] = handling_site
        bound = self._agreements.including(parties)
        if not bound:
            raise refuse(Unroutable.NO_AGREEMENT, f"{names}之间没有点对点通办协议")
        usable = [a for a in bound if a.covers(item.code, mode, on)]
        if usable:
            return _route(handling_site, co_sites, item, _choose(usable))
        raise refuse(*_diagnose(names, bound, item, mode, on))

    def _place(self, region: str) -> str:
        """A region's name as staff read it: a county with its city (苏州市虎丘区), others alone."""
        found = self._regions.get(region)
        if found.level is not RegionLevel.COUNTY:
            return found.name
        parent = found.prefecture_code or found.province_code
        return self._regions.name(parent) + found.name


def _covering_site(region: str, sites: Iterable[str]) -> str | None:
    """The most specific of ``sites`` covering ``region``: a prefecture-level site beats a province."""
    covering = [site for site in sites if site_covers(site, region)]
    if not covering:
        return None
    return max(covering, key=lambda site: (not site.endswith("0000"), site))


def _choose(agreements: Sequence[Agreement]) -> Agreement:
    """Latest valid_from first, then highest version, then id, so the choice never depends on file order."""
    return max(agreements, key=lambda a: (a.valid_from, a.version, a.id))


def _route(handling_site: str, co_sites: Sequence[str], item: ServiceItem, agreement: Agreement) -> Route:
    return Route(
        handling_site=handling_site,
        co_handling_sites=tuple(co_sites),
        department=item.department,
        agreement_id=agreement.id,
        agreement_version=agreement.version,
    )


def _diagnose(names: str, bound: Sequence[Agreement], item: ServiceItem, mode: Mode, on: date) -> tuple[str, str]:
    """Reason and message when agreements bind the parties but none covers item, mode and day.

    An agreement that would cover item and mode on another day is the one staff ask about (it expired or
    has not started), even when other agreements are in force.
    """
    dated = [a for a in bound if a.covers_item(item.code) and mode in a.modes]
    in_force = [a for a in bound if a.in_force(on)]
    if dated or not in_force:
        return Unroutable.AGREEMENT_EXPIRED, _not_in_force(names, dated or bound, on)
    if not any(a.covers_item(item.code) for a in in_force):
        return Unroutable.ITEM_NOT_COVERED, f"{names}之间的点对点通办协议不包含事项「{item.name}」({item.code})"
    return (
        Unroutable.MODE_NOT_COVERED,
        f"{names}之间的点对点通办协议不支持以「{mode.label}」模式办理「{item.name}」",
    )


def _join(names: Sequence[str]) -> str:
    """两地 "平顶山市与苏州市", 多地 "平顶山市、苏州市、杭州市"."""
    return "与".join(names) if len(names) == 2 else "、".join(names)


def _region_problem(region: str, regions: RegionDirectory) -> str:
    try:
        regions.get(region)
    except UnknownRegion as exc:
        return exc.message
    return f"{region} 不是可办理业务的行政区划代码"


def _not_in_force(names: str, agreements: Sequence[Agreement], on: date) -> str:
    """Say whether the agreements have all ended, or the next one has not started yet."""
    upcoming = [a for a in agreements if on < a.valid_from]
    if upcoming:
        first = min(upcoming, key=lambda a: (a.valid_from, a.id))
        return f"{names}之间的点对点通办协议「{first.title}」尚未生效（{first.valid_from.isoformat()}起生效）"
    last = max(agreements, key=lambda a: (a.valid_to or on, a.id))
    ended = last.valid_to.isoformat() if last.valid_to is not None else ""
    return f"{names}之间的点对点通办协议「{last.title}」已于{ended}到期"
