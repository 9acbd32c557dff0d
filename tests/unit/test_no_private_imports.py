"""No module imports another module's private name.

ruff's PLC2701 (pyproject) sees only imports across top-level packages; inside one package
(``adapters.exchange.nats_channel.inbox`` taking ``_checked`` from ``.common``) it looks away, so this
test looks at every ``from X import _y`` in our code and the tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("hub", "routing", "reconciliation", "audit", "adapters", "ops", "bench", "tests")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names if _private(alias.name)]
            if node.module and any(_private(part) for part in node.module.split(".")):
                names.append(node.module)
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {name}" for name in names]
        elif isinstance(node, ast.Import):
            found += [f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}" for alias in node.names
                      if any(_private(part) for part in alias.name.split("."))]
    return found


def test_no_module_imports_a_private_name() -> None:
    found = [hit for package in PACKAGES if (ROOT / package).is_dir()
             for path in sorted((ROOT / package).rglob("*.py")) for hit in _private_imports(path)]
    assert found == []
