"""The Dockerfile that builds the RayJob's image, checked without Docker: its build context (after .dockerignore)
holds the project and no environments, data or outputs; its steps, run in order in a fresh venv, install the pinned
stack, Ray's dashboard and the project, and leave `bubbles-study` and `ray job submit` working.

The fresh venv sees the pinned stack already installed for these tests (the running interpreter's site-packages,
through PYTHONPATH), so pip resolves every pin of requirements.txt against it and downloads only what the image adds
(ray[default]'s dashboard packages): a from-scratch install of torch, Ray and MLflow would cost minutes per CI run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, args = pending.strip().partition(" ")
        out.append((word.upper(), args.strip()))
        pending = ""
    return out


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus `**`) as a regular expression on a relative path."""
    glob = glob.strip().strip("/")
    regex = ""
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif glob[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif glob[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(glob[i]), i + 1
    return re.compile(regex + r"\Z")


def build_context(root: Path) -> list[str]:
    """The files `docker build` sends: every file under root not excluded by .dockerignore (a pattern that matches
    a directory excludes everything under it)."""
    patterns = [_pattern(x) for x in (root / ".dockerignore").read_text().splitlines()
                if x.strip() and not x.startswith("#")]
    assert not any(x.startswith("!") for x in (root / ".dockerignore").read_text().splitlines())  # not handled here

    def excluded(rel: str) -> bool:
        return any(p.match(rel) for p in patterns)

    files = []
    for here, dirs, names in os.walk(root):
        rel_dir = os.path.relpath(here, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirs[:] = [d for d in dirs if not excluded(rel_dir + d)]
        files += [rel_dir + n for n in names if not excluded(rel_dir + n)]
    return sorted(files)


def test_the_image_context_holds_the_project_and_nothing_else() -> None:
    files = set(build_context(ROOT))
    for needed in ["cli.py", "pyproject.toml", "requirements.txt", "deploy/requirements-cluster.txt",
                   "bubbles/__init__.py", "study/server.py", "search_spaces/convlstm.yaml"]:
        assert needed in files, needed
    for rel in files:
        top = rel.split("/")[0]
        assert top not in {".venv", ".git", "runs", "data", "mlruns", "exports", "reports"}, rel
        assert "__pycache__" not in rel and not rel.endswith((".pyc", ".db")), rel
        assert ".zarr/" not in rel, rel
    steps = instructions(DOCKERFILE.read_text())
    for word, args in steps:  # every COPY source is in the context
        if word == "COPY":
            for src in shlex.split(args)[:-1]:
                assert src == "." or src in files, src


def test_the_rayjob_runs_the_image_this_file_builds() -> None:
    text = DOCKERFILE.read_text()
    tag = re.search(r"docker build -t (\S+) \.", text)
    assert tag, "the build command with its tag"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert tag.group(1).endswith(f":{version}")
    job = yaml.safe_load((ROOT / "deploy" / "rayjob.yaml").read_text())
    cluster = job["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    assert {c["image"] for g in pods for c in g["template"]["spec"]["containers"]} == {tag.group(1)}
    steps = instructions(text)
    assert steps[0][0] == "FROM" and steps[0][1].startswith("python:3.11")  # pyproject: requires-python >= 3.11
    workdir = [a for w, a in steps if w == "WORKDIR"][-1]
    assert all(c.get("workingDir") == workdir for g in pods for c in g["template"]["spec"]["containers"])
    # KubeRay's probes run wget in the Ray container (KubeRay v1.7.0, utils.BaseWgetHealthCommand).
    assert any(w == "RUN" and "apt-get install" in a and " wget" in a for w, a in steps)
    ray_pin = next(x for x in (ROOT / "requirements.txt").read_text().splitlines() if x.startswith("ray["))
    assert f"ray[default]=={ray_pin.split('==')[1]}" in (ROOT / "deploy" / "requirements-cluster.txt").read_text()


@pytest.mark.slow
def test_the_dockerfile_steps_install_the_project_in_a_fresh_venv(tmp_path: Path) -> None:
    """Each step in order: FROM/ENV/WORKDIR/COPY emulated under tmp_path (/opt/venv and /app mapped there), RUN run
    with bash; the apt-get step is the base image's package manager and is not run here."""
    venv, app = tmp_path / "opt" / "venv", tmp_path / "app"
    context = build_context(ROOT)
    base_bin = tmp_path / "base-bin"  # the image's `python` before the venv exists: this interpreter's base Python
    base_bin.mkdir()
    (base_bin / "python").symlink_to(Path(getattr(sys, "_base_executable", sys.executable)))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{base_bin}:{env.get('PATH', '/usr/bin:/bin')}"
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]  # the pinned stack already here (module docstring)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def mapped(text: str) -> str:
        return text.replace("/opt/venv", str(venv))

    cwd = tmp_path
    ran = []
    for word, args in instructions(DOCKERFILE.read_text()):
        if word == "WORKDIR":
            cwd = app if args == "/app" else tmp_path / args.lstrip("/")
            cwd.mkdir(parents=True, exist_ok=True)
        elif word == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), mapped(value))
        elif word == "COPY":
            *sources, dest = shlex.split(args)
            target = cwd / dest
            for src in sources:
                chosen = context if src == "." else [src]
                for rel in chosen:
                    out = target / rel if src == "." else (target / Path(rel).name if dest.endswith("/") else target)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(ROOT / rel, out)
        elif word == "RUN":
            if args.startswith("apt-get"):
                continue
            done = subprocess.run(["bash", "-c", mapped(args)], cwd=cwd, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"RUN {args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            ran.append(args)
        else:
            assert word == "FROM", word
    assert len(ran) == 2 and (venv / "bin" / "bubbles-study").is_file()
    # The installed project, not this checkout: imported from the venv, from outside /app.
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import cli, study.server; print(study.server.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where
    # KubeRay's submitter calls the head's dashboard (`ray job submit` to :8265), which Ray starts only when its
    # packages are there (ray[default]); Ray's own check says whether they are.
    check = "from ray._private.utils import get_dashboard_dependency_error as e; print(e())"
    missing = subprocess.run([str(venv / "bin" / "python"), "-c", check], cwd=tmp_path, env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
    assert missing == "None", missing
