"""Region directory: stdnum's GB/T 2260 history plus our overlay, checked against the codes in DOMAIN.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from routing.errors import RegionDataError, RoutingError, UnknownRegion
from routing.regions import Region, RegionDirectory, RegionLevel


@pytest.fixture(scope="module")
def regions() -> RegionDirectory:
    return RegionDirectory.load()


# Every code named in DOMAIN.md, with the name it gives.
DOMAIN_CODES = [
    ("410000", "河南省", RegionLevel.PROVINCE),
    ("410100", "郑州市", RegionLevel.PREFECTURE),
    ("410300", "洛阳市", RegionLevel.PREFECTURE),
    ("410400", "平顶山市", RegionLevel.PREFECTURE),
    ("410402", "新华区", RegionLevel.COUNTY),
    ("410482", "汝州市", RegionLevel.COUNTY),
    ("411300", "南阳市", RegionLevel.PREFECTURE),
    ("411600", "周口市", RegionLevel.PREFECTURE),
    ("110000", "北京市", RegionLevel.PROVINCE),
    ("310000", "上海市", RegionLevel.PROVINCE),
    ("320500", "苏州市", RegionLevel.PREFECTURE),
    ("330100", "杭州市", RegionLevel.PREFECTURE),
    ("440100", "广州市", RegionLevel.PREFECTURE),
    ("440300", "深圳市", RegionLevel.PREFECTURE),
    ("420100", "武汉市", RegionLevel.PREFECTURE),
    ("371700", "菏泽市", RegionLevel.PREFECTURE),
    ("341200", "阜阳市", RegionLevel.PREFECTURE),
    ("610100", "西安市", RegionLevel.PREFECTURE),
]


@pytest.mark.parametrize(("code", "name", "level"), DOMAIN_CODES)
def test_domain_codes_resolve_with_their_names(
    regions: RegionDirectory, code: str, name: str, level: RegionLevel
) -> None:
    region = regions.get(code)
    assert (region.code, region.name, region.level) == (code, name, level)
    assert regions.name(code) == name
    assert regions.is_valid(code)
    assert code in regions


@pytest.mark.parametrize(
    ("code", "shown"),
    [
        ("410402", "河南省 平顶山市 新华区"),
        ("410482", "河南省 平顶山市 汝州市"),
        ("410100", "河南省 郑州市"),
        ("410000", "河南省"),
        ("110000", "北京市"),
        ("110101", "北京市 东城区"),  # 110100 is the 市辖区 placeholder, not a place
        ("410308", "河南省 洛阳市 孟津区"),  # 2021: 孟津县 410322 became a district
        ("419001", "河南省 济源市"),  # directly under the province (419000 is a placeholder)
        ("130502", "河北省 邢台市 襄都区"),  # renamed: "[1983-2019]桥东区,[2020-]襄都区"
    ],
)
def test_display_joins_province_prefecture_and_region(
    regions: RegionDirectory, code: str, shown: str
) -> None:
    assert regions.display(code) == shown


def test_containment(regions: RegionDirectory) -> None:
    assert regions.province_of("410402").code == "410000"
    prefecture = regions.prefecture_of("410402")
    assert prefecture is not None and prefecture.name == "平顶山市"
    assert regions.prefecture_of("410100") == regions.get("410100")
    assert regions.prefecture_of("410000") is None
    assert regions.prefecture_of("110101") is None
    assert regions.province_of("110000").code == "110000"


@pytest.mark.parametrize(
    ("code", "retired_name"),
    [
        ("110103", "崇文区"),  # merged into 东城区 in 2010
        ("410322", "孟津县"),  # became 孟津区 410308 in 2021
        ("410381", "偃师市"),  # became 偃师区 410307 in 2021
        ("410224", "开封县"),  # became 祥符区 410212 in 2014
    ],
)
def test_retired_code_is_rejected_with_its_old_name(
    regions: RegionDirectory, code: str, retired_name: str
) -> None:
    assert not regions.is_valid(code)
    assert code not in regions
    with pytest.raises(UnknownRegion) as caught:
        regions.get(code)
    assert caught.value.code == code
    assert caught.value.retired_name == retired_name
    assert retired_name in caught.value.message


@pytest.mark.parametrize(
    "code",
    ["999999", "410101", "110100", "419000", "41040", "4104021", "41040a", "４１００００", " 410402", ""],
)
def test_unknown_placeholder_and_malformed_codes_are_invalid(regions: RegionDirectory, code: str) -> None:
    assert not regions.is_valid(code)
    assert code not in regions
    with pytest.raises(UnknownRegion) as caught:
        regions.get(code)
    assert isinstance(caught.value, RoutingError)
    assert caught.value.retired_name is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("330113", "浙江省 杭州市 临平区"),  # added by the packaged overlay (2021)
        ("330114", "浙江省 杭州市 钱塘区"),
        ("429021", "湖北省 神农架林区"),
    ],
)
def test_packaged_overlay_adds_revisions_stdnum_lacks(
    regions: RegionDirectory, code: str, expected: str
) -> None:
    assert regions.display(code) == expected


@pytest.mark.parametrize("code", ["429001", "422921", "422900", "232761"])
def test_packaged_overlay_retires_stale_stdnum_rows(regions: RegionDirectory, code: str) -> None:
    assert not regions.is_valid(code)


def test_every_region_is_consistent(regions: RegionDirectory) -> None:
    assert len(regions) > 3000
    for region in regions:
        assert isinstance(region, Region)
        assert region.level is RegionLevel.of(region.code)
        assert region.province_code == region.code[:2] + "0000"
        assert regions.get(region.province_code).level is RegionLevel.PROVINCE
        if region.prefecture_code is not None:
            assert region.prefecture_code == region.code[:4] + "00"
            assert regions.get(region.prefecture_code).level is RegionLevel.PREFECTURE
        assert region.name not in ("市辖区", "县", "省直辖县级行政单位")
        assert regions.display(region.code).endswith(region.name)


def test_site_overlay_is_applied_on_top(tmp_path: Path) -> None:
    overlay = tmp_path / "regions.toml"
    overlay.write_text(
        """
[[region]]
code = "410482"
status = "retired"

[[region]]
code = "410402"
name = "新华新区"
status = "active"

[[region]]
code = "410499"
name = "试验区"
status = "active"
note = "invented for this test"
""",
        encoding="utf-8",
    )
    regions = RegionDirectory.load(overlay)
    assert not regions.is_valid("410482")
    with pytest.raises(UnknownRegion) as caught:
        regions.get("410482")
    assert caught.value.retired_name == "汝州市"
    assert regions.display("410402") == "河南省 平顶山市 新华新区"
    assert regions.get("410499") == Region("410499", "试验区", RegionLevel.COUNTY, "410000", "410400")
    assert regions.is_valid("330113")  # the packaged overlay still applies underneath


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ('[[region]]\ncode = "41040"\nname = "x"\nstatus = "active"\n', "6-digit"),
        ('[[region]]\ncode = "410402"\nname = "x"\nstatus = "gone"\n', "410402"),
        ('[[region]]\ncode = "410402"\nstatus = "active"\n', "non-empty name"),
        ('[[region]]\ncode = "410402"\nname = "x"\nstatus = "active"\ncolour = 1\n', "colour"),
        ('[[region]]\ncode = "990101"\nname = "x"\nstatus = "active"\n', "990000"),
        ('[[region]]\ncode = "410499"\nstatus = "retired"\n', "never existed"),
        ('[[region]]\ncode = "410000"\nstatus = "retired"\n', "410000"),
        ("[[region]\n", "TOML"),
        ("regions = []\n", "unknown top-level"),
    ],
)
def test_bad_overlay_is_rejected(tmp_path: Path, body: str, fragment: str) -> None:
    overlay = tmp_path / "bad.toml"
    overlay.write_text(body, encoding="utf-8")
    with pytest.raises(RegionDataError) as caught:
        RegionDirectory.load(overlay)
    assert fragment in caught.value.message
    assert str(overlay) in caught.value.message
