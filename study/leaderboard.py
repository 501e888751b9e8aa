"""The sweep's leaderboard: one row per trial, ranked by the objective; written as CSV and Markdown."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from study.space import SweepSpace

TOP = 5
def row(trial_id: str, run_id: str | None, outcome: str, config: dict[str, Any], metrics: dict[str, Any], objective: Any,
        space: SweepSpace, yardstick: dict[str, Any] | None = None) -> dict[str, Any]:
    """One trial: its searched parameters (`epochs` among them, when searched: the epochs sampled) and the numbers
    a user compares (`epochs_trained`: what ran before it finished or was stopped); `yardstick`: its columns on the
    study's protocol (study.yardstick.columns), beside the objective. ssim_lead1 … bubble_f1 are the trial's own
    windows and leads (not comparable across windows and sizes)."""
    out: dict[str, Any] = {"trial": trial_id, "status": outcome}
    for dim in space.dimensions:
        out[dim.name] = config.get(dim.name, "")
    out |= {
        "objective": _num(objective),
        **(yardstick or {}),
        "epochs_trained": metrics.get("epoch", 0),
        "ssim_lead1": _num(metrics.get("final_ssim_lead1", metrics.get("val_ssim_lead1"))),
        "ssim_last": _num(metrics.get("final_ssim_last", metrics.get("val_ssim_last"))),
        "skill_vs_persistence": _num(metrics.get("final_skill_vs_persistence", metrics.get("val_skill_vs_persistence"))),
        "bubble_f1": _num(metrics.get("final_bubble_f1", metrics.get("val_bubble_f1"))),
        # What it costs, measured in the trial: model size, forward GFLOPs per window, speed on its device.
        "parameters": int(metrics["parameters"]) if isinstance(metrics.get("parameters"), (int, float)) else "",
        "gflops": _num(metrics.get("gflops_per_window")),
        "train_samples_per_s": _num(metrics.get("train_samples_per_s")),
        "infer_frames_per_s": _num(metrics.get("inference_frames_per_s")),
        "node": metrics.get("node", ""),
        "mlflow_run": run_id or "",
    }
    return out


def _num(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v


def rank(rows: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """Best first; trials without a finite objective last."""
    sign = -1.0 if mode == "max" else 1.0
    return sorted(rows, key=lambda r: (not math.isfinite(r["objective"]), sign * r["objective"] if math.isfinite(r["objective"]) else 0.0))


def write(directory: Path, rows: list[dict[str, Any]], note: str = "") -> None:
    """leaderboard.csv (all trials) beside the sweep; written to a temp file, then renamed."""
    if not rows:
        return
    tmp = directory / "leaderboard.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(directory / "leaderboard.csv")
    md = directory / "leaderboard.md.tmp"
    md.write_text(markdown(rows, None, note) + "\n")
    md.replace(directory / "leaderboard.md")


def markdown(rows: list[dict[str, Any]], space: SweepSpace | None, note: str = "") -> str:
    """A Markdown table (the first TOP rows when printed at the end of a sweep), and a note under it."""
    if not rows:
        return "no trials finished"
    cols = [c for c in rows[0] if c != "mlflow_run"]

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    title = f"top {len(rows)} by {space.tune.objective} ({space.tune.mode}):\n" if space else ""
    return title + "\n".join(lines) + (f"\n\n{note}" if note else "")
