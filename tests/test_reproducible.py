"""tune.reproducible: the same space and seed give the same leaderboard (issue 27: which trial won the smoke sweep
depended on the machine's load, since TPE and ASHA decide on whichever trials report first)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import ray

from bubbles.errors import UserError
from study.space import load_space
from study.sweep import run_sweep

SPACE = """
data: {{store: {store}, split: condition, val_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 8, stride: 2, max_train_windows: 24, max_val_windows: 8, layers: 1, hidden: 4}}
search:
  image_size: {{type: categorical, choices: [16, 32]}}
  lr: {{type: log, low: 1.0e-3, high: 3.0e-2}}
  epochs: {{type: int, low: 1, high: 3}}
  baseline_start: {{type: categorical, choices: [true, false]}}
seed_points:
  - {{image_size: 16, lr: 5.0e-3, epochs: 3, baseline_start: false}}
tune:
  num_samples: 4
  max_concurrent: 2          # reproducible runs them one at a time all the same
  max_failures: 0
  seed: 3
  asha: {{time_attr: epochs, grace_period: 1, reduction_factor: 2}}
  reproducible: true
evaluate: {{leads: 2, windows: 8, epoch_windows: 4, test_top_k: 0}}
tracking: {{experiment: reproducible-test}}
"""
# What a run of the same trial on another day may differ in: ids, names made of ids, times, speeds, places.
VOLATILE = ("trial", "run", "seconds", "time", "per_s", "node", "path", "checkpoint", "started", "ended", "date")


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 12) if isinstance(v, float) and math.isfinite(v) else str(v) if isinstance(v, float) else v)
            for k, v in row.items() if not any(word in k.lower() for word in VOLATILE)}


def test_reproducible_settings_are_checked(tmp_path: Path, tiny_store: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE.format(store=tiny_store))
    assert load_space(path).tune.max_concurrent == 1 and load_space(path).tune.reproducible
    path.write_text(SPACE.format(store=tiny_store).replace("time_attr: epochs", "time_attr: seconds, max_t: 60"))
    with pytest.raises(UserError, match="reproducible: ASHA on training seconds"):
        load_space(path)
    path.write_text(SPACE.format(store=tiny_store).replace("  seed: 3", "  seed: 3\n  time_budget_s: 600"))
    with pytest.raises(UserError, match="reproducible: time_budget_s"):
        load_space(path)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_leaderboard(tmp_path: Path, tiny_store: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE.format(store=tiny_store))
    space = load_space(path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)  # one Ray for both sweeps
    try:
        first = run_sweep(space, "first", tmp_path / "sweeps", uri, echo=lambda line: None).rows
        second = run_sweep(space, "second", tmp_path / "sweeps", uri, echo=lambda line: None).rows
    finally:
        ray.shutdown()
    assert len(first) == 4 and {r["status"] for r in first} & {"completed"}
    # ASHA cut at least one trial: its decisions are part of what must repeat.
    assert len({r["status"] for r in first}) > 1 or len({r["epochs"] for r in first}) > 1
    a, b = [_comparable(r) for r in first], [_comparable(r) for r in second]
    assert a == b, [(k, x.get(k), y.get(k)) for x, y in zip(a, b) for k in x if x.get(k) != y.get(k)][:10]


def test_the_sweep_says_which_trials_cannot_reach_the_baselines(tmp_path: Path, tiny_store: Path) -> None:
    """Issue 27: 16 px trials scored on a 32 px protocol and 4->1 trials with the baseline start scored to lead 4
    cannot start from the strongest baseline at every scored lead; the sweep says so before it starts. The shipped
    smoke space searches neither."""
    from study import yardstick as ys

    path = tmp_path / "space.yaml"
    text = SPACE.format(store=tiny_store).replace("evaluate: {leads: 2,", "evaluate: {leads: 4, size: 32,")
    path.write_text(text.replace("  epochs:", '  window: {type: categorical, choices: ["4->1", "4->4"]}\n  epochs:', 1))
    space = load_space(path)
    store = ys.open_store(space)
    notes = ys.reach_notes(space, store, ys.protocol_of(space, store))
    assert len(notes) == 2 and "trials at 16x16 px are scored at 32x32 px" in notes[0], notes
    assert "predicting 1 frame(s) blend the baselines up to that lead only" in notes[1], notes
    smoke = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml", store=tiny_store)
    assert ys.reach_notes(smoke, store, ys.protocol_of(smoke, store)) == []
