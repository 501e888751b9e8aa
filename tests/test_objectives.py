"""The objective the user means (issue 27): skill against the strongest baseline is the default, in a space that
names none and in both shipped spaces."""

from __future__ import annotations

from pathlib import Path

from study.space import load_space

ROOT = Path(__file__).resolve().parents[1]


def test_a_space_without_objective_and_both_shipped_spaces_rank_by_skill_vs_the_strongest_baseline(tmp_path: Path) -> None:
    bare = tmp_path / "bare.yaml"
    bare.write_text("search:\n  lr: {type: log, low: 1.0e-3, high: 1.0e-2}\n")
    space = load_space(bare, check_data=False)
    assert space.tune.objective == "yardstick_skill_vs_strongest" and space.tune.mode == "max"
    for shipped in ("smoke.yaml", "convlstm.yaml"):
        assert load_space(ROOT / "search_spaces" / shipped, check_data=False).tune.objective == "yardstick_skill_vs_strongest"


def _row(trial: str, status: str, objective: float, f1: float, skill_min: float) -> dict:
    return {"trial": trial, "status": status, "objective": objective, "yardstick_bubble_f1": f1,
            "yardstick_skill_vs_strongest_min": skill_min}


def test_champion_rule_picks_the_best_bubble_f1_among_trials_never_worse_than_a_baseline(tmp_path: Path) -> None:
    from study.champion import apply, parse_champion

    space_file = tmp_path / "rule.yaml"
    space_file.write_text("search:\n  lr: {type: log, low: 1.0e-3, high: 1.0e-2}\n"
                          "tune: {champion: {rank_by: bubble_f1, min_skill_every_lead: 0}}\n")
    rule = load_space(space_file, check_data=False).tune.champion
    assert rule is not None and rule.rank_by == "bubble_f1" and rule.min_skill_every_lead == 0
    by_objective = [_row("a", "completed", 0.30, 0.90, -0.20),   # best objective, loses to a baseline at some lead
                    _row("b", "completed", 0.20, 0.60, 0.05),
                    _row("c", "stopped_early", 0.15, 0.95, 0.10),  # not exportable: never the champion
                    _row("d", "completed", 0.10, 0.70, 0.00)]
    ranked, note = apply(rule, by_objective)
    assert [r["trial"] for r in ranked] == ["d", "b", "a", "c"] and "2 of 4 trials qualify" in note
    strict = parse_champion("t", {"rank_by": "bubble_f1", "min_skill_every_lead": 0.5})
    ranked, note = apply(strict, by_objective)
    assert [r["trial"] for r in ranked] == ["a", "b", "c", "d"] and "no trial qualifies" in note
    assert apply(None, by_objective) == (by_objective, "")
    import pytest

    from bubbles.errors import UserError
    with pytest.raises(UserError, match="rank_by"):
        parse_champion("tune.champion", {"rank_by": "val_loss"})


def test_the_worst_leads_bubble_f1_margin_over_the_best_baseline_ranks_the_champion() -> None:
    """The smoke space's rule: of the trials never worse than a baseline on MSE, the one whose worst lead places
    bubbles best against the best baseline there (last session's champion won on mean F1 by 0.0014 and lost to
    persistence's F1 at lead 2 by 0.032)."""
    import math

    from bubbles.evaluation.yardstick import Protocol, YardstickScore
    from study.champion import apply, parse_champion

    def score(f1: tuple[float, ...]) -> YardstickScore:
        base = {"persistence": {"bubble_f1": (0.80, 0.83, 0.60)}, "flow": {"bubble_f1": (0.81, 0.70, math.nan)}}
        return YardstickScore("val", Protocol((1, 2, 3), (32, 32), 4, 2), (), {"bubble_f1": f1, "skill_vs_strongest": (0.1,) * 3, "ssim": (0.9,) * 3, "mse": (0.001,) * 3, "psnr": (30.0,) * 3},
                              base, ("flow",) * 3)

    dip, even = score((0.90, 0.79, 0.80)), score((0.84, 0.85, 0.64))
    assert math.isclose(dip.means()["bubble_f1_margin_min"], 0.79 - 0.83)
    assert math.isclose(even.means()["bubble_f1_margin_min"], 0.85 - 0.83)  # lead 3: flow NaN, persistence alone
    assert dip.means()["bubble_f1"] > even.means()["bubble_f1"]  # rank_by bubble_f1 would take the one with a dip
    rows = [{"trial": t, "status": "completed", "objective": 0.5, "yardstick_skill_vs_strongest_min": 0.1}
            | {f"yardstick_{k}": v for k, v in s.means().items()} for t, s in (("dip", dip), ("even", even))]
    ranked, _ = apply(parse_champion("t", {"rank_by": "bubble_f1_margin_min", "min_skill_every_lead": 0}), rows)
    assert [r["trial"] for r in ranked] == ["even", "dip"]


def test_verdict_says_which_baselines_it_beats_per_lead() -> None:
    from bubbles.evaluation.verdict import Verdict

    v = Verdict((1, 2, 3, 4), (0.001, 0.002, 0.003, 0.004),
                {"persistence": (0.002, 0.003, 0.004, 0.005), "climatology": (0.01,) * 4, "flow": (0.002, 0.0025, 0.0028, 0.0035)})
    assert v.columns() == {"beats_all_baselines": "no", "loses_from_lead": 3}
    assert v.sentence() == ("loses to flow at leads 3–4 (by up to 0.0005 MSE); "
                            "beats persistence and climatology at every lead (1–4)")
    win = Verdict((1, 2), (0.001, 0.001), {"persistence": (0.002, 0.002), "flow": (0.003, 0.003)})
    assert win.columns() == {"beats_all_baselines": "yes", "loses_from_lead": ""}
    assert win.sentence() == "beats persistence and flow at every lead (1–2)"


def test_asha_can_count_gflops_or_seconds_instead_of_epochs(tmp_path: Path) -> None:
    import pytest

    from bubbles.errors import UserError
    from study.sweep import ASHA_CLOCK

    def space(asha: str):  # type: ignore[no-untyped-def]
        path = tmp_path / "asha.yaml"
        path.write_text(f"search:\n  lr: {{type: log, low: 1.0e-3, high: 1.0e-2}}\ntune: {{asha: {asha}}}\n")
        return load_space(path, check_data=False)

    t = space("{time_attr: gflops, grace_period: 300, max_t: 1200}").tune
    assert (t.time_attr, t.grace_period, t.max_t) == ("gflops", 300.0, 1200.0)
    assert ASHA_CLOCK[t.time_attr] == "train_gflops_total"
    assert space("{grace_period: 2}").tune.time_attr == "epochs"
    with pytest.raises(UserError, match="max_t"):
        space("{time_attr: seconds, grace_period: 10}")
    with pytest.raises(UserError, match="time_attr"):
        space("{time_attr: hours, max_t: 3}")
    shipped = load_space(ROOT / "search_spaces" / "smoke.yaml", check_data=False).tune
    assert shipped.time_attr == "gflops" and shipped.champion is not None
