"""`cli.py train` logs one MLflow run: sqlite by default, a real `mlflow server` over HTTP, and a clear error when
the server is unreachable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from click.testing import CliRunner

from cli import main
from tests.mlflow_server import free_port, start, stop

ROOT = Path(__file__).resolve().parents[1]
TRIAL = ROOT / "search_spaces" / "trial_seed.yaml"


def _train_args(store: Path, out: Path) -> list[str]:
    sets = {"store": store, "image_size": 32, "window": "4->3", "mode": "seq2seq", "hidden": 8, "layers": 1,
            "epochs": 2, "max_train_windows": 16, "max_val_windows": 8}
    args = ["train", str(TRIAL), "--out", str(out), "--experiment", "test-exp"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return args


def _check_run(uri: str) -> None:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("test-exp")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["image_size"] == "32" and run.data.params["hidden"] == "8"
    assert run.info.run_name == "convlstm-L1-h8-32px-4to3-lr1e-03"
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "epoch/val_mse")] == [1, 2]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "lead/ssim")] == [1, 2, 3]
    assert len(client.get_metric_history(run.info.run_id, "lead/persistence_ssim")) == 3
    vmaf = client.get_metric_history(run.info.run_id, "lead/vmaf")  # libvmaf from the imageio-ffmpeg wheel
    assert [m.step for m in vmaf] == [1, 2, 3] and all(0 <= m.value <= 100 for m in vmaf)
    assert {"final_ssim", "final_psnr", "final_skill_vs_persistence", "final_collapsed"} <= set(run.data.metrics)
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "evaluation.json", "per_condition.csv", "lead_table.md", "lead_curves.png", "strips", "checkpoints"} <= top
    assert [a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")] == ["checkpoints/best.pt"]
    assert len(client.list_artifacts(run.info.run_id, "strips")) >= 2


def test_train_logs_to_sqlite(tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    result = CliRunner().invoke(main, _train_args(tiny_store, tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "| 3 |" in result.output  # the per-lead table is printed
    _check_run(uri)


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with a sqlite backend."""
    port = free_port()
    proc = start(tmp_path, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.mark.slow
def test_train_logs_to_http_server(tiny_store: Path, tmp_path: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    result = CliRunner().invoke(main, _train_args(tiny_store, tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert "View experiment at" not in result.output and "View run" not in result.output  # MLflow's own links
    _check_run(mlflow_server)


def test_unreachable_server_is_one_line(tiny_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    result = CliRunner().invoke(main, _train_args(tiny_store, tmp_path / "out"))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()  # the frame-size lines train prints first, then one error line
    assert lines[-1].startswith("error: MLflow tracking server") and "is unreachable" in lines[-1]
    assert sum(x.startswith("error:") for x in lines) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
