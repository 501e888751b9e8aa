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
