"""A multi-objective sweep (issue 27): skill vs the strongest baseline and bubble F1 searched together by Optuna's
multi-objective TPE through Ray Tune (ASHA would read the first), a declared champion rule, the leaderboard's
verdict columns on the test split, and the report's first section with the test-split Pareto plot."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import ray

from study.space import load_space
from study.sweep import run_sweep
from study.sweep_dir import OPTUNA_DB

SPACE = """
data: {{store: {store}, split: condition, val_fraction: 0.34, test_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 8, stride: 2, max_train_windows: 24, max_val_windows: 8, image_size: 16, window: "4->2", epochs: 1}}
search:
  model: {{type: categorical, choices: [convlstm, evolution]}}
  layers: {{type: int, low: 1, high: 1, when: {{model: convlstm}}}}
  hidden: {{type: categorical, choices: [4], when: {{model: convlstm}}}}
  peephole: {{type: categorical, choices: [channel], when: {{model: convlstm}}}}
  ev_width: {{type: categorical, choices: [4], when: {{model: evolution}}}}
  ev_depth: {{type: int, low: 1, high: 1, when: {{model: evolution}}}}
  baseline_start: {{type: categorical, choices: [true, false]}}
  lr: {{type: log, low: 1.0e-3, high: 1.0e-2}}
seed_points:
  - {{model: evolution, ev_width: 4, ev_depth: 1, baseline_start: true, lr: 5.0e-3}}
  - {{model: convlstm, layers: 1, hidden: 4, peephole: channel, baseline_start: false, lr: 5.0e-3}}
tune:
  objectives: [yardstick_bubble_f1]
  champion: {{rank_by: bubble_f1, min_skill_every_lead: 0}}
  num_samples: 3
  max_concurrent: 2
  max_failures: 0
  asha: false
evaluate: {{leads: 2, windows: 8, epoch_windows: 3, test_top_k: 3}}
tracking: {{experiment: multi-objective-test}}
"""


@pytest.mark.slow
def test_a_multi_objective_sweep_reaches_its_leaderboard_verdicts_and_pareto_plot(tiny_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE.format(store=tiny_store))
    space = load_space(path)
    assert space.tune.all_objectives() == ("yardstick_skill_vs_strongest", "yardstick_bubble_f1")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        outcome = run_sweep(space, "mo", tmp_path / "sweeps", uri)
    finally:
        ray.shutdown()
    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{outcome.directory / OPTUNA_DB}")
    assert len(study.directions) == 2 and all(d == optuna.study.StudyDirection.MAXIMIZE for d in study.directions)
    assert [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and len(t.values) == 2]
    rows = outcome.rows
    assert len(rows) == 3
    tested = [r for r in rows if r["beats_all_baselines"] in ("yes", "no")]
    assert tested and all((r["loses_from_lead"] == "") == (r["beats_all_baselines"] == "yes") for r in tested)
    rule = json.loads((outcome.directory / "champion.json").read_text())
    assert rule["rule"] == {"rank_by": "bubble_f1", "min_skill_every_lead": 0.0} and rule["trial"] == rows[0]["trial"]
    from study.report import write_report

    page = write_report(uri, outcome.directory, tmp_path / "report").read_text()
    assert "The champion against the baselines (test split)" in page
    assert page.index("The champion against the baselines") < page.index("<h2>Leaderboard")
    assert (tmp_path / "report" / "pareto_test.png").is_file()
