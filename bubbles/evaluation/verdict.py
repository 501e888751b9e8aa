"""Which baselines a model beats, lead by lead: the answer to a researcher's first question of any forecast ("is it
better than persistence, climatology and flow?"), said the same way on every page (issue 27). Beating means a lower
MSE on the same frames (skill = 1 - MSE_model / MSE_baseline > 0)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The key of an export's yardstick record (config.json, metrics card) that holds the test split's sentence.
TEST_VERDICT = "against the baselines (test split, per lead)"


def _span(leads: Sequence[int]) -> str:
    """1, 2, 3, 5 -> '1–3, 5'."""
    parts, run = [], [leads[0]]
    for lead in leads[1:]:
        if lead == run[-1] + 1:
            run.append(lead)
        else:
            parts.append(run)
            run = [lead]
    parts.append(run)
    return ", ".join(f"{r[0]}" if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in parts)


def _names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True)
class Verdict:
    """A model's MSE per lead against each baseline's on the same frames. leads: the protocol's lead numbers."""

    leads: tuple[int, ...]
    model_mse: tuple[float, ...]
    baseline_mse: Mapping[str, tuple[float, ...]]

    @classmethod
    def of(cls, score: Any) -> Verdict:
        """From a bubbles.evaluation.yardstick.YardstickScore (or its to_dict())."""
        if isinstance(score, Mapping):
            return cls(tuple(score["protocol"]["leads"]), tuple(score["per_lead"]["mse"]),
                       {b: tuple(m["mse"]) for b, m in score["baselines"].items()})
        return cls(tuple(score.protocol.leads), tuple(score.per_lead["mse"]),
                   {b: tuple(m["mse"]) for b, m in score.baselines.items()})

    def lost(self) -> dict[str, list[int]]:
        """Baseline -> the leads where the model's MSE is not below it (a tie is no win)."""
        out: dict[str, list[int]] = {}
        for b, mse in self.baseline_mse.items():
            leads = [lead for lead, m, base in zip(self.leads, self.model_mse, mse) if not m < base]
            if leads:
                out[b] = leads
        return out

    @property
    def beats_all(self) -> bool:
        return not self.lost()

    @property
    def loses_from_lead(self) -> int | None:
        """The first lead where some baseline is at least as good; None when it beats them all at every lead."""
        lost = self.lost()
        return min(min(v) for v in lost.values()) if lost else None

    def sentence(self) -> str:
        """e.g. 'loses to flow at leads 3–4 (by up to 0.00040 MSE); beats persistence and climatology at every lead (1–4)'."""
        lost = self.lost()
        every = f"at every lead ({_span(list(self.leads))})"
        won = [b for b in self.baseline_mse if b not in lost]
        if not lost:
            return f"beats {_names(won)} {every}" if won else "no baselines to compare with"
        parts = []
        for b, leads in lost.items():
            margin = max(self.model_mse[self.leads.index(k)] - self.baseline_mse[b][self.leads.index(k)] for k in leads)
            parts.append(f"loses to {b} at lead{'s' if len(leads) > 1 else ''} {_span(leads)} (by up to {margin:.2g} MSE)")
        return "; ".join(parts) + (f"; beats {_names(won)} {every}" if won else "")

    def columns(self) -> dict[str, Any]:
        """The leaderboard's beats_all_baselines (yes/no) and loses_from_lead (empty when none)."""
        first = self.loses_from_lead
        return {"beats_all_baselines": "yes" if first is None else "no", "loses_from_lead": "" if first is None else first}
