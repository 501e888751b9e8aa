"""The report's cost section: objective against forward GFLOPs with the Pareto front marked, and the best trial of
each model family (a small table). Reads only leaderboard rows."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

COST_COLUMNS = ("parameters", "gflops", "train_samples_per_s", "infer_frames_per_s")
FAMILY_COLUMNS = ("model", "trial", "status", "objective", "skill_vs_persistence", "bubble_f1", *COST_COLUMNS)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _family(row: dict[str, Any]) -> str:
    return str(row.get("model") or "(fixed model)")


def pareto_front(points: Sequence[tuple[float, float]], mode: str) -> list[int]:
    """Indices of the points (cost, objective) that no other point beats: none is at most as costly and at least as
    good with one of the two strictly better. Lower cost is better; the objective by `mode` (max or min)."""
    sign = 1.0 if mode == "max" else -1.0
    front = []
    for i, (c, o) in enumerate(points):
        if not any((c2 <= c and sign * o2 >= sign * o) and (c2 < c or sign * o2 > sign * o) for c2, o2 in points):
            front.append(i)
    return front


def family_best(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The best trial of each model family: the first completed row of each (rows are ranked), else its first row
    with a finite objective (stopped early: an early score, the status says so)."""
    best: dict[str, dict[str, Any]] = {}
    for prefer_completed in (True, False):
        for r in rows:
            family = _family(r)
            if family in best or not math.isfinite(_float(r.get("objective"))):
                continue
            if prefer_completed and r.get("status") != "completed":
                continue
            best[family] = r
    return sorted(best.values(), key=lambda r: str(r.get("model", "")))


def cost_section(rows: Sequence[dict[str, Any]], objective: str, mode: str, out: Path,
                 png: Callable[[Any, Path], str], img: Callable[[str, str], str], fmt: Callable[[Any], str]) -> str:
    """HTML: the objective-vs-GFLOPs scatter (log x; completed trials, the front joined and ringed) and the
    per-family table. png/img/fmt are the report's own helpers (save and embed a figure, format a number)."""
    shown = [r for r in rows if math.isfinite(_float(r.get("gflops"))) and math.isfinite(_float(r.get("objective")))]
    done = [r for r in shown if r.get("status") == "completed"]
    parts = ["<h2>What each trial costs: objective against forward GFLOPs per window</h2>"]
    if not done:
        parts.append("<p>No completed trial recorded its GFLOPs (a sweep from before cost was measured?).</p>")
    else:
        points = [(_float(r["gflops"]), _float(r["objective"])) for r in done]
        front = sorted(pareto_front(points, mode), key=lambda i: points[i][0])
        fig, ax = plt.subplots(figsize=(7, 4))
        families = sorted({_family(r) for r in shown})
        for k, family in enumerate(families):
            for completed in (True, False):  # stopped trials: hollow, their objective is an early one
                mine = [r for r in shown if _family(r) == family and (r.get("status") == "completed") == completed]
                if not mine:
                    continue
                ax.scatter([_float(r["gflops"]) for r in mine], [_float(r["objective"]) for r in mine], zorder=2,
                           color=f"C{k}" if completed else "none", edgecolors=f"C{k}",
                           label=family if completed else f"{family} (stopped early / failed)")
        ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "k--", lw=1, zorder=1, label="Pareto front")
        ax.scatter([points[i][0] for i in front], [points[i][1] for i in front], s=160, facecolors="none",
                   edgecolors="k", zorder=3)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlapped on short ranges
        ax.xaxis.set_major_formatter(matplotlib.ticker.LogFormatterSciNotation(labelOnlyBase=False))
        ax.set_xlabel("forward GFLOPs per predicted window (log)")
        ax.set_ylabel(f"{objective} ({'higher' if mode == 'max' else 'lower'} is better)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the dots, not on them
        on_front = ", ".join(f"{done[i]['trial']} ({done[i].get('model') or '-'}, {fmt(done[i]['gflops'])} GFLOPs)" for i in front)
        parts.append(f"<p>Filled: completed trials; hollow: stopped early or failed (an early objective, not on the "
                     f"front). Ringed and joined: the Pareto front among completed trials (no other trial is cheaper and at "
                     f"least as good): {html.escape(on_front)}.</p>" + img(png(fig, out / "objective_vs_gflops.png"), "objective vs GFLOPs"))
    best = family_best(rows)
    if best:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in FAMILY_COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c, '')))}</td>" for c in FAMILY_COLUMNS) + "</tr>" for r in best)
        parts.append(f"<h2>Best trial of each model family</h2><table><tr>{head}</tr>{body}</table>"
                     "<p>train_samples_per_s and infer_frames_per_s were measured on each trial's own device, "
                     "at its batch size, on a machine shared with the other trials.</p>")
    return "".join(parts)
