"""Walk the README's runnable blocks in order on a scratch copy of the repository and time each one.

The README marks the shell blocks a newcomer runs with a `<!-- run -->` line right above the fence. This script
copies the repository (tracked and untracked, not ignored files) to a scratch directory, gives the copy a `.venv`
that links to the virtual environment running this script (nothing is installed), and runs every marked block in
one bash session in order — as a user types them after the quickstart, `source .venv/bin/activate` included — with
`set -e`, so the first failing command stops the walk and names its block.

    python bench/readme.py                 # the README's own settings: the times and outputs the README quotes
    python bench/readme.py --tiny          # tiny settings (what tests/test_readme.py runs)
    python bench/readme.py --keep DIR      # walk in DIR and keep it (outputs per block in DIR/.readme-walk/)

Prints one line per block (wall seconds, output lines, its first command) and a JSON record last.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

MARKER = "<!-- run -->"
REPO = Path(__file__).resolve().parent.parent
LOG_DIR = ".readme-walk"


@dataclass(frozen=True)
class Block:
    """One runnable shell block: its position among the runnable blocks, its line in the README and its code."""

    index: int
    line: int
    code: str

    @property
    def first_command(self) -> str:
        return next((c for c in self.code.splitlines() if c.strip() and not c.lstrip().startswith("#")), "")


def blocks(text: str) -> list[Block]:
    """The ```bash blocks that directly follow a MARKER line, in order."""
    lines = text.splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARKER:
            if i + 1 >= len(lines) or not lines[i + 1].startswith("```bash"):
                raise ValueError(f"README line {i + 1}: {MARKER} must be followed by a ```bash fence")
            end = next((j for j in range(i + 2, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                raise ValueError(f"README line {i + 2}: unclosed ```bash fence")
            found.append(Block(len(found), i + 2, "\n".join(lines[i + 2:end])))
            i = end
        i += 1
    return found


def copy_repo(repo: Path, dest: Path) -> None:
    """The files a fresh clone would have (tracked + untracked that git does not ignore), mtimes kept."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "-co", "--exclude-standard"],
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = repo / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def link_venv(dest: Path, prefix: Path) -> None:
    """dest/.venv as `make setup` leaves it, made of links to an installed virtual environment: make sees the set-up
    done (.installed is newer than the copied requirements) and nothing can write into the real environment."""
    venv = dest / ".venv"
    venv.mkdir()
    for entry in prefix.iterdir():
        if entry.name != ".installed":
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()


def shrink(dest: Path) -> None:
    """Tiny settings: the smoke space at 2 trials (its first two seed points) of 1 epoch and the quick trial at 1 epoch,
    on a few windows: a CI-sized walk in which every command of the path still runs on a real sweep."""
    smoke = dest / "search_spaces" / "smoke.yaml"
    space = yaml.safe_load(smoke.read_text())
    space["tune"]["num_samples"] = 2
    space["tune"]["asha"] = {"grace_period": 1, "reduction_factor": 3}
    space["fixed"].update(max_train_windows=32, max_val_windows=8)
    space["search"]["epochs"] = {"type": "int", "low": 1, "high": 1}
    for point in space.get("seed_points", []):
        point["epochs"] = 1
    if "evaluate" in space:  # the yardstick's windows
        space["evaluate"].update(windows=8, epoch_windows=4, test_top_k=1)
    smoke.write_text(yaml.safe_dump(space, sort_keys=False))
    quick = dest / "search_spaces" / "trial_quick.yaml"
    trial = yaml.safe_load(quick.read_text())
    trial.update(epochs=1, max_train_windows=32, max_val_windows=8)
    quick.write_text(yaml.safe_dump(trial, sort_keys=False))


def walk_env(dest: Path) -> dict[str, str]:
    """A user's shell: no virtual environment active, no tracking URI or Ray settings; the copy's code imported
    (PYTHONPATH) even by the console script, whichever checkout the environment's editable install points at."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "MLFLOW_TRACKING_URI", "RAY_AUTH_MODE", "PYTHONPATH") and not k.startswith("PYTEST")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["PYTHONPATH"] = str(dest)
    env["RAY_ADDRESS"] = "local"  # a fresh local Ray even if this host runs a cluster
    return env


def walk(dest: Path, found: list[Block], timeout_s: float) -> tuple[list[dict], int | None]:
    """Run the blocks in one bash session; returns per-block records and the index of the failing block (or None)."""
    logs = dest / LOG_DIR
    logs.mkdir()
    script = ["set -eo pipefail", f"cd {json.dumps(str(dest))}"]
    for b in found:
        script += [f"echo {b.index} > {LOG_DIR}/current", f"date +%s.%N > {LOG_DIR}/start-{b.index}",
                   f"cat /proc/loadavg > {LOG_DIR}/load-{b.index}",
                   "{", b.code, f"}} > {LOG_DIR}/out-{b.index}.txt 2>&1", f"date +%s.%N > {LOG_DIR}/end-{b.index}",
                   f"cat /proc/loadavg >> {LOG_DIR}/load-{b.index}", f"times > {LOG_DIR}/times-{b.index}"]
    (logs / "walk.sh").write_text("\n".join(script) + "\n")
    proc = subprocess.run(["bash", str(logs / "walk.sh")], env=walk_env(dest), timeout=timeout_s,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True)
    records = []
    for b in found:
        out = logs / f"out-{b.index}.txt"
        start, end = logs / f"start-{b.index}", logs / f"end-{b.index}"
        if not start.exists():
            break
        text = out.read_text() if out.exists() else ""
        seconds = float(end.read_text()) - float(start.read_text()) if end.exists() else None
        load = logs / f"load-{b.index}"
        # The machine's 1-minute load average at the block's start and end: a shared machine's times say little
        # without it (2 cores: a load of 2 is a full machine).
        loads = [float(line.split()[0]) for line in load.read_text().splitlines()] if load.exists() else []
        records.append({"block": b.index, "line": b.line, "command": b.first_command, "seconds": seconds,
                        "load": loads, "cpu_s": _children_cpu(logs, b.index),
                        "output_lines": len(text.splitlines()),
                        "longest_line": max((len(x) for x in text.splitlines()), default=0)})
    failed = None if proc.returncode == 0 else int((logs / "current").read_text())
    return records, failed


def _children_cpu(logs: Path, index: int) -> float | None:
    """CPU seconds (user + system) of the processes the block's commands waited for: bash's `times` after it, minus
    after the one before. Ray's worker processes are not among them: for a sweep this is the driver's share only."""
    def total(i: int) -> float | None:
        path = logs / f"times-{i}"
        if not path.exists():
            return None if i >= 0 else 0.0
        children = path.read_text().splitlines()[-1].split()  # "1m2.5s 0m0.3s": user and system of the children
        return sum(int(t.split("m")[0]) * 60 + float(t.split("m")[1].rstrip("s")) for t in children)

    now, before = total(index), total(index - 1)
    return None if now is None or before is None else round(now - before, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="Tiny settings (what the test runs).")
    parser.add_argument("--keep", type=Path, help="Walk in this new directory and keep it.")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    found = blocks((REPO / "README.md").read_text())
    dest = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="readme-walk-"))
    dest.mkdir(parents=True, exist_ok=True)
    copy_repo(REPO, dest)
    link_venv(dest, Path(sys.prefix))
    if args.tiny:
        shrink(dest)
    began = time.perf_counter()
    records, failed = walk(dest, found, args.timeout)
    for r in records:
        secs = "failed" if r["seconds"] is None else f"{r['seconds']:7.1f} s"
        cpu = "" if r["cpu_s"] is None else f"  cpu {r['cpu_s']:.0f} s"
        load = "" if not r["load"] else f"  load {'->'.join(f'{x:.1f}' for x in r['load'])}"
        print(f"block {r['block']} (README line {r['line']}): {secs}{cpu}{load}  {r['output_lines']:4d} lines  {r['command']}")
    if failed is not None:
        print(f"block {failed} failed; its output: {dest / LOG_DIR / f'out-{failed}.txt'}")
    print(json.dumps({"tiny": args.tiny, "total_s": round(time.perf_counter() - began, 1), "failed_block": failed,
                      "blocks": records, "dir": str(dest) if args.keep else None}))
    if not args.keep:
        shutil.rmtree(dest, ignore_errors=True)
    sys.exit(1 if failed is not None else 0)


if __name__ == "__main__":
    main()
