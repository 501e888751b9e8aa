"""The report's cost section: the Pareto front of objective against GFLOPs, and the best trial of each family."""

from __future__ import annotations

from study.pareto import family_best, pareto_front


def test_pareto_front_keeps_what_nothing_cheaper_beats() -> None:
    points = [(1.0, 0.5), (2.0, 0.7), (2.0, 0.6), (4.0, 0.7), (8.0, 0.9), (0.5, 0.4)]
    assert sorted(pareto_front(points, "max")) == [0, 1, 4, 5]  # (2, .6) and (4, .7) are beaten by (2, .7)
    # Minimising (val_mse): lower is better on both axes.
    assert sorted(pareto_front([(1.0, 0.3), (2.0, 0.1), (3.0, 0.2), (0.5, 0.5)], "min")) == [0, 1, 3]
    assert pareto_front([(1.0, 0.5), (1.0, 0.5)], "max") == [0, 1]  # ties: neither beats the other


def test_family_best_prefers_completed_trials() -> None:
    rows = [
        {"trial": "a", "model": "simvp", "status": "stopped_early", "objective": "0.9"},
        {"trial": "b", "model": "convlstm", "status": "completed", "objective": "0.8"},
        {"trial": "c", "model": "simvp", "status": "completed", "objective": "0.7"},
        {"trial": "d", "model": "convlstm", "status": "completed", "objective": "0.6"},
        {"trial": "e", "model": "predrnn_v2", "status": "stopped_early", "objective": "0.5"},
        {"trial": "f", "model": "predrnn_v2", "status": "errored", "objective": "nan"},
    ]
    assert [(r["model"], r["trial"]) for r in family_best(rows)] == [("convlstm", "b"), ("predrnn_v2", "e"), ("simvp", "c")]
