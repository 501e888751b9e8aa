"""The README is a tested path: its runnable blocks, in order, on a scratch copy of the repository, tiny settings."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("readme_walk", ROOT / "bench" / "readme.py")
walker = importlib.util.module_from_spec(_spec)
sys.modules["readme_walk"] = walker  # dataclasses look their module up there
_spec.loader.exec_module(walker)  # type: ignore[union-attr]


def test_marked_blocks_are_found_in_order() -> None:
    text = "intro\n<!-- run -->\n```bash\necho one\n```\n```bash\necho not marked\n```\n<!-- run -->\n```bash\necho two\n```\n"
    found = walker.blocks(text)
    assert [b.code for b in found] == ["echo one", "echo two"]
    assert [b.line for b in found] == [3, 10]  # the fence lines
    with pytest.raises(ValueError, match="must be followed"):
        walker.blocks("<!-- run -->\ntext\n")


def test_readme_marks_the_path() -> None:
    """The path a newcomer walks is marked to run: quickstart, data, train, sweep, export, predict, report."""
    commands = [b.first_command.split("#")[0].strip() for b in walker.blocks((ROOT / "README.md").read_text())]
    assert commands[0].startswith("make run")
    for step in ("bubbles-study synth", "bubbles-study train", "bubbles-study export", "bubbles-study predict",
                 "bubbles-study report"):
        assert any(c.startswith(step) for c in commands), step
    assert any("bubbles-study sweep" in b.code for b in walker.blocks((ROOT / "README.md").read_text()))


@pytest.mark.slow
def test_readme_blocks_run_in_order(tmp_path: Path) -> None:
    """Every marked block runs as written after the quickstart (venv activated by the README's own line), in one
    shell, on a copy of the repository; a block that stops working names itself and shows its output."""
    if sys.prefix == sys.base_prefix:
        pytest.fail("run the tests in the project's virtual environment (make test): the walk links it as .venv")
    dest = tmp_path / "clone"
    dest.mkdir()
    walker.copy_repo(ROOT, dest)
    walker.link_venv(dest, Path(sys.prefix))
    walker.shrink(dest)
    subprocess.run(["git", "init", "-q", str(dest)], check=True)
    (dest / ".git" / "info" / "exclude").write_text(walker.LOG_DIR + "/\n")
    subprocess.run(["git", "-C", str(dest), "add", "-A"], check=True)
    found = walker.blocks((ROOT / "README.md").read_text())
    # A guard against a hung block, not a speed bound: the walk takes ~2.5 min on an idle 2-core machine but 13 min
    # at a load average of ~18 (bench/readme.py --tiny: 778 s) and passed 15 min at ~20 (speed: bench/readme.py).
    records, failed = walker.walk(dest, found, timeout_s=2400)
    if failed is not None:
        out = (dest / walker.LOG_DIR / f"out-{failed}.txt").read_text()
        pytest.fail(f"README block {failed} (line {found[failed].line}) failed:\n{found[failed].code}\n--- output ---\n{out[-4000:]}")
    assert len(records) == len(found)
    # What the path promises: a sweep in MLflow, an export, predictions, a report; git ignores every output.
    assert (dest / "runs" / "sweeps" / "mine" / "leaderboard.csv").is_file()
    assert (dest / "exports" / "mine-best" / "model.onnx").is_file()
    assert (dest / "pred" / "mine" / "strip.png").is_file()
    assert (dest / "reports" / "mine" / "index.html").is_file()
    sweep_out = (dest / walker.LOG_DIR / f"out-{next(b.index for b in found if 'bubbles-study sweep' in b.code)}.txt").read_text()
    assert "started:" in sweep_out and "== Status ==" not in sweep_out and "+---" not in sweep_out  # events, not Ray's tables
    status = subprocess.run(["git", "-C", str(dest), "status", "--porcelain", "--untracked-files=all"],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    assert [line for line in status if not line.startswith("A ")] == ["?? mine.yaml"]  # the user's own space file
    print(json.dumps(records))
