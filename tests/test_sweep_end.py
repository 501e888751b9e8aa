"""The end of a sweep is decided without MLflow (study.sweep_end over study.records): an early-stopped trial is
ranked by the driver's full-protocol score of its best.pt with the tracking server down, and a server that dies
during the test-split pass leaves the leaderboard and the test scores (real `mlflow server`, killed with SIGKILL)."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from study.space import load_space
from study.sweep import run_sweep
from tests import mlflow_server
from tests.test_sweep import write_space

SPACE = """
data: {{store: {store}, split: condition, val_fraction: 0.34, test_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 8, stride: 2, max_train_windows: 16, max_val_windows: 4, layers: 1, hidden: 4,
         image_size: 16, window: "4->1", epochs: 2}}
search:
  lr: {{type: categorical, choices: [1.0e-2, 1.0e-5, 2.0e-5]}}
seed_points: [{{lr: 1.0e-2}}, {{lr: 1.0e-5}}, {{lr: 2.0e-5}}]
tune: {{objective: yardstick_ssim, num_samples: {samples}, max_concurrent: 1, max_failures: 0,
        asha: {{grace_period: 1, reduction_factor: 2}}, sampler: random}}
evaluate: {{leads: 2, windows: 8, epoch_windows: 4, test_top_k: 2}}
tracking: {{experiment: sweep-test}}
"""


@pytest.fixture(scope="module", autouse=True)
def _one_ray() -> Iterator[None]:
    """One local Ray for both sweeps of this module (run_sweep uses a Ray already running in the process). A refused
    connection fails at once instead of after MLflow's retries (1 s + 2 s per call): the server is dead on purpose;
    set before ray.init so that the trials' workers inherit it."""
    import ray

    before = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = before


def _sweep_with_outage(tiny_store: Path, tmp_path: Path, kill_on: str,
                       port: int = 0) -> tuple[list[str], list[dict[str, str]], Path]:
    """A 3-trial sweep against a real server (backed by tmp_path/server, on `port` or a free one) that is killed
    when the sweep prints a line starting with `kill_on`."""
    port = port or mlflow_server.free_port()
    (tmp_path / "server").mkdir()
    proc = mlflow_server.start(tmp_path / "server", port)
    space = load_space(write_space(tmp_path, tiny_store, samples=3, text=SPACE))
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith(kill_on) and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)

    try:
        outcome = run_sweep(space, "end", tmp_path / "sweeps", f"http://127.0.0.1:{port}", echo=echo)
        assert proc.poll() is not None, "the server was never taken down"
    finally:
        mlflow_server.stop(proc)
    with open(outcome.directory / "leaderboard.csv") as f:
        return lines, list(csv.DictReader(f)), outcome.directory


def _number(row: dict[str, str], key: str) -> float:
    return float(row[key]) if row.get(key) not in (None, "") else math.nan


@pytest.mark.slow
def test_an_early_stopped_trial_is_ranked_on_the_full_protocol_with_the_server_down(tiny_store: Path, tmp_path: Path) -> None:
    lines, rows, _ = _sweep_with_outage(tiny_store, tmp_path, "starting sweep")
    text = "\n".join(lines)
    assert "did not take every write" in text, text
    stopped = [r for r in rows if r["status"] == "stopped_early"]
    assert stopped, [r["status"] for r in rows]  # ASHA stopped the low learning rates after epoch 1
    for row in rows:
        if row["status"] in ("completed", "stopped_early"):
            # Every trial's objective is best.pt on every protocol window (yardstick_ssim), not its per-epoch
            # subset score: the stopped ones were scored by the driver from their checkpoints.
            assert math.isfinite(_number(row, "yardstick_ssim")), row
            assert _number(row, "objective") == pytest.approx(_number(row, "yardstick_ssim")), row


@pytest.mark.slow
def test_an_outage_during_the_test_pass_leaves_the_leaderboard_and_the_test_scores(tiny_store: Path, tmp_path: Path) -> None:
    port = mlflow_server.free_port()
    lines, rows, sweep_dir = _sweep_with_outage(tiny_store, tmp_path, "test split:", port)
    text = "\n".join(lines)
    tested = [r for r in rows if math.isfinite(_number(r, "test_ssim"))]
    assert len(tested) == 2, rows  # test_top_k
    assert set(json.loads((sweep_dir / "yardstick" / "test_scores.json").read_text())) == {r["trial"] for r in tested}
    assert "did not take every write" in text and "the leaderboard above is complete" in text, text
    # What MLflow did not get waits for the next driver: the runs to settle, the test scores in the spool.
    assert (sweep_dir / "mlflow_unsettled.json").exists()
    spooled = "".join(p.read_text() for p in (sweep_dir / "mlflow_spool").glob("*.jsonl"))
    assert spooled.count("test_scored") == 2
    # Every write of the sweep's end went through the spool (none raised, none was lost): each trial's end (tag and
    # status, decided when applied) and the parent's leaderboard, best trial and end.
    parent = json.loads((sweep_dir / "mlflow_parent.json").read_text())["run_id"]
    records = {p.stem: [json.loads(line) for line in p.read_text().splitlines()] for p in (sweep_dir / "mlflow_spool").glob("*.jsonl")}
    ended = {run for run, recs in records.items() if any(r["op"] == "end_if_open" for r in recs)}
    assert ended == {r["mlflow_run"] for r in rows}, (ended, rows)
    assert [r["op"] for r in records[parent]][-1] == "set_terminated", records[parent]
    assert any(r["op"] == "log_artifact" and r["local"].endswith("leaderboard.csv") for r in records[parent])
    # The server comes back (same database): the next driver's replay (what --resume runs first at the end) logs it
    # all, and MLflow then holds what the leaderboard says.
    proc = mlflow_server.start(tmp_path / "server", port)
    try:
        uri = f"http://127.0.0.1:{port}"
        import mlflow

        from study.tracking import configure, replay_spool

        configure(uri)
        errors: list[str] = []
        assert replay_spool(sweep_dir / "mlflow_spool", errors) == [], errors
        client = mlflow.MlflowClient(uri)
        run = client.get_run(parent)
        assert run.info.status == "FINISHED"
        assert run.data.tags["best_trial_id"] == rows[0]["trial"] and run.data.metrics["trials"] == 3
        assert run.data.metrics["best_objective"] == pytest.approx(float(rows[0]["objective"]))
        assert {a.path for a in client.list_artifacts(parent)} >= {"leaderboard.csv", "leaderboard.md"}
        for row in rows:
            trial = client.get_run(row["mlflow_run"])
            assert trial.data.tags["trial_status"] == row["status"], row
            assert trial.info.status != "RUNNING", row
            if row in tested:
                assert trial.data.tags.get("test_scored") == "true"
                assert trial.data.metrics["test_ssim"] == pytest.approx(float(row["test_ssim"]), abs=1e-4)
    finally:
        mlflow_server.stop(proc)
