"""The study report: one self-contained HTML page (PNGs embedded, and written beside it) about a finished sweep."""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from bubbles.errors import UserError  # noqa
from bubbles.outputs import check_output_dir, replace_dir, temp_sibling  # noqa: E402
from study.pareto import COST_COLUMNS, cost_section  # noqa: E402
from study.sweep import OPTUNA_DB, PARENT_FILE, read_parent  # noqa: E402
from study.tracking import SweepRun, configure, download_folder, metric_history  # noqa: E402

WHY = {
    "stopped_early": "ASHA stopped it: its objective was below the rung's cutoff (or the time budget ended)",
    "collapsed": "its predictions collapsed to a near-static picture (collapse score < 0.3)",
    "nan": "its loss became NaN",
    "errored": "the trial raised an error",
    "unfinished": "the sweep was interrupted before it finished",
}


def _read_leaderboard(sweep_dir: Path) -> list[dict[str, str]]:
    path = sweep_dir / "leaderboard.csv"
    if not path.is_file():
        raise UserError(f"{sweep_dir}: no leaderboard.csv (has the sweep run to its end?)")
    with path.open() as f:
        return list(csv.DictReader(f))


def _png(fig: Any, path: Path) -> str:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(path.read_bytes()).decode()


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


MIN_FANOVA_TRIALS = 8  # below this fANOVA's forest fits noise, and importances of 0 or 1 mean nothing


def _importances(sweep_dir: Path, name: str) -> tuple[dict[str, float], str]:
    """fANOVA importances over completed trials, and a note: why there are none, or which parameters never varied
    (those are left out: fANOVA gives them 0, which reads as 'does not matter' when it was never tried)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / OPTUNA_DB}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < MIN_FANOVA_TRIALS:
        return {}, f"Not computed: fANOVA needs at least {MIN_FANOVA_TRIALS} completed trials, this sweep has {len(complete)}."
    seen: dict[str, set[str]] = {}
    for t in complete:
        for k, v in t.params.items():
            seen.setdefault(k, set()).add(repr(v))
    fixed = sorted(k for k, values in seen.items() if len(values) == 1)
    varied = [k for k in seen if k not in fixed]
    note = f"Never varied among completed trials (no importance): {', '.join(fixed)}." if fixed else ""
    try:
        imp = optuna.importance.get_param_importances(study, params=varied, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as exc:
        return {}, f"Not available: {str(exc)[:120]}"
    return dict(imp), note


def write_report(uri: str, sweep_dir: Path, out: Path) -> Path:
    """Write out/index.html and its PNGs (replacing only an earlier report there), log them to the sweep's parent
    run; returns the HTML path."""
    out = out.resolve()
    check_output_dir(out, "report")
    tmp = temp_sibling(out)
    try:
        parent_run_id = _write_page(uri, sweep_dir, tmp)
        replace_dir(tmp, out, "report")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    SweepRun(parent_run_id).log_report(out)
    return out / "index.html"


def _write_page(uri: str, sweep_dir: Path, out: Path) -> str:
    """The report's files into the directory out; returns the parent run id."""
    marker = sweep_dir / PARENT_FILE
    if not marker.is_file():
        raise UserError(f"{sweep_dir}: no sweep here (no {PARENT_FILE})")
    parent = read_parent(sweep_dir)
    rows = _read_leaderboard(sweep_dir)
    name = sweep_dir.name
    configure(uri)
    objective = parent.get("objective", "val_ssim")
    sections: list[str] = []

    cols = [c for c in rows[0] if c != "mlflow_run"] if rows else []
    table = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"]
    for k, r in enumerate(rows):
        cls = ' class="best"' if k == 0 else ""
        table.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in cols) + "</tr>")
    sections.append(f"<h2>Leaderboard ({len(rows)} trials, by {objective})</h2>" + "".join(table) + "</table>")

    importances, note = _importances(sweep_dir, name)
    imp_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in importances.items())
    sections.append("<h2>Parameter importances (Optuna fANOVA, completed trials)</h2>"
                    + (f"<table><tr><th>parameter</th><th>importance</th></tr>{imp_rows}</table>" if importances else "")
                    + (f"<p>{html.escape(note)}</p>" if note else ""))

    measured = ("trial", "status", "objective", "epochs_trained", "node", "ssim_lead1", "ssim_last", "skill_persistence", "bubble_f1", *COST_COLUMNS)
    params = [c for c in cols if c not in measured]
    if params:
        fig, axes = plt.subplots(1, len(params), figsize=(3.2 * len(params), 3), squeeze=False)
        for ax, p in zip(axes[0], params):
            shown = [r for r in rows if r[p] != "" and _finite(r["objective"])]
            xs = [_num_or_str(r[p]) for r in shown]
            ys = [float(r["objective"]) for r in shown]
            colors = ["C0" if r["status"] == "completed" else "C3" for r in shown]
            if all(isinstance(x, float) for x in xs):
                ax.scatter(xs, ys, c=colors)
                if p in ("lr", "weight_decay") and min(xs, default=0) > 0:
                    ax.set_xscale("log")
                    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(numticks=4))
                    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlapped
                    ax.tick_params(axis="x", labelrotation=30)
            else:
                labels = sorted({str(x) for x in xs})
                ax.scatter([labels.index(str(x)) for x in xs], ys, c=colors)
                ax.set_xticks(range(len(labels)), labels, rotation=30)
            ax.set_xlabel(p)
        axes[0][0].set_ylabel(objective)
        sections.append("<h2>Objective against each parameter</h2><p>blue: completed, red: stopped early / failed</p>"
                        + _img(_png(fig, out / "objective_vs_params.png"), "objective vs parameters"))

    sections.append(cost_section(rows, objective, parent.get("mode", "max"), out, _png, _img, _fmt))

    top = [r for r in rows if r["status"] == "completed" and r.get("mlflow_run")][:3]
    # Lines over leads need trials that predict more than one frame: the best three of those (finished or stopped).
    multi = [r for r in rows if r.get("mlflow_run") and len(metric_history(r["mlflow_run"], "lead/ssim")) > 1][:3]
    if top and not multi:
        sections.append("<h2>Per-lead-time curves</h2><p>No evaluated trial predicts more than one frame: no curve over leads.</p>")
    if multi:
        fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 3.6))
        for k, r in enumerate(multi):
            for ax, metric in ((a1, "ssim"), (a2, "psnr")):
                hist = metric_history(r["mlflow_run"], f"lead/{metric}")
                base = metric_history(r["mlflow_run"], f"lead/persistence_{metric}")
                ax.plot([m[0] for m in hist], [m[1] for m in hist], "o-", color=f"C{k}", label=f"trial {r['trial']}")
                ax.plot([m[0] for m in base], [m[1] for m in base], "x--", color=f"C{k}", alpha=0.5, label=f"persistence ({r['trial']})")
            for metric, style in (("bubble_f1", "o-"), ("sharpness", "s:")):
                hist = metric_history(r["mlflow_run"], f"lead/{metric}")
                a3.plot([m[0] for m in hist], [m[1] for m in hist], style, color=f"C{k}", label=f"{metric} ({r['trial']})")
        for ax, label in ((a1, "SSIM"), (a2, "PSNR dB"), (a3, "bubble F1 (—), sharpness (···)")):
            ax.set_xlabel("lead time (frames ahead)")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_ylabel(label)
        a1.legend(fontsize=7)
        a3.legend(fontsize=7)
        sections.append("<h2>Per-lead-time SSIM and PSNR of the best multi-frame trials against persistence; bubble F1 and "
                        "sharpness ratio (1 = as sharp as the target, a blur is well below)</h2>"
                        + _img(_png(fig, out / "lead_curves.png"), "per-lead curves"))
    if top:
        with tempfile.TemporaryDirectory() as tmp:
            strips = [p for p in download_folder(top[0]["mlflow_run"], "strips", Path(tmp)) if p.suffix == ".png"]
            imgs = []
            for s in strips:
                target = out / f"best_{s.name}"
                target.write_bytes(s.read_bytes())
                imgs.append(_img(base64.b64encode(target.read_bytes()).decode(), s.name))
        sections.append(f"<h2>Prediction strips of the best trial ({html.escape(top[0]['trial'])})</h2><p>rows: input / target / output / |error|</p>" + "".join(imgs))

    odd = [r for r in rows if r["status"] != "completed"]
    why = "".join(f"<tr><td>{html.escape(r['trial'])}</td><td>{html.escape(r['status'])}</td><td>{r['epochs_trained']}</td>"
                  f"<td>{html.escape(WHY.get(r['status'], r['status']))}</td></tr>" for r in odd)
    sections.append("<h2>Trials that did not complete</h2><table><tr><th>trial</th><th>status</th><th>epochs</th><th>why</th></tr>" + why + "</table>")

    epochs = sum(int(r["epochs_trained"] or 0) for r in rows)
    seconds = _trial_seconds(sweep_dir)
    sections.append(f"<h2>Compute spent</h2><p>{len(rows)} trials, {epochs} epochs, {seconds / 60:.1f} trial-minutes "
                    f"(Ray's time_total_s summed over trials).</p>")

    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Sweep {html.escape(name)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px}}tr.best{{background:#e6f4ea}}img{{max-width:100%}}</style></head>
<body><h1>Sweep <code>{html.escape(name)}</code></h1>
<p>Objective {html.escape(objective)} ({html.escape(parent.get('mode', 'max'))}); MLflow parent run <code>{html.escape(parent['run_id'])}</code>.</p>
{''.join(sections)}</body></html>"""
    (out / "index.html").write_text(page)
    return str(parent["run_id"])


def _trial_seconds(sweep_dir: Path) -> float:
    total = 0.0
    for result in sweep_dir.glob("*/result.json"):
        lines = [line for line in result.read_text().splitlines() if line.strip()]
        if lines:
            total += float(json.loads(lines[-1]).get("time_total_s", 0.0))
    return total


def _finite(v: str) -> bool:
    try:
        return math.isfinite(float(v))
    except ValueError:
        return False


def _num_or_str(v: str) -> float | str:
    try:
        return float(v)
    except ValueError:
        return v


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    try:
        f = float(v)
        return v if f.is_integer() else f"{f:.4g}"
    except (TypeError, ValueError):
        return str(v)
