"""The route decision: which partner site handles a case under which agreement, and every refusal."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import date

import pytest

from hub.domain.errors import RuleViolation
from hub.domain.values import Mode
from routing.agreements import Agreement, Agreements
from routing.catalogue import Catalogue
from routing.errors import RoutingError, UnknownRegion, Unroutable
from routing.regions import RegionDirectory
from routing.router import Route, Router

PDS = "410400"
TODAY = date(2026, 11, 29)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


@pytest.fixture(scope="module")
def regions() -> RegionDirectory:
    return RegionDirectory.load()


@pytest.fixture(scope="module")
def router(catalogue: Catalogue, regions: RegionDirectory) -> Router:
    return Router(PDS, catalogue, regions, Agreements.load())


def _agreement(
    id: str,
    sites: Sequence[str],
    items: Sequence[str] | None = None,
    modes: Sequence[Mode] = (Mode.PROXY,),
    valid_from: date = date(2026, 1, 1),
    valid_to: date | None = None,
    version: int = 1,
) -> Agreement:
    return Agreement(
        id=id,
        version=version,
        title=f"{id} 测试协议",
        sites=frozenset(sites),
        items=None if items is None else frozenset(items),
        modes=frozenset(modes),
        valid_from=valid_from,
        valid_to=valid_to,
    )


@pytest.mark.parametrize(
    ("item", "mode", "region", "co_regions", "expected"),
    [
        # a county under a partner city goes to the city's site
        ("KSTB-006", Mode.PROXY, "320505", (), ("320500", (), "人力资源和社会保障局", "PDS-SZ-2026")),
        ("KSTB-011", Mode.ONLINE, "320506", (), ("320500", (), "住房公积金管理中心", "PDS-SZ-2026")),
        ("KSTB-006", Mode.PROXY, "320500", (), ("320500", (), "人力资源和社会保障局", "PDS-SZ-2026")),
        # 全豫通办: every item, including self-service
        ("KSTB-013", Mode.PROXY, "410102", (), ("410100", (), "不动产登记中心", "PDS-ZZ-2024")),
        ("KSTB-005", Mode.SELF_SERVICE, "410100", (), ("410100", (), "人力资源和社会保障局", "PDS-ZZ-2024")),
        ("KSTB-001", Mode.ONLINE, "330106", (), ("330100", (), "市场监督管理局", "PDS-HZ-2025")),
        ("KSTB-016", Mode.PROXY, "440304", (), ("440300", (), "公安局户政部门", "PDS-SZX-2026")),
        # 多地联办 across three sites; co-handling regions map to sites, deduplicated
        (
            "KSTB-006",
            Mode.JOINT,
            "320505",
            ("330106",),
            ("320500", ("330100",), "人力资源和社会保障局", "PDS-SZ-HZ-LB-2026"),
        ),
        (
            "KSTB-007",
            Mode.JOINT,
            "330106",
            ("320505", "320506", "330102"),
            ("330100", ("320500",), "人力资源和社会保障局", "PDS-SZ-HZ-LB-2026"),
        ),
    ],
)
def test_routes(
    router: Router,
    item: str,
    mode: Mode,
    region: str,
    co_regions: tuple[str, ...],
    expected: tuple[str, tuple[str, ...], str, str],
) -> None:
    route = router.route(item_code=item, mode=mode, handling_region=region, co_handling_regions=co_regions, on=TODAY)
    assert (route.handling_site, route.co_handling_sites, route.department, route.agreement_id) == expected
    assert route.agreement_version == 1


@pytest.mark.parametrize(
    ("item", "region", "site", "agreement"),
    [
        ("KSTB-013", "320102", "320000", "PROVINCE"),  # 南京市玄武区: only the province site covers it
        ("KSTB-013", "320000", "320000", "PROVINCE"),
        ("KSTB-005", "320505", "320500", "CITY"),  # both cover 苏州市虎丘区: the prefecture wins
        ("KSTB-005", "410102", "410000", "HENAN"),  # 河南省 covers 郑州, not a partner city of its own here
    ],
)
def test_province_level_sites_and_the_most_specific_wins(
    catalogue: Catalogue, regions: RegionDirectory, item: str, region: str, site: str, agreement: str
) -> None:
    agreements = Agreements(
        [
            _agreement("PROVINCE", [PDS, "320000"]),
            _agreement("CITY", [PDS, "320500"], items=["KSTB-005"]),
            _agreement("HENAN", [PDS, "410000"]),
        ]
    )
    route = Router(PDS, catalogue, regions, agreements).route(
        item_code=item, mode=Mode.PROXY, handling_region=region, on=TODAY
    )
    assert (route.handling_site, route.agreement_id) == (site, agreement)


def test_a_province_partner_does_not_take_our_own_business(catalogue: Catalogue, regions: RegionDirectory) -> None:
    router = Router(PDS, catalogue, regions, Agreements([_agreement("HENAN", [PDS, "410000"])]))
    with pytest.raises(Unroutable) as raised:
        router.route(item_code="KSTB-005", mode=Mode.PROXY, handling_region="410482", on=TODAY)
    assert raised.value.reason == "LOCAL_MATTER"


def test_the_most_specific_site_wins_even_when_its_agreement_lacks_the_item(
    catalogue: Catalogue, regions: RegionDirectory
) -> None:
    """The business of 苏州市 belongs to 苏州市: the province's broader agreement is no detour around it."""
    agreements = Agreements(
        [_agreement("PROVINCE", [PDS, "320000"]), _agreement("CITY", [PDS, "320500"], ["KSTB-005"])]
    )
    with pytest.raises(Unroutable) as raised:
        Router(PDS, catalogue, regions, agreements).route(
            item_code="KSTB-013", mode=Mode.PROXY, handling_region="320505", on=TODAY
        )
    assert raised.value.reason == "ITEM_NOT_COVERED"
    assert raised.value.metadata["handling_site"] == "320500"


REFUSALS = [
    ("KSTB-099", Mode.PROXY, "320505", (), TODAY, "UNKNOWN_ITEM", "未知的事项编码: 'KSTB-099'"),
    ("KSTB-006", Mode.PROXY, "999999", (), TODAY, "UNKNOWN_REGION", "未知的行政区划代码: '999999'"),
    ("KSTB-006", Mode.PROXY, "32050", (), TODAY, "UNKNOWN_REGION", "未知的行政区划代码: '32050'"),
    ("KSTB-006", Mode.PROXY, "330103", (), TODAY, "UNKNOWN_REGION", "行政区划代码已撤销: 330103 (下城区)"),
    ("KSTB-006", Mode.JOINT, "320505", ("339999",), TODAY, "UNKNOWN_REGION", "未知的行政区划代码: '339999'"),
    (
        "KSTB-013",
        Mode.PROXY,
        "410402",
        (),
        TODAY,
        "LOCAL_MATTER",
        "平顶山市新华区的事项由本地（平顶山市）办理，是本地事项，无需通办",
    ),
    (
        "KSTB-013",
        Mode.PROXY,
        "410400",
        (),
        TODAY,
        "LOCAL_MATTER",
        "平顶山市的事项由本地（平顶山市）办理，是本地事项，无需通办",
    ),
    ("KSTB-013", Mode.PROXY, "310000", (), TODAY, "NO_AGREEMENT", "平顶山市与上海市之间没有点对点通办协议"),
    ("KSTB-013", Mode.PROXY, "310101", (), TODAY, "NO_AGREEMENT", "平顶山市与上海市黄浦区之间没有点对点通办协议"),
    ("KSTB-013", Mode.PROXY, "320102", (), TODAY, "NO_AGREEMENT", "平顶山市与南京市玄武区之间没有点对点通办协议"),
    (
        "KSTB-006",
        Mode.JOINT,
        "320505",
        ("440304",),
        TODAY,
        "NO_AGREEMENT",
        "平顶山市、苏州市、深圳市之间没有点对点通办协议",
    ),
    (
        "KSTB-006",
        Mode.JOINT,
        "320505",
        ("310101",),
        TODAY,
        "NO_AGREEMENT",
        "平顶山市与上海市黄浦区之间没有点对点通办协议",
    ),
    (
        "KSTB-013",
        Mode.PROXY,
        "320505",
        (),
        TODAY,
        "ITEM_NOT_COVERED",
        "平顶山市与苏州市之间的点对点通办协议不包含事项「不动产抵押登记」(KSTB-013)",
    ),
    (
        "KSTB-017",
        Mode.JOINT,
        "320505",
        ("330106",),
        TODAY,
        "ITEM_NOT_COVERED",
        "平顶山市、苏州市、杭州市之间的点对点通办协议不包含事项「工作调动户口迁移」(KSTB-017)",
    ),
    (
        "KSTB-005",
        Mode.SELF_SERVICE,
        "320505",
        (),
        TODAY,
        "MODE_NOT_COVERED",
        "平顶山市与苏州市之间的点对点通办协议不支持以「跨省自助办」模式办理「失业登记」",
    ),
    (
        "KSTB-006",
        Mode.JOINT,
        "440304",
        (),
        TODAY,
        "MODE_NOT_COVERED",
        "平顶山市与深圳市之间的点对点通办协议不支持以「多地联办」模式办理「企业职工基本养老保险关系转移接续」",
    ),
    # the catalogue does not offer the mode for the item at all
    (
        "KSTB-003",
        Mode.SELF_SERVICE,
        "410102",
        (),
        TODAY,
        "MODE_NOT_COVERED",
        "事项「工业产品生产许可证」不支持「跨省自助办」模式",
    ),
    # co-handling places only make sense for 多地联办
    (
        "KSTB-006",
        Mode.PROXY,
        "320505",
        ("330106",),
        TODAY,
        "MODE_NOT_COVERED",
        "只有「多地联办」才能指定协办地，「异地代收代办」不能",
    ),
    (
        "KSTB-006",
        Mode.PROXY,
        "320505",
        (),
        date(2029, 1, 1),
        "AGREEMENT_EXPIRED",
        "平顶山市与苏州市之间的点对点通办协议「平顶山市—苏州市政务服务“跨省通办”合作协议」已于2028-12-31到期",
    ),
    (
        "KSTB-006",
        Mode.PROXY,
        "440304",
        (),
        date(2026, 3, 31),
        "AGREEMENT_EXPIRED",
        "平顶山市与深圳市之间的点对点通办协议「平顶山市—深圳市政务服务“跨省通办”合作协议」尚未生效（2026-04-01起生效）",
    ),
    (
        "KSTB-006",
        Mode.JOINT,
        "320505",
        ("330106",),
        date(2026, 5, 31),
        "AGREEMENT_EXPIRED",
        "平顶山市、苏州市、杭州市之间的点对点通办协议「平顶山市、苏州市、杭州市养老保险关系转移接续“多地联办”协议」"
        "尚未生效（2026-06-01起生效）",
    ),
]


@pytest.mark.parametrize(("item", "mode", "region", "co_regions", "on", "reason", "message"), REFUSALS)
def test_refusals(
    router: Router,
    item: str,
    mode: Mode,
    region: str,
    co_regions: tuple[str, ...],
    on: date,
    reason: str,
    message: str,
) -> None:
    with pytest.raises(Unroutable) as raised:
        router.route(item_code=item, mode=mode, handling_region=region, co_handling_regions=co_regions, on=on)
    error = raised.value
    assert (error.reason, error.message, str(error)) == (reason, message, message)
    assert isinstance(error, RuleViolation) and isinstance(error, RoutingError)
    assert error.metadata["item_code"] == item and error.metadata["handling_region"] == region
    assert error.metadata["site"] == PDS and error.metadata["mode"] == mode.value


def test_every_refusal_reason_is_exercised() -> None:
    assert {refusal[5] for refusal in REFUSALS} == Unroutable.REASONS


def test_refusal_metadata_names_the_handling_site_once_known(router: Router) -> None:
    with pytest.raises(Unroutable) as raised:
        router.route(item_code="KSTB-013", mode=Mode.PROXY, handling_region="320505", on=TODAY)
    assert raised.value.metadata == {
        "site": PDS,
        "item_code": "KSTB-013",
        "mode": "proxy",
        "handling_region": "320505",
        "on": "2026-11-29",
        "handling_site": "320500",
    }


def test_an_expired_agreement_gives_way_to_its_successor(catalogue: Catalogue, regions: RegionDirectory) -> None:
    agreements = Agreements(
        [
            _agreement(
                "SZ-2023", [PDS, "320500"], ["KSTB-005"], valid_from=date(2023, 1, 1), valid_to=date(2025, 12, 31)
            ),
            _agreement("SZ-2026", [PDS, "320500"], ["KSTB-005"], valid_from=date(2026, 1, 1)),
        ]
    )
    router = Router(PDS, catalogue, regions, agreements)

    def route(on: date) -> str:
        return router.route(item_code="KSTB-005", mode=Mode.PROXY, handling_region="320505", on=on).agreement_id

    assert route(date(2025, 12, 31)) == "SZ-2023"
    assert route(date(2026, 1, 1)) == "SZ-2026"
    with pytest.raises(Unroutable, match="尚未生效（2023-01-01起生效）") as raised:
        route(date(2022, 12, 31))
    assert raised.value.reason == "AGREEMENT_EXPIRED"


def test_choice_among_qualifying_agreements_is_deterministic(catalogue: Catalogue, regions: RegionDirectory) -> None:
    """Latest valid_from wins, then the highest version; file order never matters."""
    candidates = [
        _agreement("A", [PDS, "320500"], valid_from=date(2025, 1, 1), version=7),
        _agreement("B", [PDS, "320500"], valid_from=date(2026, 1, 1), version=1),
        _agreement("C", [PDS, "320500"], valid_from=date(2026, 1, 1), version=3),
        _agreement("D", [PDS, "320500", "330100"], valid_from=date(2026, 1, 1), version=2),
        _agreement("E", [PDS, "320500"], valid_from=date(2026, 6, 1), version=9, modes=(Mode.ONLINE,)),
        _agreement("F", [PDS, "320500"], valid_from=date(2027, 1, 1), version=9),
    ]
    chosen = set()
    for order in itertools.permutations(candidates):
        route = Router(PDS, catalogue, regions, Agreements(order)).route(
            item_code="KSTB-005", mode=Mode.PROXY, handling_region="320505", on=TODAY
        )
        chosen.add((route.agreement_id, route.agreement_version))
    assert chosen == {("C", 3)}


def test_a_co_handling_region_may_be_our_own(router: Router) -> None:
    """In 多地联办 our own departments can co-handle (e.g. the 迁入地 of a household move)."""
    route = router.route(
        item_code="KSTB-006", mode=Mode.JOINT, handling_region="330106", co_handling_regions=["410402"], on=TODAY
    )
    assert (route.handling_site, route.co_handling_sites) == ("330100", (PDS,))


def test_route_as_data_is_json_and_round_trips(router: Router) -> None:
    route = router.route(
        item_code="KSTB-006", mode=Mode.JOINT, handling_region="320505", co_handling_regions=["330106"], on=TODAY
    )
    data = json.loads(json.dumps(route.as_data()))
    assert data == {
        "handling_site": "320500",
        "co_handling_sites": ["330100"],
        "department": "人力资源和社会保障局",
        "agreement_id": "PDS-SZ-HZ-LB-2026",
        "agreement_version": 1,
    }
    assert Route.from_data(data) == route
    with pytest.raises(ValueError, match="not a stored route"):
        Route.from_data({**data, "agreement_version": "1"})


def test_router_needs_a_current_site_shaped_code(catalogue: Catalogue, regions: RegionDirectory) -> None:
    agreements = Agreements.load()
    with pytest.raises(UnknownRegion):
        Router("419900", catalogue, regions, agreements)
    with pytest.raises(RoutingError, match="站点代码必须是省级或地级行政区划代码: 410402"):
        Router("410402", catalogue, regions, agreements)
    assert Router("410000", catalogue, regions, agreements).site == "410000"
