"""The command line: one-line errors for bad input, and the data commands end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_synth_ingest_inspect(tmp_path: Path) -> None:
    code, out = _run("synth", str(tmp_path / "s.zarr"), "--sequences", "2", "--frames", "10", "--size", "32", "--workers", "1")
    assert code == 0, out
    np.save(tmp_path / "rec.npy", np.zeros((5, 32, 32), np.uint8))
    code, out = _run("ingest", str(tmp_path / "rec.npy"), str(tmp_path / "s.zarr"), "--condition", "gas_flow=0.5", "--condition", "regime=lab")
    assert code == 0, out
    code, out = _run("inspect", str(tmp_path / "s.zarr"))
    assert code == 0
    assert "seq000" in out and "seq001" in out and "rec" in out and "gas_flow=0.5" in out and "32 16" in out


def _bad_inputs(tmp: Path) -> list[list[str]]:
    (tmp / "notes.txt").write_text("x")
    (tmp / "plain").mkdir()
    (tmp / "plain" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    np.save(tmp / "tiny.npy", np.zeros((4, 8, 8), np.uint8))
    np.save(tmp / "ok.npy", np.zeros((4, 32, 32), np.uint8))
    return [
        ["inspect", str(tmp / "missing.zarr")],
        ["inspect", str(tmp / "plain")],
        ["inspect", str(tmp / "notes.txt")],
        ["ingest", str(tmp / "missing.npy"), str(tmp / "s.zarr")],
        ["ingest", str(tmp / "notes.txt"), str(tmp / "s.zarr")],
        ["ingest", str(tmp / "tiny.npy"), str(tmp / "s.zarr")],
        ["ingest", str(tmp / "ok.npy"), str(tmp / "s.zarr"), "--condition", "novalue"],
        ["ingest", str(tmp / "ok.npy"), str(tmp / "s.zarr"), "--sequence", ".hidden"],
        ["synth", str(tmp / "x.zarr"), "--size", "8"],
        ["synth", str(tmp / "x.zarr"), "--sequences", "2", "--conditions", "5"],
    ]


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    cases = _bad_inputs(tmp_path)
    assert len(cases) >= 8
    for args in cases:
        code, out = _run(*args)
        lines = [line for line in out.splitlines() if line.strip()]
        assert code != 0, args
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, out)
        assert "Traceback" not in out
    assert not (tmp_path / "s.zarr").exists() and not (tmp_path / "x.zarr").exists()


def test_real_process_has_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "cli.py"), "inspect", str(tmp_path / "nope.zarr")], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: {tmp_path / 'nope.zarr'}: no such frame store"
    assert proc.stdout == ""


@pytest.mark.parametrize("command", ["synth", "ingest", "inspect", "train", "sweep", "export", "predict", "report"])
def test_help_has_examples(command: str) -> None:
    code, out = _run(command, "--help")
    assert code == 0 and "Example" in out
