"""The package's shape, read from its imports: only ``lfxai/tracking`` imports MLflow."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGE = REPO / "lfxai"


def _imports(path: Path) -> set[str]:
    """The top-level modules a file imports (anywhere in it, deferred imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_only_the_tracking_package_imports_mlflow():
    importers = {
        str(path.relative_to(REPO))
        for path in PACKAGE.rglob("*.py")
        if any(name.split(".")[0] == "mlflow" for name in _imports(path))
    }
    assert importers, "no module imports mlflow: the walk found nothing"
    assert {p for p in importers if not p.startswith("lfxai/tracking/")} == set()
