"""Trial configs: flat names, --set overrides, and one-line errors naming file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bubbles.config import trial_config
from cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_seed_trial_dry_run_prints_parameter_count(tmp_path: Path) -> None:
    from bubbles.data.synth import SynthConfig, synth_store

    synth_store(str(tmp_path / "s.zarr"), SynthConfig(sequences=4, frames=24, size=128, seed=0), workers=1)
    result = CliRunner().invoke(main, ["train", str(ROOT / "search_spaces" / "trial_seed.yaml"), "--dry-run", "--set", f"store={tmp_path / 's.zarr'}"])
    assert result.exit_code == 0, result.output
    assert "parameters: 10,178,497" in result.output
    assert "input_len: 20" in result.output and "output_len: 1" in result.output and "loss: mse_sum" in result.output


def test_window_shortcut_and_auto_mode() -> None:
    cfg = trial_config({"window": "5->5"})
    assert (cfg.window.input_len, cfg.window.output_len, cfg.model.mode) == (5, 5, "seq2seq")
    assert trial_config({"window": "20->1"}).model.mode == "seq2one"
    assert trial_config(trial_config({"hidden": [8, 16], "layers": 2}).flat()).model.widths() == (8, 16)


@pytest.mark.parametrize(
    "text, sets, message",
    [
        ("lr: 0.01\nepochz: 3\n", [], "epochz: unknown parameter (did you mean 'epochs'?)"),
        ("lr: fast\n", [], "lr: expected a number, got 'fast'"),
        ("window: '20->20'\nmode: seq2one\n", [], "mode: seq2one predicts one frame but output_len is 20"),
        ("kernel: 4\n", [], "kernel: must be odd"),
        ("window: 20-20\n", [], "window: expected 'N->M'"),
        ("hidden: [8, 8]\nlayers: 3\n", [], "hidden: give one width or 3"),
        ("lr: [0.1\n", [], "YAML syntax error"),
        ("- a\n- b\n", [], "expected a mapping"),
        ("lr: 0.01\n", ["batch_size=0"], "batch_size: must be >= 1"),
        ("lr: 0.01\n", ["noequals"], "expected key=value"),
        ("store: /nonexistent/store.zarr\n", [], "no such frame store"),
    ],
)
def test_bad_trial_configs_are_one_line(tmp_path: Path, text: str, sets: list[str], message: str) -> None:
    path = tmp_path / "trial.yaml"
    path.write_text(text)
    args = ["train", str(path), "--dry-run"]
    for s in sets:
        args += ["--set", s]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    assert message in result.output


def test_missing_config_file() -> None:
    result = CliRunner().invoke(main, ["train", "/no/such/trial.yaml"])
    assert result.exit_code == 1 and "no such config file" in result.output
