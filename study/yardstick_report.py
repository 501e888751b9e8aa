"""The report's yardstick sections: validation against test for the top trials, per-lead curves of the top trials
and the baselines on the protocol's frames, and what won by window, size and family."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from study.tracking import metric_history  # noqa: E402
from study.yardstick import NO_TEST, SHOWN, TEST, VALIDATION, YARDSTICK_DIR, strongest_recorded  # noqa: E402

TOP_CURVES = 3
GROUPS = ("window", "image_size", "model")
BASELINE_STYLE = {"persistence": "k--", "median": "k:", "climatology": "k-.", "flow": "k-"}


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def protocol_line(sweep_dir: Path) -> str:
    """One sentence saying what the yardstick is in this sweep (empty for a sweep made before it)."""
    path = sweep_dir / YARDSTICK_DIR / "protocol.json"
    if not path.is_file():
        return ""
    p = json.loads(path.read_text())
    strongest = strongest_recorded(sweep_dir)
    return (f"Every trial is scored on the same validation windows (first target after {p['context']} context frames, one "
            f"every {p['stride']} frames, at most {p['windows'] or 'all'}), at leads {', '.join(map(str, p['leads']))}, at "
            f"{p['size'][0]}x{p['size'][1]} px: shorter outputs are rolled out on their own predictions, smaller frames "
            f"resized up before any metric. The baselines ({', '.join(p['baselines'])}) were scored once on the same frames."
            + (f" skill_vs_strongest is 1 - MSE / MSE of the strongest baseline at each lead ({strongest})." if strongest else ""))


def sections(rows: list[dict[str, str]], sweep_dir: Path, out: Path, objective: str,
             png: Callable[[Any, Path], str], img: Callable[[str, str], str], fmt: Callable[[Any], str]) -> list[str]:
    """HTML sections (empty for a sweep without yardstick columns)."""
    if not rows or "yardstick_ssim" not in rows[0]:
        return []
    out_sections = [f"<h2>The yardstick</h2><p>{html.escape(protocol_line(sweep_dir))}</p>"]
    out_sections.append(_validation_vs_test(rows, sweep_dir, objective, fmt))
    out_sections.append(_curves(rows, out, png, img))
    out_sections.append(_what_won(rows, objective, fmt))
    return [s for s in out_sections if s]


def _validation_vs_test(rows: list[dict[str, str]], sweep_dir: Path, objective: str, fmt: Callable[[Any], str]) -> str:
    tested = [r for r in rows if math.isfinite(_num(r.get("test_ssim")))]
    head = f"<h2>{html.escape(VALIDATION.capitalize())} and {html.escape(TEST)}</h2>"
    if not tested:
        why = NO_TEST if not (sweep_dir / YARDSTICK_DIR / "test_scores.json").is_file() else "no trial was scored on the test split"
        return head + f"<p>{html.escape(why)}</p>"
    metric = objective.removeprefix("yardstick_") if objective.startswith("yardstick_") else "ssim"
    cols = [c for k in SHOWN for c in (f"yardstick_{k}", f"test_{k}")]
    table = ["<table><tr><th>trial</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + f"<th>test − validation ({metric})</th></tr>"]
    gaps = []
    for r in tested:
        gap = _num(r.get(f"test_{metric}")) - _num(r.get(f"yardstick_{metric}"))
        gaps.append(gap)
        table.append(f"<tr><td>{html.escape(r['trial'])}</td>" + "".join(f"<td>{fmt(_num(r.get(c)))}</td>" for c in cols)
                     + f"<td>{gap:+.4f}</td></tr>")
    mean = sum(gaps) / len(gaps)
    text = (f"<p>For the top {len(tested)} trials by validation, the test {metric} differs from the validation {metric} "
            f"by {mean:+.4f} on average (from {min(gaps):+.4f} to {max(gaps):+.4f}). The validation score chose them, so it "
            f"tends to flatter the winner; the test score was read once, after the sweep, and also differs as its held-out "
            f"sequences differ from the validation ones.</p>")
    return head + text + "".join(table) + "</table>"


def _curves(rows: list[dict[str, str]], out: Path, png: Callable[[Any, Path], str], img: Callable[[str, str], str]) -> str:
    top = [r for r in rows if r.get("mlflow_run") and math.isfinite(_num(r.get("yardstick_ssim")))][:TOP_CURVES]
    if not top:
        return ""

    def history(run: str, name: str) -> tuple[list[int], list[float]]:
        points = metric_history(run, name)
        return [step for step, _ in points], [value for _, value in points]

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), sharex=True)
    for k, r in enumerate(top):
        shape = " ".join(str(r[k]) + ("px" if k == "image_size" else "") for k in ("model", "window", "image_size") if r.get(k))
        label = f"{r['trial']} ({shape})" if shape else r["trial"]
        for ax, metric in zip(axes, ("ssim", "mse", "bubble_f1")):
            ax.plot(*history(r["mlflow_run"], f"yardstick_lead/{metric}"), "o-", color=f"C{k}", label=label)
    for b, style in BASELINE_STYLE.items():
        for ax, metric in zip(axes, ("ssim", "mse", "bubble_f1")):
            steps, values = history(top[0]["mlflow_run"], f"yardstick_lead/{b}_{metric}")
            if steps:
                ax.plot(steps, values, style, alpha=0.7, label=b)
    for ax, name in zip(axes, ("SSIM", "MSE per pixel", "bubble F1")):
        ax.set_xlabel("lead time (frames ahead)")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    handles, names = axes[0].get_legend_handles_labels()  # below the panels, never over a curve
    axes[0].legend(handles, names, fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=2, frameon=False)
    return ("<h2>Per-lead curves on the protocol's frames: the top trials and the baselines (validation)</h2>"
            + img(png(fig, out / "yardstick_leads.png"), "yardstick per-lead curves"))


def _what_won(rows: list[dict[str, str]], objective: str, fmt: Callable[[Any], str]) -> str:
    """For each window, image size and family: trials, the best objective on the yardstick, and the trial."""
    scored = [r for r in rows if math.isfinite(_num(r.get("objective")))]
    if not scored:
        return ""
    sign = -1.0 if objective.endswith("mse") else 1.0
    parts = []
    for group in GROUPS:
        if group not in scored[0]:
            continue
        values: dict[str, list[dict[str, str]]] = {}
        for r in scored:
            values.setdefault(str(r[group]), []).append(r)
        best = sorted(values.items(), key=lambda kv: -sign * max(sign * _num(r["objective"]) for r in kv[1]))
        lines = "".join(
            f"<tr><td>{html.escape(v)}</td><td>{len(rs)}</td>"
            f"<td>{fmt(max((_num(r['objective']) for r in rs), key=lambda x: sign * x))}</td>"
            f"<td>{html.escape(max(rs, key=lambda r: sign * _num(r['objective']))['trial'])}</td></tr>"
            for v, rs in best)
        parts.append(f"<table><tr><th>{group}</th><th>trials</th><th>best {html.escape(objective)}</th><th>trial</th></tr>{lines}</table>")
    return ("<h2>What won, by window, size and family (on the yardstick)</h2><p>Best first; every value is on the same "
            "frames at the same resolution, so windows and sizes compare.</p>" + "<br>".join(parts))
