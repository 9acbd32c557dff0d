"""Service catalogue: the 20 seed items from DOMAIN.md load and obey the rules; bad files are rejected."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.domain.values import CaseType, Mode, ServiceItem
from routing.catalogue import Catalogue
from routing.errors import CatalogueError, RoutingError, UnknownItem

# DOMAIN.md "Seed catalogue", in order: KSTB-001 .. KSTB-020.
SEED_NAMES = [
    "内资企业及分支机构设立登记",
    "个体工商户变更登记",
    "工业产品生产许可证",
    "排污许可",
    "失业登记",
    "企业职工基本养老保险关系转移接续",
    "城乡居民基本养老保险关系转移接续",
    "职业资格证书核验",
    "社会保障卡申领",
    "跨省异地就医登记备案",
    "正常退休提取住房公积金",
    "购房提取住房公积金",
    "不动产抵押登记",
    "机动车驾驶证公证",
    "学历公证",
    "开具户籍类证明",
    "工作调动户口迁移",
    "大中专院校录取学生户口迁移",
    "夫妻投靠户口迁移",
    "父母投靠子女户口迁移",
]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load()


def test_seed_items_load_in_domain_order(catalogue: Catalogue) -> None:
    assert [item.name for item in catalogue.items()] == SEED_NAMES
    assert [item.code for item in catalogue.items()] == [f"KSTB-{i:03d}" for i in range(1, 21)]
    assert len(catalogue) == 20


@pytest.mark.parametrize(("index", "name"), list(enumerate(SEED_NAMES, start=1)))
def test_each_item_obeys_the_rules(catalogue: Catalogue, index: int, name: str) -> None:
    code = f"KSTB-{index:03d}"
    item = catalogue.get(code)
    assert code in catalogue
    assert catalogue.find(name) is item
    assert item.name == name and item.department
    assert Mode.PROXY in item.modes  # the hub exists for 异地代收代办
    assert 0 <= item.committed_days <= item.legal_days
    assert item.extension_days >= 0
    assert item.materials and all(item.materials)
    if item.case_type is CaseType.INSTANT:
        assert item.committed_days == 0
    else:
        assert item.committed_days >= 1
    assert catalogue.implementation_code(code) is None  # no real 实施编码 shipped


@pytest.mark.parametrize(
    ("name", "department", "case_type"),
    [
        ("内资企业及分支机构设立登记", "市场监督管理局", CaseType.COMMITTED),
        ("排污许可", "生态环境局", CaseType.COMMITTED),
        ("职业资格证书核验", "人力资源和社会保障局", CaseType.INSTANT),
        ("跨省异地就医登记备案", "医疗保障局", CaseType.INSTANT),
        ("购房提取住房公积金", "住房公积金管理中心", CaseType.COMMITTED),
        ("不动产抵押登记", "不动产登记中心", CaseType.COMMITTED),
        ("学历公证", "公证处", CaseType.COMMITTED),
        ("开具户籍类证明", "公安局户政部门", CaseType.INSTANT),
    ],
)
def test_departments_and_case_types(
    catalogue: Catalogue, name: str, department: str, case_type: CaseType
) -> None:
    item = catalogue.find(name)
    assert item is not None
    assert (item.department, item.case_type) == (department, case_type)


def test_unknown_item(catalogue: Catalogue) -> None:
    assert "KSTB-999" not in catalogue
    assert catalogue.find("不存在的事项") is None
    with pytest.raises(UnknownItem) as caught:
        catalogue.get("KSTB-999")
    assert caught.value.code == "KSTB-999"
    assert isinstance(caught.value, RoutingError)
    with pytest.raises(UnknownItem):
        catalogue.implementation_code("KSTB-999")


GOOD = """
[[item]]
code = "T-1"
name = "测试事项"
implementation_code = "{impl}"
department = "测试局"
modes = {modes}
case_type = "{case_type}"
legal_days = {legal}
committed_days = {committed}
materials = ["居民身份证"]
"""


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "catalogue.toml"
    path.write_text(body, encoding="utf-8")
    return path


def _good(**overrides: object) -> str:
    fields: dict[str, object] = {
        "impl": "",
        "modes": '["proxy"]',
        "case_type": "committed",
        "legal": 20,
        "committed": 5,
    }
    fields.update(overrides)
    return GOOD.format(**fields)


def test_defaults_and_site_implementation_code(tmp_path: Path) -> None:
    impl = "11410000005184408T4000111000000"  # invented, 31 chars
    catalogue = Catalogue.load(_write(tmp_path, _good(impl=impl)))
    item = catalogue.get("T-1")
    assert item == ServiceItem(
        code="T-1",
        name="测试事项",
        department="测试局",
        modes=frozenset({Mode.PROXY}),
        legal_days=20,
        committed_days=5,
        extension_days=10,
        materials=("居民身份证",),
    )
    assert catalogue.implementation_code("T-1") == impl


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (_good(committed=25), "committed_days (25)"),
        (_good(modes='["proxy", "teleport"]'), "teleport"),
        (_good(modes="[]"), "at least one"),
        (_good(case_type="instant"), "即办件"),
        (_good(committed=0), "承诺件"),
        (_good(case_type="someday"), "case_type"),
        (_good(legal="true"), "legal_days"),
        (_good(committed=-1), "committed_days"),
        (_good() + 'colour = "red"\n', "colour"),
        (_good().replace('department = "测试局"\n', ""), "department"),
        (_good() + _good(), "duplicate code"),
        (_good() + _good().replace('"T-1"', '"T-2"'), "same name as T-1"),
    ],
)
def test_bad_catalogue_is_rejected_naming_the_item(tmp_path: Path, body: str, fragment: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(CatalogueError) as caught:
        Catalogue.load(path)
    message = caught.value.message
    assert "T-1" in message or "T-2" in message
    assert "测试事项" in message
    assert fragment in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("[[item]\n", "TOML"),
        ("items = []\n", "unknown top-level"),
        ('item = "x"\n', "array of tables"),
    ],
)
def test_malformed_catalogue_file_is_rejected(tmp_path: Path, body: str, fragment: str) -> None:
    with pytest.raises(CatalogueError) as caught:
        Catalogue.load(_write(tmp_path, body))
    assert fragment in caught.value.message


def test_in_memory_catalogue_checks_the_same_rules() -> None:
    bad = ServiceItem(
        code="X-1",
        name="坏事项",
        department="测试局",
        modes=frozenset({Mode.PROXY}),
        legal_days=5,
        committed_days=6,
    )
    with pytest.raises(CatalogueError, match="X-1 坏事项"):
        Catalogue([bad])
