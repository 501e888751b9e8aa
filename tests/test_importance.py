"""Importances at the deepest common rung: trials stopped early count, with their value at that epoch."""

from __future__ import annotations

from pathlib import Path

import optuna

from study.importance import rung_importances


def _study(path: Path, stopped_at_1: int, full: int) -> None:
    """Trials whose objective depends on x only: `full` of them report epochs 1-3 (COMPLETE), `stopped_at_1` report
    epoch 1 only (PRUNED, as ASHA leaves them)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{path}", direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    for k in range(stopped_at_1 + full):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1), "y": optuna.distributions.CategoricalDistribution(["a", "b"]),
                           "z": optuna.distributions.CategoricalDistribution([4])})
        x = trial.params["x"]
        epochs = 1 if k < stopped_at_1 else 3
        for step in range(1, epochs + 1):
            trial.report(x * step, step)
        if epochs == 1:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, x * 3)


def test_stopped_trials_count_at_the_first_rung(tmp_path: Path) -> None:
    _study(tmp_path / "o.db", stopped_at_1=8, full=3)  # 3 completed: completed-only fANOVA would refuse
    imp = rung_importances(tmp_path / "o.db", "s", "maximize")
    assert imp.rung == 1 and imp.trials == 11
    assert set(imp.values) == {"x", "y"} and imp.values["x"] > 0.8 > imp.values["y"]
    assert "Never varied among these trials (no importance): z." == imp.note


def test_the_deepest_rung_with_enough_trials_wins(tmp_path: Path) -> None:
    _study(tmp_path / "o.db", stopped_at_1=2, full=9)
    imp = rung_importances(tmp_path / "o.db", "s", "maximize")
    assert imp.rung == 3 and imp.trials == 9


def test_too_few_trials_say_so(tmp_path: Path) -> None:
    _study(tmp_path / "o.db", stopped_at_1=3, full=2)
    imp = rung_importances(tmp_path / "o.db", "s", "maximize")
    assert imp.values == {} and imp.rung is None
    assert imp.note == "Not computed: fANOVA needs 8 trials at a common epoch; the most that reached any one epoch is 5."
