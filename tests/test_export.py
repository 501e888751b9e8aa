"""Export, predict and report on a real (tiny) sweep: TorchScript without the package, ONNX, the registry alias,
predictions with metrics, and the HTML report."""

from __future__ import annotations

import csv
import hashlib
import html
import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bubbles.bundle import example_input, load_bundle
from cli import main
from study.space import load_space
from study.sweep import run_sweep
from tests.test_sweep import write_space

ROOT = Path(__file__).resolve().parents[1]

SPACE = """
data: {{store: {store}, split: condition, val_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 8, stride: 2, max_train_windows: 32, max_val_windows: 8, layers: 1, image_size: 32,
         epochs: 2}}
search:
  hidden: {{type: categorical, choices: [4, 8]}}
  window: {{type: categorical, choices: ["4->1", "4->3"]}}
  lr: {{type: log, low: 2.0e-3, high: 1.0e-2}}
seed_points: [{{hidden: 8, window: "4->3", lr: 5.0e-3}}]
tune: {{objective: val_ssim, num_samples: {samples}, max_concurrent: 2, max_failures: 0, asha: false, seed: 3}}
tracking: {{experiment: sweep-test}}
"""


@pytest.fixture(scope="module")
def finished_sweep(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A 3-trial sweep, run once for this module: (tracking URI, storage directory)."""
    tmp = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    space = load_space(write_space(tmp, tiny_store, samples=3, text=SPACE))
    run_sweep(space, "exp", tmp / "sweeps", uri)
    return uri, tmp / "sweeps"


@pytest.fixture(scope="module")
def finished_sweep_http(tiny_store: Path, mlflow_http: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """The same sweep, tracked by a real `mlflow server` over HTTP."""
    tmp = tmp_path_factory.mktemp("sweep-http")
    space = load_space(write_space(tmp, tiny_store, samples=3, text=SPACE.replace("sweep-test", "sweep-test-http")))
    run_sweep(space, "exp", tmp / "sweeps", mlflow_http)
    return mlflow_http, tmp / "sweeps"


@pytest.fixture(params=["sqlite", "http"])
def tracked_sweep(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """Each MLflow path of export, the registry and the report, on sqlite and on a real server."""
    return request.getfixturevalue("finished_sweep" if request.param == "sqlite" else "finished_sweep_http")


def _cli(uri: str, *args: str) -> str:
    result = CliRunner(env={"MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}).invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.slow
def test_export_runs_without_the_package_and_matches(finished_sweep: tuple[str, Path], tmp_path: Path) -> None:
    uri, storage = finished_sweep
    out = tmp_path / "best"
    _cli(uri, "export", "--sweep", "exp", "--storage", str(storage), "--out", str(out), "--onnx")
    assert {p.name for p in out.iterdir()} == {"weights.safetensors", "config.json", "model.ts", "model.onnx", "metrics_card.md", "README.md", "climatology.npy", ".bubbles-output.json"}
    card = (out / "metrics_card.md").read_text()
    assert "| lead |" in card and "persist" in card and "fingerprint" in card and "Per held-out condition" in card
    model, cfg, _ = load_bundle(out)
    # The cost the trial measured (MLflow), not one measured again at export: parameters agree with the weights.
    cost = json.loads((out / "config.json").read_text())["cost"]
    assert cost["parameters"] == sum(p.numel() for p in model.parameters()) and cost["gflops_per_window"] > 0
    assert cost["device"] == "cpu" and cost["train_samples_per_s"] > 0 and cost["inference_frames_per_s"] > 0
    assert f"- cost: {cost['parameters']:,} parameters" in card and "frames/s on cpu" in card
    x = example_input(cfg)
    with torch.no_grad():
        expected = model(x, future=cfg.window.output_len).numpy()
    np.save(tmp_path / "x.npy", x.numpy())
    # A fresh interpreter that cannot import this package: only torch and the file.
    script = (
        "import sys\n"
        "sys.modules['bubbles'] = sys.modules['study'] = None  # any import of this package now fails\n"
        "import numpy as np, torch\n"
        f"prog = torch.jit.load({str(out / 'model.ts')!r})\n"
        f"y = prog(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r})))\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, y.detach().numpy())\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)  # TorchScript vs eager, float32
    import onnxruntime

    got = onnxruntime.InferenceSession(str(out / "model.onnx")).run(None, {"frames": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.slow
def test_reexport_is_deterministic(finished_sweep: tuple[str, Path], tmp_path: Path) -> None:
    uri, storage = finished_sweep

    def digest(d: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}

    import os

    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    for name in ("a", "b"):  # two separate runs of the command, as a user would re-export
        cmd = [sys.executable, str(ROOT / "cli.py"), "export", "--sweep", "exp", "--storage", str(storage), "--out", str(tmp_path / name), "--onnx"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert torch.jit.load(str(tmp_path / "a" / "model.ts")) is not None  # still a valid archive after pinning its id


@pytest.mark.slow
def test_registry_champion_moves_only_to_better(tracked_sweep: tuple[str, Path], tmp_path: Path) -> None:
    uri, storage = tracked_sweep
    board = (storage / "exp" / "leaderboard.csv").read_text().splitlines()
    import csv

    rows = [r for r in csv.DictReader(board) if r["status"] == "completed"]
    best, worst = rows[0], rows[-1]
    assert float(best["objective"]) > float(worst["objective"])
    name = f"bubbles-test-{tmp_path.name}"  # one registered model per case: the http server outlives a module
    client = mlflow.MlflowClient(uri)
    runs_before = {r.info.run_id for e in client.search_experiments() for r in client.search_runs([e.experiment_id])}
    _cli(uri, "export", "--run-id", worst["mlflow_run"], "--out", str(tmp_path / "w"), "--register", name)
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
    out = _cli(uri, "export", "--sweep", "exp", "--storage", str(storage), "--out", str(tmp_path / "b"), "--register", name)
    assert "as 'champion'" in out and f"models:/{name}/2" in out
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    _check_link(uri, out.rsplit("see ", 1)[1].strip(), f"#/models/{name}/versions/2")
    out = _cli(uri, "export", "--run-id", worst["mlflow_run"], "--out", str(tmp_path / "w2"), "--register", name)
    assert "champion unchanged" in out
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == "2"
    # The version points at the trial that trained it, carries a rounded score and a tensor signature; registering
    # made no run (no orphan export runs).
    assert champion.run_id == best["mlflow_run"]
    assert len(champion.tags["value"]) <= 8 and float(champion.tags["value"]) == pytest.approx(float(best["objective"]), rel=1e-5)
    assert {r.info.run_id for e in client.search_experiments() for r in client.search_runs([e.experiment_id])} == runs_before
    # The version says what it is (issue 31): a description with the objective, the scores, the data and how to
    # predict; the logged model is named after the trial's model, and the trial run lists it among its outputs.
    description = champion.description or ""
    assert f"Objective: `{best_objective_name(storage)}`" in description and "| validation (selection) |" in description
    assert f"bubbles-study predict {tmp_path / 'b'}" in description and f"models:/{name}/" in description
    model_id = champion.source.removeprefix("models:/")
    logged = client.get_logged_model(model_id)
    assert logged.name.startswith("convlstm-") and logged.name != "bundle"
    outputs = client.get_run(best["mlflow_run"]).outputs
    assert model_id in {o.model_id for o in (outputs.model_outputs if outputs else [])}
    # The round trip: a fresh process loads the registered version by name and predicts; it matches the export.
    model, cfg, _ = load_bundle(tmp_path / "b")
    x = example_input(cfg)
    with torch.no_grad():
        expected = model(x, future=cfg.window.output_len).numpy()
    np.save(tmp_path / "x.npy", x.numpy())
    script = (
        "import sys, mlflow, numpy as np\n"
        f"mlflow.set_tracking_uri({uri!r})\n"
        f"m = mlflow.pyfunc.load_model('models:/{name}/2')\n"
        "sig = m.metadata.signature.inputs.to_dict()[0]\n"
        "assert sig['type'] == 'tensor', sig\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, m.predict(np.load({str(tmp_path / 'x.npy')!r})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, atol=1e-5)


def best_objective_name(storage: Path) -> str:
    return json.loads((storage / "exp" / "mlflow_parent.json").read_text())["objective"]


def _check_link(uri: str, link: str, fragment: str) -> None:
    """A printed link: on a server, its page answers and the fragment names what the UI opens; on sqlite, the
    `mlflow ui` command to run and the same fragment."""
    assert link.endswith(fragment), link
    if uri.startswith("http"):
        import urllib.request

        assert link.startswith(uri)
        with urllib.request.urlopen(link.split("#")[0], timeout=10) as resp:
            assert resp.status == 200
    else:
        assert link.startswith(f"mlflow ui --backend-store-uri {uri}")


@pytest.mark.slow
def test_runs_table_link(tracked_sweep: tuple[str, Path]) -> None:
    from study.tracking import runs_table_link

    uri, _ = tracked_sweep
    experiment = "sweep-test-http" if uri.startswith("http") else "sweep-test"
    exp_id = mlflow.MlflowClient(uri).get_experiment_by_name(experiment).experiment_id
    _check_link(uri, runs_table_link(uri, experiment), f"#/experiments/{exp_id}/runs?workflowType=machine_learning")


@pytest.mark.slow
def test_the_sweep_link_opens_its_trials_ranked_with_the_comparable_columns(tracked_sweep: tuple[str, Path]) -> None:
    """The view the printed link opens (MLflow 3.17's shared view state, an experiment tag): the sweep's trials
    only, ranked by the objective's trial-end metric, which the trial runs hold, shown first; the parent run's
    description is the top-5 table with a link to each trial's run."""
    from study.tracking.views import SHARED_VIEW_TAG, sweep_view_link

    uri, storage = tracked_sweep
    parent = json.loads((storage / "exp" / "mlflow_parent.json").read_text())
    client = mlflow.MlflowClient(uri)
    exp_id = client.get_run(parent["run_id"]).info.experiment_id
    link = sweep_view_link(uri, parent["experiment"], parent["run_id"], "exp", parent["objective"], parent["mode"])
    _check_link(uri, link, f"#/experiments/{exp_id}/runs?viewStateShareKey=sweep-exp&workflowType=machine_learning")
    state = json.loads(client.get_experiment(exp_id).tags[SHARED_VIEW_TAG + "sweep-exp"])
    children = client.search_runs([exp_id], filter_string=state["searchFilter"])
    rows = list(csv.DictReader((storage / "exp" / "leaderboard.csv").read_text().splitlines()))
    assert {r.info.run_id for r in children} == {r["mlflow_run"] for r in rows}  # the trials, not the parent
    sort = state["orderByKey"].removeprefix("metrics.`").removesuffix("`")
    assert state["orderByAsc"] is (parent["mode"] == "min") and all(sort in r.data.metrics for r in children)
    assert state["selectedColumns"][0] == state["orderByKey"]
    assert any("bubble_f1" in c for c in state["selectedColumns"]) and "params.`output_len`" in state["selectedColumns"]
    note = client.get_run(parent["run_id"]).data.tags["mlflow.note.content"]
    best = rows[0]
    assert f"[{best['trial']}](#/experiments/{exp_id}/runs/{best['mlflow_run']})" in note and note.count("](#/experiments/") == len(rows)


@pytest.mark.slow
def test_export_without_the_sweeps_storage_says_where_it_is(finished_sweep: tuple[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    uri, storage = finished_sweep
    monkeypatch.chdir(tmp_path)  # the default --storage runs/sweeps is then empty
    result = CliRunner(env={"MLFLOW_TRACKING_URI": uri}).invoke(main, ["export", "--sweep", "exp", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1
    assert result.output == (f"error: {tmp_path / 'runs' / 'sweeps' / 'exp'}: no sweep here; the tracking store has a "
                             f"sweep of that name in {storage.resolve() / 'exp'} (add --storage {storage.resolve()})\n")


@pytest.mark.slow
def test_the_report_draws_no_empty_panel_and_writes_no_nan(finished_sweep: tuple[str, Path], tmp_path: Path) -> None:
    """The sweep's own directory, with a parameter no trial sampled (as a family's own parameters are when no trial
    of that family ran) and an undefined bubble F1 (as for a trial that detects no bubble) in its leaderboard."""
    import shutil

    uri, storage = finished_sweep
    copy = tmp_path / "sweeps" / "exp"
    shutil.copytree(storage / "exp", copy)
    rows = list(csv.DictReader((copy / "leaderboard.csv").read_text().splitlines()))
    cols = list(rows[0])
    cols.insert(cols.index("objective"), "st_hidden")
    rows[-1]["bubble_f1"] = "nan"
    with (copy / "leaderboard.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows({**r, "st_hidden": ""} for r in rows)
    _cli(uri, "report", "--sweep", "exp", "--storage", str(tmp_path / "sweeps"), "--out", str(tmp_path / "r"))
    page = (tmp_path / "r" / "index.html").read_text()
    import re

    assert not re.search(r">\s*nan\s*<", page, re.IGNORECASE)  # no table cell says nan (a dash, explained once)
    assert "bubble_f1 (1 trials): no bubble was detected" in page
    drawn = page.split('alt="objective vs ', 1)[1].split('"', 1)[0].split(", ")
    assert "st_hidden" not in drawn and {"hidden", "window", "lr"} <= set(drawn)
    assert "No panel for st_hidden: no scored trial sampled them" in page


@pytest.mark.slow
def test_failed_registration_leaves_nothing(tracked_sweep: tuple[str, Path], tmp_path: Path) -> None:
    uri, storage = tracked_sweep
    client = mlflow.MlflowClient(uri)
    models_before = {m.model_id for m in client.search_logged_models([e.experiment_id for e in client.search_experiments()])}
    result = CliRunner(env={"MLFLOW_TRACKING_URI": uri}).invoke(
        main, ["export", "--sweep", "exp", "--storage", str(storage), "--out", str(tmp_path / "x"), "--register", "bad:name"])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()  # the export's own lines, then one error line
    assert lines[-1].startswith("error: --register bad:name: MLflow at") and sum(x.startswith("error:") for x in lines) == 1
    assert "nothing was kept" in result.output and "Traceback" not in result.output
    assert not client.search_registered_models(filter_string="name = 'bad:name'")
    after = {m.model_id for m in client.search_logged_models([e.experiment_id for e in client.search_experiments()])}
    assert after == models_before


@pytest.mark.slow
def test_predict_writes_files_and_metrics(finished_sweep: tuple[str, Path], tiny_store: Path, tmp_path: Path) -> None:
    uri, storage = finished_sweep
    _cli(uri, "export", "--sweep", "exp", "--storage", str(storage), "--out", str(tmp_path / "m"))
    _, cfg, _ = load_bundle(tmp_path / "m")
    steps = cfg.window.output_len + 2
    out = _cli(uri, "predict", str(tmp_path / "m"), "--store", str(tiny_store), "--sequence", "seq001", "--start", "5",
               "--steps", str(steps), "--autoregressive", "--out", str(tmp_path / "p"))
    assert "lead 1: SSIM" in out and "strongest baseline" in out
    files = {p.name for p in (tmp_path / "p").iterdir()}
    assert {"strip.png", "rollout.gif", "prediction.npy", "metrics.csv", "metrics.json", "bubbles.png"} <= files
    pred = np.load(tmp_path / "p" / "prediction.npy")
    assert pred.shape == (steps, 32, 32) and np.isfinite(pred).all()
    summary = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert len(summary["metrics"]["ssim"]) == steps and all(0 <= v <= 1 for v in summary["metrics"]["ssim"])
    for key in ("bubble_f1", "persistence_bubble_f1", "sharpness", "persistence_sharpness"):
        assert len(summary["metrics"][key]) == steps and all(v is None or v >= 0 for v in summary["metrics"][key])
    assert summary["metrics"]["persistence_sharpness"][0] > 0.5  # a real frame is about as sharp as the next one
    # Every baseline is shown (climatology from the export's mean frame), with the strongest named per lead.
    assert {"persistence_mse", "median_mse", "climatology_mse", "flow_mse", "strongest", "skill_vs_strongest"} <= set(summary["metrics"])
    assert set(summary["metrics"]["strongest"]) <= {"persistence", "median", "climatology", "flow"} and "collapse_score" in summary
    result = CliRunner(env={"MLFLOW_TRACKING_URI": uri}).invoke(main, ["predict", str(tmp_path / "m"), "--store", str(tiny_store),
                                                                      "--sequence", "seq001", "--steps", str(steps), "--out", str(tmp_path / "q")])
    assert result.exit_code == 1 and "--autoregressive" in result.output
    # One predicted frame: no collapse score (null in the JSON, said so on the console), never NaN.
    out = _cli(uri, "predict", str(tmp_path / "m"), "--store", str(tiny_store), "--sequence", "seq001", "--steps", "1", "--out", str(tmp_path / "r"))
    assert "collapse score n/a (one predicted frame)" in out
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["collapse_score"] is None


@pytest.mark.slow
def test_predict_from_a_raw_frame_folder(finished_sweep: tuple[str, Path], tmp_path: Path) -> None:
    import imageio.v3 as iio

    uri, storage = finished_sweep
    _cli(uri, "export", "--sweep", "exp", "--storage", str(storage), "--out", str(tmp_path / "m"))
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = np.random.default_rng(0).integers(0, 255, (10, 32, 32), dtype=np.uint8)
    frames[9] = frames[8]  # the camera stalled at the end: predict says so, as ingest would
    for k, f in enumerate(frames):
        iio.imwrite(folder / f"f{k:02d}.png", f)
    out = _cli(uri, "predict", str(tmp_path / "m"), "--input", str(folder), "--out", str(tmp_path / "p"))
    assert (tmp_path / "p" / "metrics.csv").exists()
    assert "warning:" in out and "1 frame(s) repeating the frame before (frames 9 of 10)" in out
    assert json.loads((tmp_path / "p" / "metrics.json").read_text())["warnings"][0].endswith("`ingest --drop-duplicates` removes them")


@pytest.mark.slow
def test_report_has_the_leaderboard(tracked_sweep: tuple[str, Path], tmp_path: Path) -> None:
    uri, storage = tracked_sweep
    _cli(uri, "report", "--sweep", "exp", "--storage", str(storage), "--out", str(tmp_path / "r"))
    page = (tmp_path / "r" / "index.html").read_text()
    import csv

    rows = list(csv.DictReader((storage / "exp" / "leaderboard.csv").read_text().splitlines()))
    for r in rows:
        assert f"<td>{r['trial']}</td>" in page
        assert 0.0 <= float(r["bubble_f1"]) <= 1.0  # every trial is evaluated, stopped early or not
    assert "Parameter importances" in page and "data:image/png;base64," in page and "Compute spent" in page
    assert "<tr><th>trial</th><th>objective</th>" in page  # the ranking column beside the id, not off-screen
    best = [r for r in rows if r["status"] == "completed"][0]
    family_window = f"{best['trial']} convlstm {best['window'].replace('->', '→')}"
    assert f"Prediction strips of the best trial ({family_window})" in page
    from study.yardstick import NO_TEST

    assert html.escape(NO_TEST) in page and "What won, by window, size and family" in page  # no test split: said once
    client = mlflow.MlflowClient(uri)
    parent = json.loads((storage / "exp" / "mlflow_parent.json").read_text())["run_id"]
    assert "report/index.html" in {a.path for a in client.list_artifacts(parent, "report")}


def test_export_needs_exactly_one_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "exactly one of" in result.output


def test_export_of_a_sweep_without_finished_trials_is_one_line(tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "empty"
    sweep.mkdir(parents=True)
    (sweep / "mlflow_parent.json").write_text(json.dumps({"run_id": "x"}))
    (sweep / "leaderboard.csv").write_text("trial,status,objective,mlflow_run\nt1,stopped_early,0.5,r1\n")
    result = CliRunner(env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}).invoke(
        main, ["export", "--sweep", "empty", "--storage", str(tmp_path / "sweeps"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and "no completed trial" in result.output
    assert not (tmp_path / "x").exists()


def test_loading_a_non_export_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["predict", str(tmp_path), "--store", "x", "--sequence", "y", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "not an exported model" in result.output


@pytest.mark.slow
def test_exported_weights_score_what_the_leaderboard_says(finished_sweep: tuple[str, Path], tmp_path: Path) -> None:
    """Issue 11: one truth. best.pt is picked by the sweep's objective, so evaluating the exported weights afresh
    gives the leaderboard's objective, and every trial's evaluation is the best epoch of that objective."""
    import csv

    from bubbles.data.splits import make_splits
    from bubbles.evaluation.evaluate import evaluate

    uri, storage = finished_sweep
    rows = [r for r in csv.DictReader((storage / "exp" / "leaderboard.csv").open()) if r["status"] == "completed"]
    _cli(uri, "export", "--sweep", "exp", "--storage", str(storage), "--out", str(tmp_path / "m"))
    model, cfg, config = load_bundle(tmp_path / "m")
    assert cfg.train.best_by == "val_ssim" and config["objective"]["name"] == "val_ssim"
    fresh = evaluate(model, make_splits(cfg.data, cfg.window).val, cfg.train.batch_size, cfg.train.max_val_windows)
    assert fresh.model.mean("ssim") == pytest.approx(float(rows[0]["objective"]), rel=1e-5)
    assert config["objective"]["value"] == pytest.approx(float(rows[0]["objective"]), rel=1e-5)
    client = mlflow.MlflowClient(uri)
    for row in rows:
        history = [m.value for m in client.get_metric_history(row["mlflow_run"], "epoch/val_ssim")]
        final = client.get_run(row["mlflow_run"]).data.metrics["final_ssim"]
        assert final == pytest.approx(max(history), rel=1e-5), (row["trial"], history, final)


def test_export_card_shows_validation_and_says_there_is_no_test_split(finished_sweep: tuple[str, Path], tmp_path: Path) -> None:
    """Issue 21: the export says what its model was chosen on (validation) and, where the test score would stand,
    that this study has no test split; the registry version carries both."""
    from study.yardstick import NO_TEST, TEST, VALIDATION

    uri, storage = finished_sweep
    out = _cli(uri, "export", "--sweep", "exp", "--storage", str(storage), "--out", str(tmp_path / "m"), "--register", "ys-model")
    assert f"{TEST}: {NO_TEST}" in out and f"{VALIDATION})" in out
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    yardstick = config["yardstick"]
    assert set(yardstick[VALIDATION]) >= {"ssim", "mse", "bubble_f1", "skill_vs_strongest"} and yardstick[TEST] == NO_TEST
    assert yardstick["protocol"].startswith("protocol: leads 1, 2, 3 at 32x32 px")  # the space's longest output: 4->3
    card = (tmp_path / "m" / "metrics_card.md").read_text()
    assert "## The study's yardstick" in card and f"| {VALIDATION} | {yardstick[VALIDATION]['ssim']:.3f}" in card
    assert f"- {TEST}: {NO_TEST}" in card
    version = mlflow.MlflowClient(uri).get_model_version("ys-model", "1")
    assert version.tags["test"] == NO_TEST and float(version.tags["yardstick_ssim"]) == pytest.approx(
        yardstick[VALIDATION]["ssim"], rel=1e-5)


def test_an_export_whose_store_is_gone_says_so_and_stands_alone(finished_sweep: tuple[str, Path], tmp_path: Path) -> None:
    """The store a model trained on may live elsewhere (a cluster path): the export is written without the
    climatology frame, with one note saying why (it raised a NameError on the name of that file before)."""
    import dataclasses

    from study import export as ex

    _, storage = finished_sweep
    trial = next(storage.rglob("checkpoint/best.pt")).parent.parent
    chosen = ex.from_checkpoint_dir(trial)
    gone = dataclasses.replace(chosen.cfg.data, store=str(tmp_path / "moved.zarr"))
    chosen = dataclasses.replace(chosen, cfg=dataclasses.replace(chosen.cfg, data=gone))
    notes: list[str] = []
    path = ex.export(chosen, tmp_path / "out", False, note=notes.append)
    assert "climatology.npy" not in {p.name for p in path.iterdir()} and "weights.safetensors" in {p.name for p in path.iterdir()}
    assert len(notes) == 1 and notes[0].startswith("export: no climatology.npy (predict will lack the climatology baseline)"), notes
