"""Imports point one way: bubbles/ never imports ray, optuna, mlflow or click (usable from a notebook)."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {"ray", "optuna", "mlflow", "click", "study", "cli"}


def test_bubbles_imports_no_study_machinery() -> None:
    root = Path(__file__).resolve().parents[1] / "bubbles"
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_one_module_owns_mlflow() -> None:
    """Every MLflow call and run-state change goes through the study/tracking/ package (its writer transport beside it)."""
    root = Path(__file__).resolve().parents[1]
    users = {str(p.relative_to(root)) for p in [*(root / "study").rglob("*.py"), root / "cli.py"]
             if any(n.split(".")[0] == "mlflow" for n in _imports(p))}
    assert {u for u in users if not u.startswith("study/tracking/")} <= {"study/mlflow_writer.py"}, users
    writer_users = {str(p.relative_to(root)) for p in [*(root / "study").rglob("*.py"), root / "cli.py"]
                    if "study.mlflow_writer" in _imports(p)}
    assert all(u.startswith("study/tracking/") for u in writer_users), writer_users
