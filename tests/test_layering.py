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


# No cycle is allowed (tiles <-> windows ended when make_splits moved to bubbles.data.splits).
KNOWN_CYCLES: list[list[str]] = []


def import_cycles(root: Path) -> list[list[str]]:
    """The import cycles among the project's own modules (bubbles, study, cli): every import counts, at the top, in
    a function or for type checking only (the logic of /work/shared/tools/cycles.py)."""
    files = [p for pkg in ("bubbles", "study") for p in (root / pkg).rglob("*.py")] + [root / "cli.py"]
    module_of = {p: ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__") for p in files}
    modules = set(module_of.values())
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path, module in module_of.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            for name in names:
                while name and name not in modules:
                    name = name.rpartition(".")[0]
                if name and name != module and not module.startswith(name + "."):
                    graph[module].add(name)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_cycles() -> None:
    assert import_cycles(Path(__file__).resolve().parents[1]) == KNOWN_CYCLES


def test_source_files_over_400_lines_say_why_at_the_top() -> None:
    root = Path(__file__).resolve().parents[1]
    files = [p for pkg in ("bubbles", "study") for p in (root / pkg).rglob("*.py")] + [root / "cli.py"]
    texts = {p: p.read_text() for p in files}
    unexplained = [f"{p.relative_to(root)} ({len(t.splitlines())} lines)" for p, t in texts.items()
                   if len(t.splitlines()) > 400 and not t.startswith("# Over 400 lines: ")]
    assert unexplained == []
