"""The champion rule a space declares (issue 27): which trial the study calls its champion, so that the leaderboard,
`export`, the registry and the report all name the same one.

    tune:
      champion: {rank_by: bubble_f1, min_skill_every_lead: 0}

means: among the trials whose skill against the strongest baseline is >= 0 at every lead of the yardstick
(validation split, all protocol windows), the one with the highest bubble F1 there. Without `champion:` the
champion is the best trial by the objective, as before. When no trial meets the condition, the rule says so and the
ranking falls back to the objective. Everything here reads leaderboard rows only (the yardstick_<metric>
columns, study.yardstick.columns)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bubbles.errors import UserError
from bubbles.training.config import best_by_mode

RANKABLE = ("skill_vs_strongest", "bubble_f1", "ssim", "mse", "skill_vs_strongest_min", "bubble_f1_margin_min")  # yardstick metrics with a yardstick_<m> column


@dataclass(frozen=True)
class ChampionRule:
    rank_by: str
    min_skill_every_lead: float | None = None

    @property
    def mode(self) -> str:
        return best_by_mode(f"yardstick_{self.rank_by}")

    def describe(self) -> str:
        best = "highest" if self.mode == "max" else "lowest"
        among = ("" if self.min_skill_every_lead is None else
                 f" among trials whose skill vs the strongest baseline is >= {self.min_skill_every_lead:g} at every lead")
        return f"{best} {self.rank_by} on the validation yardstick{among}"

    def to_dict(self) -> dict[str, Any]:
        return {"rank_by": self.rank_by, "min_skill_every_lead": self.min_skill_every_lead}


def parse_champion(where: str, raw: Any) -> ChampionRule | None:
    """`tune.champion` of a space: {rank_by, min_skill_every_lead} (None when absent)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a mapping {{rank_by, min_skill_every_lead}}, got {raw!r}")
    for key in raw:
        if key not in ("rank_by", "min_skill_every_lead"):
            raise UserError(f"{where}.{key}: unknown key (use rank_by, min_skill_every_lead)")
    rank_by = raw.get("rank_by", "skill_vs_strongest")
    if rank_by not in RANKABLE:
        raise UserError(f"{where}.rank_by: expected one of {', '.join(RANKABLE)}, got {rank_by!r}")
    floor = raw.get("min_skill_every_lead")
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, (int, float)) or not math.isfinite(floor)):
        raise UserError(f"{where}.min_skill_every_lead: expected a number, got {floor!r}")
    return ChampionRule(rank_by, None if floor is None else float(floor))


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def apply(rule: ChampionRule | None, ranked: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Rows ranked by the objective (best first) -> rows with the rule's champion order first, and a line saying
    what the rule did. The qualifying trials come first, ordered by rank_by; the others keep the objective's order."""
    if rule is None:
        return ranked, ""
    sign = -1.0 if rule.mode == "max" else 1.0

    def qualifies(r: dict[str, Any]) -> bool:
        if r.get("status") != "completed":  # export and the registry take completed trials only
            return False
        if not math.isfinite(_num(r.get(f"yardstick_{rule.rank_by}"))):
            return False
        return rule.min_skill_every_lead is None or _num(r.get("yardstick_skill_vs_strongest_min")) >= rule.min_skill_every_lead

    good = sorted((r for r in ranked if qualifies(r)), key=lambda r: sign * _num(r[f"yardstick_{rule.rank_by}"]))
    rest = [r for r in ranked if not qualifies(r)]
    if not good:
        return ranked, f"champion rule ({rule.describe()}): no trial qualifies, so the champion is the best by the objective"
    return good + rest, f"champion rule ({rule.describe()}): {len(good)} of {len(ranked)} trials qualify"


def record(sweep_dir: Any, rule: ChampionRule | None, note: str, ranked: list[dict[str, Any]]) -> None:
    """champion.json beside the leaderboard: the rule, what it did, and the trial it chose (temp file, then rename)."""
    import json
    from pathlib import Path

    path = Path(sweep_dir) / "champion.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"rule": rule.to_dict() if rule else None, "note": note,
                               "trial": ranked[0]["trial"] if ranked else None}, indent=1))
    tmp.replace(path)
