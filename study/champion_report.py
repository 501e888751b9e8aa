"""The report's first section: the champion (by the space's rule) against every baseline, lead by lead, on the test
split, and the trials scored there on skill against bubble F1 with their Pareto front (issue 27)."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from study.pareto import pareto_front
from study.yardstick import YARDSTICK_DIR


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def section(rows: list[dict[str, str]], sweep_dir: Path, out: Path, png: Callable[[Any, Path], str],
            img: Callable[[str, str], str]) -> str:
    """HTML: the champion's per-lead test MSE beside each baseline's (and which it beats), the champion rule, and the
    test-split Pareto plot of skill vs the strongest baseline against bubble F1."""
    from bubbles.evaluation.verdict import Verdict

    from bubbles.evaluation.yardstick import YardstickScore

    record = sweep_dir / YARDSTICK_DIR / "test_scores.json"
    # Through YardstickScore: records written before the skill keys were renamed read with today's names.
    scores = ({t: YardstickScore.from_dict(v) for t, v in json.loads(record.read_text()).items()}
              if record.is_file() else {})
    rule = sweep_dir / "champion.json"
    rule_line = json.loads(rule.read_text()).get("note", "") if rule.is_file() else ""
    parts = ["<h2>The champion against the baselines (test split)</h2>"]
    if rule_line:
        parts.append(f"<p>{html.escape(rule_line)}.</p>")
    if not rows or rows[0]["trial"] not in scores:
        parts.append("<p>The champion was not scored on a test split (the space holds none out, or the sweep was "
                     "interrupted): no unbiased comparison with the baselines.</p>")
        return "".join(parts)
    champion = scores[rows[0]["trial"]]
    verdict = Verdict.of(champion)
    names = list(verdict.baseline_mse)
    head = "".join(f"<th>{html.escape(n)} MSE</th>" for n in names)
    body = []
    for k, lead in enumerate(verdict.leads):
        cells = "".join(f"<td>{verdict.baseline_mse[n][k]:.5f}</td>" for n in names)
        lost = [n for n in names if not verdict.model_mse[k] < verdict.baseline_mse[n][k]]
        body.append(f"<tr><td>{lead}</td><td>{verdict.model_mse[k]:.5f}</td>{cells}"
                    f"<td>{_num(champion.per_lead.get('skill_vs_strongest', [math.nan] * len(verdict.leads))[k]):+.3f}</td>"
                    f"<td>{html.escape('loses to ' + ', '.join(lost) if lost else 'beats all')}</td></tr>")
    parts.append(f"<p>Champion {html.escape(rows[0]['trial'])} ({html.escape(str(rows[0].get('model', '')))}): "
                 f"{html.escape(verdict.sentence())}.</p><table><tr><th>lead</th><th>champion MSE</th>{head}"
                 f"<th>skill_vs_strongest</th><th>verdict</th></tr>{''.join(body)}</table>")
    tested = [(t, s) for t, s in scores.items()]
    means = [s.means() for _, s in tested]
    points = [(-_num(m.get("skill_vs_strongest")), _num(m.get("bubble_f1"))) for m in means]
    finite = [i for i, (a, b) in enumerate(points) if math.isfinite(a) and math.isfinite(b)]
    if len(finite) >= 1:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        pts = [points[i] for i in finite]
        front = {finite[i] for i in pareto_front(pts, "max")}
        fig, ax = plt.subplots(figsize=(6, 4))
        for i in finite:
            x, y = -points[i][0], points[i][1]
            ax.scatter([x], [y], s=120 if i in front else 40, facecolors="none" if i not in front else "C1", edgecolors="k")
            ax.annotate(tested[i][0][:8], (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
        xs = sorted((-points[i][0], points[i][1]) for i in front)
        ax.plot([p[0] for p in xs], [p[1] for p in xs], "k--", lw=1, label="Pareto front (test split)")
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel("skill vs the strongest baseline, mean over leads (test; > 0 beats them)")
        ax.set_ylabel("bubble F1, mean over leads (test)")
        ax.legend(fontsize=8)
        parts.append("<p>The trials scored on the test split: skill against bubble F1; filled: on the Pareto front "
                     "(no other trial is better on both).</p>" + img(png(fig, out / "pareto_test.png"), "Pareto front on the test split"))
    return "".join(parts)
