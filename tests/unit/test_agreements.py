"""Partner agreements (点对点通办协议): the seed file loads and is consistent; bad files are rejected."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from hub.domain.values import Mode
from routing.agreements import Agreement, Agreements, is_site_code, site_covers
from routing.catalogue import Catalogue
from routing.errors import AgreementError, RoutingError, UnknownAgreement
from routing.regions import RegionDirectory

PDS, ZZ, SZ, HZ, SZX = "410400", "410100", "320500", "330100", "440300"


@pytest.fixture(scope="module")
def seed() -> Agreements:
    return Agreements.load()


def test_seed_agreements_load_and_reference_real_items_and_regions(seed: Agreements) -> None:
    assert sorted(a.id for a in seed) == [
        "PDS-HZ-2025",
        "PDS-SZ-2026",
        "PDS-SZ-HZ-LB-2026",
        "PDS-SZX-2026",
        "PDS-ZZ-2024",
    ]
    seed.check_references(catalogue=Catalogue.load(), regions=RegionDirectory.load())
    assert all(PDS in a.sites and a.version >= 1 and a.title for a in seed)


def test_seed_scopes(seed: Agreements) -> None:
    suzhou = seed.get("PDS-SZ-2026")
    assert suzhou.sites == {PDS, SZ}
    assert suzhou.items == frozenset(f"KSTB-0{n:02d}" for n in (5, 6, 7, 9, 10, 11, 12))
    assert suzhou.modes == {Mode.PROXY, Mode.ONLINE}
    zhengzhou = seed.get("PDS-ZZ-2024")
    assert zhengzhou.items is None and zhengzhou.valid_to is None
    assert zhengzhou.modes == {Mode.PROXY, Mode.ONLINE, Mode.SELF_SERVICE}
    joint = seed.get("PDS-SZ-HZ-LB-2026")
    assert joint.sites == {PDS, SZ, HZ} and joint.items == frozenset({"KSTB-006", "KSTB-007"})
    assert joint.modes == {Mode.JOINT}


def test_between_partners_and_get(seed: Agreements) -> None:
    assert [a.id for a in seed.between(PDS, SZ)] == ["PDS-SZ-2026", "PDS-SZ-HZ-LB-2026"]
    assert [a.id for a in seed.between(SZ, PDS)] == ["PDS-SZ-2026", "PDS-SZ-HZ-LB-2026"]
    assert [a.id for a in seed.between(SZ, HZ)] == ["PDS-SZ-HZ-LB-2026"]
    assert seed.between(PDS, "310000") == []
    assert seed.partners_of(PDS) == {ZZ, SZ, HZ, SZX}
    assert seed.partners_of(SZ) == {PDS, HZ}
    assert seed.partners_of("310000") == frozenset()
    assert "PDS-SZ-2026" in seed and len(seed) == 5
    with pytest.raises(UnknownAgreement) as raised:
        seed.get("PDS-SH-2026")
    assert isinstance(raised.value, RoutingError) and "PDS-SH-2026" in raised.value.message


@pytest.mark.parametrize(
    ("item", "mode", "on", "expected"),
    [
        ("KSTB-006", Mode.PROXY, date(2026, 1, 1), True),  # first day, inclusive
        ("KSTB-006", Mode.ONLINE, date(2028, 12, 31), True),  # last day, inclusive
        ("KSTB-006", Mode.PROXY, date(2025, 12, 31), False),  # not yet in force
        ("KSTB-006", Mode.PROXY, date(2029, 1, 1), False),  # expired
        ("KSTB-013", Mode.PROXY, date(2026, 6, 1), False),  # item not covered
        ("KSTB-006", Mode.SELF_SERVICE, date(2026, 6, 1), False),  # mode not covered
    ],
)
def test_covers(seed: Agreements, item: str, mode: Mode, on: date, expected: bool) -> None:
    assert seed.get("PDS-SZ-2026").covers(item, mode, on) is expected


def test_all_items_agreement_covers_any_item(seed: Agreements) -> None:
    zhengzhou = seed.get("PDS-ZZ-2024")
    assert zhengzhou.covers("KSTB-013", Mode.SELF_SERVICE, date(2040, 1, 1))
    assert not zhengzhou.covers("KSTB-013", Mode.JOINT, date(2026, 6, 1))


@pytest.mark.parametrize(
    ("code", "site_shaped"),
    [("410400", True), ("410000", True), ("410402", False), ("000000", False), ("41040", False), ("4104000", False)],
)
def test_site_codes(code: str, site_shaped: bool) -> None:
    assert is_site_code(code) is site_shaped


@pytest.mark.parametrize(
    ("site", "region", "covered"),
    [
        ("320500", "320505", True),
        ("320500", "320500", True),
        ("320500", "320600", False),
        ("320000", "320505", True),
        ("320000", "320000", True),
        ("320000", "330100", False),
        ("410400", "410482", True),
    ],
)
def test_site_covers(site: str, region: str, covered: bool) -> None:
    assert site_covers(site, region) is covered


GOOD = """
[[agreement]]
id = "PDS-SZ-2026"
version = 1
title = "平顶山市—苏州市合作协议"
sites = ["410400", "320500"]
items = ["KSTB-005"]
modes = ["proxy"]
valid_from = 2026-01-01
valid_to = 2028-12-31
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agreements.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_site_file_replaces_the_seed(tmp_path: Path) -> None:
    loaded = Agreements.load(_write(tmp_path, GOOD))
    assert [a.id for a in loaded] == ["PDS-SZ-2026"]
    assert loaded.get("PDS-SZ-2026").valid_to == date(2028, 12, 31)


@pytest.mark.parametrize(
    ("old", "new", "named", "problem"),
    [
        ('modes = ["proxy"]', 'modes = ["proxy", "by_post"]', "PDS-SZ-2026", "unknown modes ['by_post']"),
        ('sites = ["410400", "320500"]', 'sites = ["410400"]', "PDS-SZ-2026", "at least 2 party sites"),
        ('sites = ["410400", "320500"]', 'sites = ["410400", "410400"]', "PDS-SZ-2026", "a party twice"),
        ('sites = ["410400", "320500"]', 'sites = ["410400", "320505"]', "PDS-SZ-2026", "['320505']"),
        ('sites = ["410400", "320500"]', 'sites = ["410400", "3205"]', "PDS-SZ-2026", "province-level"),
        ("valid_to = 2028-12-31", "valid_to = 2025-12-31", "PDS-SZ-2026", "valid_to (2025-12-31) is before"),
        ("valid_to = 2028-12-31", 'valid_to = "2028-12-31"', "PDS-SZ-2026", "TOML date"),
        ("valid_from = 2026-01-01", "valid_from = 2026-01-01T08:00:00", "PDS-SZ-2026", "TOML date"),
        ('items = ["KSTB-005"]', 'items = ["*", "KSTB-005"]', "PDS-SZ-2026", 'either ["*"]'),
        ('items = ["KSTB-005"]', "items = []", "PDS-SZ-2026", "at least one catalogue code"),
        ("version = 1", "version = 0", "PDS-SZ-2026", "version must be at least 1"),
        ("version = 1", "version = true", "PDS-SZ-2026", "version must be an integer"),
        ("version = 1", "", "PDS-SZ-2026", "missing fields ['version']"),
        ("version = 1", 'version = 1\nparties = ["410400"]', "PDS-SZ-2026", "unknown fields ['parties']"),
        ('id = "PDS-SZ-2026"', 'id = ""', "平顶山市—苏州市合作协议", "id must be a non-empty string"),
        ('title = "平顶山市—苏州市合作协议"', "title = 7", "PDS-SZ-2026", "title must be a non-empty string"),
    ],
)
def test_bad_agreement_is_rejected_naming_it(tmp_path: Path, old: str, new: str, named: str, problem: str) -> None:
    assert old in GOOD
    with pytest.raises(AgreementError) as raised:
        Agreements.load(_write(tmp_path, GOOD.replace(old, new)))
    error = raised.value
    assert named in error.agreement and named in error.message
    assert problem in error.problem
    assert str(tmp_path) in error.message
    assert isinstance(error, RoutingError)


def test_duplicate_id_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(AgreementError) as raised:
        Agreements.load(_write(tmp_path, GOOD + GOOD.replace("version = 1", "version = 2")))
    assert raised.value.agreement == "PDS-SZ-2026" and raised.value.problem == "duplicate id"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[[agreement]\n", "not valid TOML"),
        ("[other]\nx = 1\n", "unknown top-level keys ['other']"),
        ("agreement = 1\n", "array of tables"),
        ("agreement = [1]\n", "must be a table"),
    ],
)
def test_malformed_files(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(AgreementError) as raised:
        Agreements.load(_write(tmp_path, text))
    assert problem in raised.value.problem


def test_in_memory_agreements_obey_the_same_rules() -> None:
    bad = Agreement(
        id="X-1",
        version=1,
        title="测试协议",
        sites=frozenset({"410400", "320500"}),
        items=None,
        modes=frozenset({Mode.PROXY}),
        valid_from=date(2026, 2, 1),
        valid_to=date(2026, 1, 1),
    )
    with pytest.raises(AgreementError, match=r"\[X-1 测试协议\] \(<in memory>\)"):
        Agreements([bad])


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ('items = ["KSTB-005"]', 'items = ["KSTB-099"]', "item KSTB-099 is not in the catalogue"),
        ('sites = ["410400", "320500"]', 'sites = ["410400", "990000"]', "site 990000 is not a current region"),
    ],
)
def test_references_are_checked_against_catalogue_and_regions(
    tmp_path: Path, old: str, new: str, problem: str
) -> None:
    loaded = Agreements.load(_write(tmp_path, GOOD.replace(old, new)))
    with pytest.raises(AgreementError) as raised:
        loaded.check_references(catalogue=Catalogue.load(), regions=RegionDirectory.load())
    assert raised.value.problem == problem
    assert "PDS-SZ-2026" in raised.value.agreement
