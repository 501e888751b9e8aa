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
    assert space.tune.objective == "yardstick_skill" and space.tune.mode == "max"
    for shipped in ("smoke.yaml", "convlstm.yaml"):
        assert load_space(ROOT / "search_spaces" / shipped, check_data=False).tune.objective == "yardstick_skill"
