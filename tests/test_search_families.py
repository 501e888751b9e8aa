"""`model` as a searched dimension: each family's parameters conditional on it (`when`), checked when the file is
loaded, sampled define-by-run so that every trial is a valid config of its own family, and a real sweep over three."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
from click.testing import CliRunner

from bubbles.config import FAMILY_PARAMETERS
from cli import main
from study.report import write_report
from study.space import load_space
from study.sweep import run_sweep

ROOT = Path(__file__).resolve().parents[1]

FAMILIES = """
data: {{store: {store}, split: condition, val_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 8, stride: 4, max_train_windows: 16, max_val_windows: 4, image_size: 16}}
search:
  model: {{type: categorical, choices: [convlstm, predrnn_v2, simvp]}}
  hidden: {{type: categorical, choices: [4, 8], when: {{model: convlstm}}}}
  st_hidden: {{type: categorical, choices: [4, 8], when: {{model: predrnn_v2}}}}
  patch: {{type: categorical, choices: [2, 4], when: {{model: predrnn_v2}}}}
  hid_s: {{type: categorical, choices: [4, 8], when: {{model: [simvp]}}}}
  n_s: {{type: categorical, choices: [2, 4], when: {{model: [simvp]}}}}
  window: {{type: categorical, choices: ["4->1", "4->2"]}}
  teacher_forcing: {{type: float, low: 0.0, high: 0.5, when: {{window: ["4->2"], model: [convlstm]}}}}
  lr: {{type: log, low: 1.0e-3, high: 1.0e-2}}
seed_points:
  - {{model: convlstm, hidden: 8, window: "4->2", teacher_forcing: 0.2}}
  - {{model: predrnn_v2, st_hidden: 4, patch: 2}}
  - {{model: simvp, hid_s: 4, n_s: 2, window: "4->2"}}
tune: {{objective: val_mse, num_samples: {samples}, max_concurrent: 2, max_failures: 0, seed: 1, asha: false}}
tracking: {{experiment: families-test}}
"""


def write(tmp: Path, store: Path, text: str = FAMILIES, samples: int = 3) -> Path:
    path = tmp / "families.yaml"
    path.write_text(text.format(store=store, samples=samples))
    return path


@pytest.mark.parametrize("name", ["convlstm.yaml", "smoke.yaml"])
def test_shipped_spaces_search_several_families(name: str) -> None:
    space = load_space(ROOT / "search_spaces" / name, check_data=False)
    model = next(d for d in space.dimensions if d.name == "model")
    assert len(model.choices) >= 2 and "convlstm" in model.choices


def test_sampling_gives_each_family_only_its_own_parameters(tiny_store: Path, tmp_path: Path) -> None:
    space = load_space(write(tmp_path, tiny_store))
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=10))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        space.sample(trial)
        params = trial.params
        cfg = space.trial_config(params)  # valid for its family, or this raises
        own = FAMILY_PARAMETERS[params["model"]]
        others = set().union(*(names for family, names in FAMILY_PARAMETERS.items() if family != params["model"])) - own
        assert not others & set(params), params
        assert ("teacher_forcing" in params) == (params["window"] == "4->2" and params["model"] == "convlstm"), params
        assert cfg.model_name == params["model"]
        seen.add(params["model"])
        study.tell(trial, cfg.train.lr)
    assert seen == {"convlstm", "predrnn_v2", "simvp"}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace("when: {model: convlstm}", "when: {modle: convlstm}"), "search.hidden.when.modle: 'modle' is neither fixed nor searched"),
        (lambda t: t.replace("when: {model: convlstm}", "when: {model: convlstn}"), "search.hidden.when.model: 'convlstn' is not a value search.model can take (convlstm, predrnn_v2, simvp)"),
        (lambda t: t.replace("choices: [4, 8], when: {model: [simvp]}", "choices: [4, 8]"), "search.hid_s: applies to model simvp only: make it conditional, when: {model: [simvp]}"),
        (lambda t: t.replace("when: {model: [simvp]}}\n  n_s", "when: {model: [simvp, convlstm]}}\n  n_s"), "search.hid_s.when.model: convlstm does not read hid_s"),
        (lambda t: t.replace("image_size: 16}", "image_size: 16, kernel: 3}"), "fixed.kernel: applies to model convlstm only but model is searched (also predrnn_v2)"),
        (lambda t: t.replace('model: [convlstm]}', 'model: [convlstm, simvp]}'), "search.teacher_forcing.when.model: simvp does not read teacher_forcing"),
        (lambda t: t.replace('model: [convlstm]}', 'model: [convlstm, predrnn_v2]}'), "search.teacher_forcing.when.model: predrnn_v2 does not read teacher_forcing"),
        (lambda t: t.replace("choices: [convlstm, predrnn_v2, simvp]", "choices: [convlstm, predrnn_v2, simvp, unet]"), "search.model.choices: unknown model 'unet'"),
        (lambda t: t.replace("{model: predrnn_v2, st_hidden: 4", "{model: simvp, st_hidden: 4"), "seed_points[1].st_hidden: not searched when model is 'simvp'"),
        (lambda t: t.replace("{model: predrnn_v2, st_hidden: 4", "{st_hidden: 4"), "seed_points[1].st_hidden: conditional on model; give model in this seed point too"),
        (lambda t: t.replace('  window: {type: categorical, choices: ["4->1", "4->2"]}\n', ""), "search.teacher_forcing.when.window: 'window' is neither fixed nor searched"),
        (lambda t: t.replace("patch: {type: categorical, choices: [2, 4]", "patch: {type: categorical, choices: [2, 3]").replace("image_size: 16}", 'image_size: "16x16"}'),
         "model=predrnn_v2, patch=3, window=4->1): patch: must divide the frame size 16x16, got 3"),
    ],
)
def test_condition_errors_are_one_line(tiny_store: Path, tmp_path: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.yaml"
    path.write_text(edit(FAMILIES.format(store=tiny_store, samples=3)))
    result = CliRunner().invoke(main, ["sweep", str(path), "--storage", str(tmp_path / "sweeps")])
    assert result.exit_code == 1, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    assert message in result.output and str(path) in result.output


def test_a_condition_on_a_later_dimension_is_refused(tiny_store: Path, tmp_path: Path) -> None:
    text = FAMILIES.format(store=tiny_store, samples=3)
    model_line = "  model: {type: categorical, choices: [convlstm, predrnn_v2, simvp]}\n"
    path = tmp_path / "late.yaml"
    path.write_text(text.replace(model_line, "").replace("  lr: {", model_line + "  lr: {"))
    result = CliRunner().invoke(main, ["sweep", str(path), "--storage", str(tmp_path / "sweeps")])
    assert result.exit_code == 1 and "search.hidden.when.model: model is searched after hidden; list it before" in result.output


@pytest.mark.slow
def test_a_sweep_over_three_families(tiny_store: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    space = load_space(write(tmp_path, tiny_store, FAMILIES.replace("lr: {{type", "epochs: {{type: int, low: 1, high: 1}}\n  lr: {{type")))
    outcome = run_sweep(space, "families", tmp_path / "sweeps", uri)
    rows = {r["model"]: r for r in outcome.rows}
    assert set(rows) == {"convlstm", "predrnn_v2", "simvp"} and all(r["status"] == "completed" for r in rows.values())
    assert rows["simvp"]["hidden"] == "" and rows["simvp"]["hid_s"] == 4 and rows["predrnn_v2"]["patch"] == 2
    client = mlflow.MlflowClient(uri)
    for r in rows.values():
        run = client.get_run(r["mlflow_run"]).data
        assert run.params["model"] == r["model"]
        assert set(FAMILY_PARAMETERS[r["model"]]) - {"teacher_forcing"} <= set(run.params)
        # The cost, measured in the trial: on the leaderboard and in MLflow, the same numbers.
        assert r["parameters"] == run.metrics["parameters"] > 0 and r["gflops"] == pytest.approx(run.metrics["gflops_per_window"])
        assert r["train_samples_per_s"] > 0 and r["infer_frames_per_s"] == run.metrics["inference_frames_per_s"] > 0
        assert run.tags["cost_device"] == "cpu"
    # The report: objective against GFLOPs with the Pareto front, and the best trial of each family.
    page = write_report(uri, outcome.directory, tmp_path / "report").read_text()
    assert (tmp_path / "report" / "objective_vs_gflops.png").is_file() and "Pareto front" in page
    family_table = page.split("Best trial of each model family")[1].split("</table>")[0]
    assert all(f"<td>{family}</td><td>{rows[family]['trial']}</td>" in family_table for family in rows)
