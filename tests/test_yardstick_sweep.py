"""A sweep on the yardstick: the test split is read by nobody during the sweep and once at its end, for the top k;
the leaderboard shows validation (selection) and test (unbiased) side by side."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import mlflow
import pytest
import ray
import ray.cloudpickle

from bubbles.data.store import FrameStore
from bubbles.data.windows import split_segments
from study import yardstick as ys
from study.space import load_space
from study.sweep import run_sweep

SPACE = """
data: {{store: {store}, split: condition, val_fraction: 0.34, test_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 8, stride: 2, max_train_windows: 32, max_val_windows: 8, layers: 1, hidden: 4, epochs: 2}}
search:
  image_size: {{type: categorical, choices: [16, 32]}}
  window: {{type: categorical, choices: ["4->1", "4->2"]}}
  lr: {{type: log, low: 1.0e-3, high: 1.0e-2}}
seed_points:
  - {{image_size: 16, window: "4->1", lr: 5.0e-3}}
  - {{image_size: 32, window: "4->2", lr: 5.0e-3}}
  - {{image_size: 32, window: "4->1", lr: 5.0e-3}}
tune:
  objective: yardstick_ssim
  num_samples: 3
  max_concurrent: 2
  max_failures: 0
  asha: false
evaluate: {{leads: 2, windows: 12, epoch_windows: 3, test_top_k: 2}}
tracking: {{experiment: yardstick-test}}
"""
WATCHING = [True]  # an audit hook cannot be removed: the driver's is switched off after the test
CHUNK = re.compile(r"/(seq\d+)(?:/\d+/c/|\.L\d+\.S)")  # a frame chunk, or a node's decoded-frame file


def _watch(log: str, store: str) -> None:
    """Write every frame file a process opens under `store` (or the frame cache) to `log` (an audit hook)."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)

    def hook(event: str, args: tuple) -> None:
        if WATCHING[0] and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.fsdecode(args[0])
            if CHUNK.search(path):
                os.write(fd, f"{os.getpid()} {path}\n".encode())

    sys.addaudithook(hook)


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _sequences(log: Path) -> set[str]:
    return {m.group(1) for line in log.read_text().splitlines() if (m := CHUNK.search(line))} if log.exists() else set()


@pytest.mark.slow
def test_test_split_is_untouched_during_the_sweep_and_scored_once_at_the_end(
        tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE.format(store=tiny_store))
    space = load_space(path)
    segments = split_segments(FrameStore.open(tiny_store), space.trial_config({"image_size": 16, "window": "4->1", "lr": 5e-3}).data.split)
    test_names = {n for n, _, _ in segments.test}
    assert test_names and not test_names & {n for n, _, _ in segments.val + segments.train}
    # Fresh decoded-frame caches, so that every read goes to the store and is seen.
    monkeypatch.setenv("BUBBLES_FRAME_CACHE", str(tmp_path / "frames"))
    workers, driver = tmp_path / "workers.log", tmp_path / "driver.log"
    phases: list[set[str]] = []
    real_pass = ys.test_pass

    def test_pass(*args, **kwargs):  # type: ignore[no-untyped-def]
        phases.append(_sequences(driver))  # what the driver had read before the test pass
        out = real_pass(*args, **kwargs)
        phases.append(_sequences(driver))
        return out

    monkeypatch.setattr(ys, "test_pass", test_pass)
    _watch(str(driver), str(tiny_store))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={
        "worker_process_setup_hook": lambda: _watch(str(workers), str(tiny_store)),
        "env_vars": {"BUBBLES_FRAME_CACHE": str(tmp_path / "frames")}})
    try:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        outcome = run_sweep(space, "ys", tmp_path / "sweeps", uri)
    finally:
        ray.shutdown()
        WATCHING[0] = False
    # The trials read training and validation frames, never a test sequence; the driver read none before the pass.
    assert _sequences(workers) and not _sequences(workers) & test_names
    assert len(phases) == 2 and not phases[0] & test_names and phases[1] & test_names
    rows = outcome.rows
    assert len(rows) == 3
    # Validation (selection) for every trial, test (unbiased) for the best two by validation, side by side.
    for k, r in enumerate(rows):
        assert math.isfinite(r["yardstick_ssim"]) and math.isfinite(r["yardstick_skill_vs_strongest"])
        assert math.isfinite(r["test_ssim"]) == (k < 2), r
    assert rows[0]["objective"] == rows[0]["yardstick_ssim"]  # ranked by the yardstick on all protocol windows
    record = json.loads((outcome.directory / "yardstick" / "test_scores.json").read_text())
    assert set(record) == {r["trial"] for r in rows[:2]}
    # Every trial (16 and 32 px, 4->1 and 4->2) was scored on the same validation windows at 32 px.
    client = mlflow.MlflowClient(uri)
    windows = []
    for r in rows:
        local = client.download_artifacts(r["mlflow_run"], "yardstick.json", str(tmp_path / r["trial"]))
        scored = json.loads(Path(local).read_text())
        windows.append(scored["windows"])
        assert scored["protocol"]["size"] == [32, 32] and scored["protocol"]["leads"] == [1, 2]
        run = client.get_run(r["mlflow_run"])
        assert ("test_ssim" in run.data.metrics) == (r["trial"] in record)
        assert len(client.get_metric_history(r["mlflow_run"], "yardstick_lead/ssim")) == 2
    assert all(w == windows[0] for w in windows) and len(windows[0]) == 12
    # The report: validation against test for the top two, per-lead curves with the baselines, what won.
    from study.report import write_report

    page = write_report(uri, outcome.directory, tmp_path / "report").read_text()
    assert "test − validation (ssim)" in page and "differs from the validation ssim by" in page
    # Every skill column says what it is measured against, and the report and the leaderboard name that baseline.
    assert "skill_vs_strongest is 1 - MSE / MSE of the strongest baseline at each lead (on validation: " in page
    assert "; on test: " in page
    note = (outcome.directory / "leaderboard.md").read_text()
    assert "skill_vs_strongest: 1 - MSE / MSE of the strongest baseline at each lead" in note and "on test: " in note
    assert "What won, by window, size and family" in page and "<th>window</th>" in page and "<th>image_size</th>" in page
    assert (tmp_path / "report" / "yardstick_leads.png").is_file()
    # A resumed sweep reads the test scores back: the test split is not scored a second time.
    before = (outcome.directory / "yardstick" / "test_scores.json").stat().st_mtime_ns
    scored, new = real_pass(space, ys.Protocol.from_dict(json.loads((outcome.directory / "yardstick" / "protocol.json").read_text())),
                            outcome.directory, rows, {r["trial"]: Path("/nonexistent") for r in rows})
    assert not new and set(scored) == set(record)
    assert (outcome.directory / "yardstick" / "test_scores.json").stat().st_mtime_ns == before
