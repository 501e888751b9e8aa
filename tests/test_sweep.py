"""The sweep end to end with a real Ray and a real MLflow (sqlite): trials, ASHA, PRUNED in Optuna, leaderboard,
faults that fail alone, and one-line schema errors."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import mlflow
import optuna
import pytest
import ray.cloudpickle
from click.testing import CliRunner

from cli import main
from study.space import load_space
from study.sweep import OPTUNA_DB, run_sweep
from study.trainable import run_trial
from study.yardstick import NO_TEST

SPACE = """
data: {{store: {store}, split: condition, val_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 8, stride: 2, max_train_windows: 48, max_val_windows: 8}}
search:
  layers: {{type: int, low: 1, high: 2}}
  hidden: {{type: categorical, choices: [4, 8]}}
  image_size: {{type: categorical, choices: [16, 32]}}
  window: {{type: categorical, choices: ["4->1", "4->2"]}}
  lr: {{type: log, low: 1.0e-3, high: 1.0e-2}}
  epochs: {{type: int, low: 2, high: 3}}
  teacher_forcing: {{type: float, low: 0.0, high: 0.5, when: {{window: ["4->2"]}}}}
seed_points:
  - {{layers: 1, hidden: 8, image_size: 32, window: "4->1", lr: 5.0e-3, epochs: 3}}
tune:
  objective: val_ssim
  num_samples: {samples}
  max_concurrent: 2
  max_failures: 0
  seed: 1
  asha: {{grace_period: 1, reduction_factor: 3}}
tracking: {{experiment: sweep-test}}
"""


def write_space(tmp: Path, store: Path, samples: int = 6, name: str = "space.yaml", text: str = SPACE) -> Path:
    path = tmp / name
    path.write_text(text.format(store=store, samples=samples))
    return path


def children(uri: str, parent_id: str) -> list[mlflow.entities.Run]:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("sweep-test")
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


@pytest.mark.slow
def test_smoke_sweep_end_to_end(tiny_store: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = load_space(write_space(tmp_path, tiny_store))
    outcome = run_sweep(space, "e2e", tmp_path / "sweeps", uri)
    rows = outcome.rows
    assert len(rows) == 6 and not outcome.interrupted
    statuses = [r["status"] for r in rows]
    assert statuses.count("stopped_early") >= 1, statuses
    assert statuses.count("completed") >= 1, statuses
    # The seed point was evaluated first, as given.
    assert any(r["layers"] == 1 and r["hidden"] == 8 and r["image_size"] == 32 and r["lr"] == 5e-3 for r in rows)
    # MLflow: one parent, one child per trial, with curves and artifacts.
    client = mlflow.MlflowClient(uri)
    parent = client.get_run(outcome.parent_run_id)
    assert parent.info.run_name == "e2e" and parent.info.status == "FINISHED"
    assert parent.data.tags["best_trial_id"] == rows[0]["trial"]
    assert {"leaderboard.csv", "leaderboard.md", "space.yaml", "resolved_space.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    kids = children(uri, outcome.parent_run_id)
    assert len(kids) == 6 and len({k.data.tags["tune_trial_id"] for k in kids}) == 6
    assert len({k.info.run_name for k in kids}) == 6  # unique names, even for equal parameters
    assert client.get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    by_trial = {k.data.tags["tune_trial_id"]: k for k in kids}
    for r in rows:
        run = by_trial[r["trial"]]
        assert run.info.status != "RUNNING"
        assert run.data.tags["trial_status"] == r["status"]
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "epoch/val_ssim")]
        assert steps == list(range(1, r["epochs_trained"] + 1))
        if r["status"] in ("completed", "stopped_early"):  # stopped trials are evaluated too (issue 11)
            assert {"strips", "evaluation.json", "lead_table.md"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
            lead = client.get_metric_history(run.info.run_id, "lead/ssim")
            assert len(lead) == int(str(r["window"]).split("->")[1])
            assert all(math.isfinite(v) for v in run.data.metrics.values())
        if r["status"] == "stopped_early":  # ends when its last epoch was logged, not when the sweep closed it
            last = max(m.timestamp for m in client.get_metric_history(run.info.run_id, "epoch/val_mse"))
            assert run.info.end_time is not None and run.info.end_time <= last + 1
    # Optuna: ASHA-stopped trials are PRUNED, with their intermediate values; the study lives in sqlite.
    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{outcome.directory / OPTUNA_DB}")
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == statuses.count("stopped_early") + statuses.count("collapsed")
    assert states.count(optuna.trial.TrialState.COMPLETE) == statuses.count("completed")
    for t in study.trials:
        if t.state == optuna.trial.TrialState.PRUNED:
            assert t.intermediate_values
    with (outcome.directory / "leaderboard.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 6
    # Run again: it says the sweep is complete and how to start another, and runs nothing.
    again: list[str] = []
    rerun = run_sweep(space, "e2e", tmp_path / "sweeps", uri, echo=again.append)
    said = "\n".join(again)
    assert "sweep 'e2e' is complete (6 of 6 trials)" in said and "--name e2e-2" in said, said
    assert " started: " not in said and len(rerun.rows) == 6
    # No test split: one line says so where the test score would stand; validation is there for every trial.
    assert NO_TEST in (outcome.directory / "leaderboard.md").read_text()
    assert all(math.isnan(r["test_ssim"]) for r in rows)
    assert all(math.isfinite(r["yardstick_ssim"]) for r in rows if r["status"] in ("completed", "stopped_early"))


def flaky(config: dict, **kwargs: object) -> None:
    """A trainable that raises for one learning rate and diverges to NaN for another (injected faults; undone
    afterwards, since Ray may reuse this worker for the next trial)."""
    import bubbles.training.train as train_module

    real_epoch, real_loss = train_module.train_one_epoch, train_module.loss_fn
    if config["lr"] == 2e-3:

        def broken(*args: object, **kw: object) -> None:
            raise RuntimeError("injected failure")

        train_module.train_one_epoch = broken  # type: ignore[assignment]
    if config["lr"] == 3e-3:
        train_module.loss_fn = lambda *a: real_loss(*a) * float("nan")
    try:
        run_trial(config, **kwargs)  # type: ignore[arg-type]
    finally:
        train_module.train_one_epoch, train_module.loss_fn = real_epoch, real_loss


ray.cloudpickle.register_pickle_by_value(__import__(__name__))

FAULTS = """
data: {{store: {store}, split: condition, val_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 8, stride: 2, max_train_windows: 16, max_val_windows: 4, layers: 1, hidden: 4,
         image_size: 16, window: "4->1", epochs: 2}}
search:
  lr: {{type: categorical, choices: [1.0e-3, 2.0e-3, 3.0e-3]}}
seed_points: [{{lr: 1.0e-3}}, {{lr: 2.0e-3}}, {{lr: 3.0e-3}}]
tune: {{objective: val_ssim, num_samples: {samples}, max_concurrent: 2, max_failures: 0, asha: false, sampler: random}}
tracking: {{experiment: sweep-test}}
"""


@pytest.mark.slow
def test_a_trial_that_raises_or_nans_fails_alone(tiny_store: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = load_space(write_space(tmp_path, tiny_store, samples=3, text=FAULTS))
    lines: list[str] = []
    outcome = run_sweep(space, "faults", tmp_path / "sweeps", uri, trainable=flaky, echo=lines.append)
    by_lr = {r["lr"]: r["status"] for r in outcome.rows}
    assert by_lr == {1e-3: "completed", 2e-3: "errored", 3e-3: "nan"}
    kids = {k.data.params["lr"]: k for k in children(uri, outcome.parent_run_id)}
    assert kids["0.001"].info.status == "FINISHED"
    assert kids["0.002"].info.status == "FAILED" and kids["0.003"].info.status == "FAILED"
    assert kids["0.003"].data.tags["trial_status"] == "nan"
    study = optuna.load_study(study_name="faults", storage=f"sqlite:///{outcome.directory / OPTUNA_DB}")
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL", "FAIL"]
    # The console: one line per trial event, no Ray table, a short leaderboard.
    text = "\n".join(lines)
    assert text.count(" started: convlstm-L1-h4-16px-4to1-") == 3
    objective = space.tune.objective
    assert text.count(" finished after 2 epochs: ") == 1 and text.count(" stopped: NaN at epoch 1") == 1
    assert text.count(" failed; the error is in ") == 1 and "== Status ==" not in text and "+---" not in text
    board = text.split(f"top 3 by {objective} ({space.tune.mode})")[1].splitlines()[1:5]
    assert board[0].split()[:4] == ["#", "trial", "model", "status"] and max(len(line) for line in board) <= 120


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t + "extra: 1\n", "extra: unknown section"),
        (lambda t: t.replace("type: int, low: 1, high: 2", "type: int, low: 3, high: 2"), "search.layers: empty range, low 3 > high 2"),
        (lambda t: t.replace("type: log, low: 1.0e-3", "type: log, low: 0"), "search.lr.low: a log range needs low > 0"),
        (lambda t: t.replace("type: categorical, choices: [4, 8]", "type: categorical, choices: []"), "search.hidden.choices: expected a non-empty list"),
        (lambda t: t.replace("type: int, low: 2, high: 3", "type: gaussian"), "search.epochs.type: expected int"),
        (lambda t: t.replace("layers: {type: int", "layerz: {type: int"), "layerz: unknown parameter (did you mean 'layers'?)"),
        (lambda t: t.replace('"4->2"]}', '"40->20"]}'), "window 40->20 needs 60 frames"),
        (lambda t: t.replace("lr: 5.0e-3, epochs: 3}", "lr: 5.0, epochs: 3}"), "seed_points[0].lr: 5.0 is outside the search range"),
        (lambda t: t.replace("num_samples: 6", "num_samples: many"), "tune.num_samples: expected an integer"),
        (lambda t: t.replace("batch_size: 8", "batch_size: eight"), "batch_size: expected an integer"),
        (lambda t: t.replace("store: ", "store: /missing"), "no such frame store"),
        (lambda t: t.replace("seed_points:", "seed_points: ["), "YAML syntax error"),
    ],
)
def test_schema_errors_are_one_line(tiny_store: Path, tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    text = SPACE.format(store=tiny_store, samples=6)
    path = tmp_path / "bad.yaml"
    path.write_text(edit(text))
    result = CliRunner().invoke(main, ["sweep", str(path), "--storage", str(tmp_path / "sweeps")])
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    assert message in result.output and str(path) in result.output
    assert not (tmp_path / "sweeps").exists()  # nothing started, nothing written


def test_unreachable_tracking_server_stops_before_ray(tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    result = CliRunner().invoke(main, ["sweep", str(write_space(tmp_path, tiny_store)), "--storage", str(tmp_path / "sweeps")])
    assert result.exit_code == 1 and "is unreachable" in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "sweeps").exists()


def test_objectives_and_their_direction(tiny_store: Path, tmp_path: Path) -> None:
    from bubbles.training.train import EpochResult
    from study.trainable import epoch_metrics

    result = EpochResult(2, 0.01, 0.002, 0.8, 27.0, 0.79, 0.75, 0.3, 0.9, False, 1.0, 10.0, val_bubble_f1=0.6)
    result = EpochResult(2, 0.01, 0.002, 0.8, 27.0, 0.79, 0.75, 0.3, 0.9, False, 1.0, 10.0, val_bubble_f1=0.6,
                         yardstick_ssim=0.7, yardstick_mse=0.004, yardstick_skill_vs_strongest=0.2)
    cases = (("val_ssim", "max", 0.8), ("val_mse", "min", 0.002), ("val_skill_vs_persistence", "max", 0.3), ("val_bubble_f1", "max", 0.6),
             ("yardstick_ssim", "max", 0.7), ("yardstick_mse", "min", 0.004), ("yardstick_skill_vs_strongest", "max", 0.2))
    for objective, mode, value in cases:
        text = SPACE.replace("objective: val_ssim", f"objective: {objective}")
        space = load_space(write_space(tmp_path, tiny_store, text=text))
        assert space.tune.mode == mode
        assert epoch_metrics(result, 4, objective, "running")["objective"] == value
    nan = EpochResult(1, float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), 0.0, True, 1.0, 1.0)
    assert epoch_metrics(nan, 4, "val_mse", "nan")["objective"] == 1e9  # a NaN never reaches TPE
    assert epoch_metrics(nan, 4, "yardstick_mse", "nan")["objective"] == 1e9
