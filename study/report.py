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
from study.sweep_dir import OPTUNA_DB  # noqa: E402
from study.tracking import PARENT_FILE, SweepRun, configure, download_folder, metric_history, read_parent, run_params  # noqa: E402
from study import champion_report, yardstick_report  # noqa: E402

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
    """fANOVA importances and a note saying what they are over, or why there are none and what would give them.

    Over completed trials when there are MIN_FANOVA_TRIALS of them. Otherwise (ASHA stops most trials of a short
    sweep early) over every trial's objective at the latest epoch that enough trials reached — the rung ASHA itself
    compares them at. Only parameters every one of those trials has and that took more than one value count:
    fANOVA gives a never-varied parameter 0, which would read as 'does not matter' when it was never tried, and
    a family's own parameters exist only in that family's trials."""
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / OPTUNA_DB}")
    # A multi-objective study (tune.objectives): importances for the first objective, the one the leaderboard ranks by.
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.values]
    if len(complete) >= MIN_FANOVA_TRIALS:
        used = [optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.values[0]) for t in complete]
        over = f"over the {len(complete)} completed trials' objective"
    else:
        scored = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
        steps = sorted({s for t in scored for s in t.intermediate_values}, reverse=True)
        step = next((s for s in steps if sum(s in t.intermediate_values for t in scored) >= MIN_FANOVA_TRIALS), None)
        if step is None:
            return {}, (f"Not computed: fANOVA needs the objective of at least {MIN_FANOVA_TRIALS} trials at a common "
                        f"epoch; this sweep has {len(complete)} completed and {len(scored)} scored trials. More trials "
                        f"would give it: a sweep with a larger tune.num_samples (under a new --name).")
        used = [optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.intermediate_values[step])
                for t in scored if step in t.intermediate_values]
        over = (f"over {len(used)} trials' objective at epoch {step}, the latest epoch that {MIN_FANOVA_TRIALS} or more "
                f"trials reached (only {len(complete)} completed: ASHA stopped the others early)")
    shared = set.intersection(*(set(t.params) for t in used))
    values = {k: {repr(t.params[k]) for t in used} for k in shared}
    varied = sorted(k for k in shared if len(values[k]) > 1)
    left_out = sorted(k for k in shared if len(values[k]) == 1)
    notes = [f"Importances {over}."]
    if left_out:
        notes.append(f"Never varied among them (no importance): {', '.join(left_out)}.")
    family = sorted(set().union(*(set(t.params) for t in used)) - shared)
    if family:
        notes.append(f"Parameters only some of them have (a family's own) are left out: {', '.join(family)}.")
    if not varied:
        return {}, " ".join(notes + ["No parameter varied: nothing to rank."])
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created in memory" line in the report
    ranked = optuna.create_study(direction=study.directions[0])
    ranked.add_trials(used)
    try:
        imp = optuna.importance.get_param_importances(ranked, params=varied, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (ValueError, RuntimeError) as exc:
        return {}, f"Not available: {str(exc)[:120]}"
    return dict(imp), " ".join(notes)


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
    params = cols[cols.index("status") + 1 : cols.index("objective")] if "status" in cols and "objective" in cols else []
    # The objective next to the trial id: it is what the table is ranked by, and it must show without scrolling.
    shown_cols = ["trial", "objective", *[c for c in cols if c not in ("trial", "objective")]] if cols else []
    table = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in shown_cols) + "</tr>"]
    for k, r in enumerate(rows):
        cls = ' class="best"' if k == 0 else ""
        table.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in shown_cols) + "</tr>")
    sections.append(champion_report.section(rows, sweep_dir, out, _png, _img))
    sections.append(f"<h2>Leaderboard ({len(rows)} trials, by {objective})</h2><div class=\"wide\">" + "".join(table)
                    + "</table></div>" + _undefined_note(rows, shown_cols))
    sections += yardstick_report.sections(rows, sweep_dir, out, objective, _png, _img, _fmt)

    importances, note = _importances(sweep_dir, name)
    imp_rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in importances.items())
    sections.append("<h2>Parameter importances (Optuna fANOVA)</h2>"
                    + (f"<table><tr><th>parameter</th><th>importance</th></tr>{imp_rows}</table>" if importances else "")
                    + (f"<p>{html.escape(note)}</p>" if note else ""))

    sampled = [p for p in params if any(r[p] != "" and _finite(r["objective"]) for r in rows)]
    unsampled = [p for p in params if p not in sampled]
    if sampled:
        absent = (f" No panel for {', '.join(unsampled)}: no scored trial sampled them (a family's own parameters exist "
                  "only in that family's trials)." if unsampled else "")
        sections.append(f"<h2>Objective against each sampled parameter ({len(sampled)})</h2><p>One panel per parameter, "
                        f"each dot a trial that has it: blue completed, red stopped early / failed.{html.escape(absent)}</p>"
                        + _img(_png(_param_grid(rows, sampled, objective), out / "objective_vs_params.png"),
                               "objective vs " + ", ".join(sampled)))

    sections.append(cost_section(rows, objective, parent.get("mode", "max"), out, _png, _img, _fmt))

    top = [r for r in rows if r["status"] == "completed" and r.get("mlflow_run")][:3]
    # Lines over leads need trials that predict more than one frame: the best three of those (finished or stopped).
    multi = [r for r in rows if r.get("mlflow_run") and len(metric_history(r["mlflow_run"], "lead/ssim")) > 1][:3]
    if top and not multi:
        sections.append("<h2>Per-lead-time curves</h2><p>No evaluated trial predicts more than one frame: no curve over leads.</p>")
    if multi:
        labels = [_label(r) for r in multi]
        windows = sorted({label.split(" ")[-1] for label in labels})
        sections.append(f"<h2>Per-lead curves of the best {len(multi)} multi-frame trials ({html.escape(', '.join(labels))})"
                        "</h2><p>On each trial's own validation windows: SSIM and PSNR with the persistence forecast on "
                        f"the same frames (one dashed grey curve for each window length among them: "
                        f"{html.escape(', '.join(windows))}); bubble F1 (solid) and sharpness ratio (dotted; 1 = as sharp "
                        "as the target, a blur is well below). A trial's own picture of its curves beside every baseline "
                        "is in its MLflow run (lead_curves.png).</p>"
                        + _img(_png(_lead_figure(multi), out / "lead_curves.png"), "per-lead curves"))
    if top:
        with tempfile.TemporaryDirectory() as tmp:
            strips = [p for p in download_folder(top[0]["mlflow_run"], "strips", Path(tmp)) if p.suffix == ".png"][:3]
            imgs = []
            for s in strips:
                target = out / f"best_{s.name}"
                target.write_bytes(s.read_bytes())
                imgs.append(_img(base64.b64encode(target.read_bytes()).decode(), s.name))
        sections.append(f"<h2>Prediction strips of the best trial ({html.escape(_label(top[0]))})</h2><p>rows: input / target / "
                        "output / |error|; columns: the time of each frame (t = the last input frame, t+1 … the leads)</p>" + "".join(imgs))

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
td,th{{border:1px solid #ccc;padding:3px 6px}}tr.best{{background:#e6f4ea}}img{{max-width:100%}}
div.wide{{overflow-x:auto}}td:first-child,th:first-child{{position:sticky;left:0;background:inherit}}</style></head>
<body><h1>Sweep <code>{html.escape(name)}</code></h1>
<p>Objective {html.escape(objective)} ({html.escape(parent.get('mode', 'max'))}); MLflow parent run <code>{html.escape(parent['run_id'])}</code>.</p>
{''.join(sections)}</body></html>"""
    (out / "index.html").write_text(page)
    return str(parent["run_id"])


PARAM_COLUMNS = 4  # plots per row: each stays about 3.6 inches wide, legible at the page's width


def _param_grid(rows: list[dict[str, str]], params: list[str], objective: str) -> Any:
    """The objective against each searched parameter: one small plot each, in rows of PARAM_COLUMNS."""
    ncols = min(PARAM_COLUMNS, len(params))
    nrows = math.ceil(len(params) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(params):]:
        ax.set_visible(False)
    for ax, p in zip(axes.flat, params):
        shown = [r for r in rows if r[p] != "" and _finite(r["objective"])]
        xs = [_num_or_str(r[p]) for r in shown]
        ys = [float(r["objective"]) for r in shown]
        colors = ["C0" if r["status"] == "completed" else "C3" for r in shown]
        numeric = bool(xs) and all(isinstance(x, float) for x in xs)
        if numeric and not (all(float(x).is_integer() for x in xs) and len(set(xs)) <= 6):
            ax.scatter(xs, ys, c=colors)
            if p in ("lr", "weight_decay") and min(xs, default=0) > 0:
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
                ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlapped
        else:  # names, or a few whole numbers (layers, widths, sizes): one column per value
            keys = sorted({x for x in xs}, key=lambda x: (isinstance(x, str), x))
            labels = [f"{x:g}" if isinstance(x, float) else str(x) for x in keys]
            ax.scatter([keys.index(x) for x in xs], ys, c=colors)
            ax.set_xticks(range(len(labels)), labels)
            ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        ax.set_title(p, fontsize=10)
        ax.set_ylabel(objective, fontsize=8)
    fig.tight_layout()
    return fig


def _label(row: dict[str, str]) -> str:
    """'4eac4238 convlstm 8→3': trial id, family, window (from the trial's MLflow params)."""
    params = run_params(row["mlflow_run"]) if row.get("mlflow_run") else {}
    family = params.get("model", row.get("model", ""))
    window = f"{params['input_len']}→{params['output_len']}" if "input_len" in params else row.get("window", "").replace("->", "→")
    return " ".join(x for x in (row["trial"], family, window) if x)


def _lead_figure(trials: list[dict[str, str]]) -> Any:
    """SSIM and PSNR per lead of each trial, one persistence curve per window length (persistence depends only on
    the frames, so trials of one window share it), and bubble F1 / sharpness."""
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 3.8))
    persisted: set[str] = set()
    for k, r in enumerate(trials):
        label = _label(r)
        window = label.split(" ")[-1]
        for ax, metric in ((a1, "ssim"), (a2, "psnr")):
            hist = metric_history(r["mlflow_run"], f"lead/{metric}")
            ax.plot([m[0] for m in hist], [m[1] for m in hist], "o-", color=f"C{k}", label=label)
            if window not in persisted:
                base = metric_history(r["mlflow_run"], f"lead/persistence_{metric}")
                ax.plot([m[0] for m in base], [m[1] for m in base], "x--", color="gray", alpha=0.4 + 0.3 * len(persisted),
                        label=f"persistence ({window})")
        persisted.add(window)
        for metric, style in (("bubble_f1", "o-"), ("sharpness", "s:")):
            hist = metric_history(r["mlflow_run"], f"lead/{metric}")
            a3.plot([m[0] for m in hist], [m[1] for m in hist], style, color=f"C{k}", label=f"{metric} ({label})")
    for ax, label in ((a1, "SSIM"), (a2, "PSNR dB"), (a3, "bubble F1 (—), sharpness (···)")):
        ax.set_xlabel("lead time (frames ahead)")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    # Legends below the panels, never over a curve: trials and persistence (shared by SSIM and PSNR), then F1/sharpness.
    handles, names = a1.get_legend_handles_labels()
    a1.legend(handles, names, fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=1, frameon=False)
    handles, names = a3.get_legend_handles_labels()
    a3.legend(handles, names, fontsize=8, loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=1, frameon=False)
    fig.tight_layout()
    return fig


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


UNDEFINED = "—"  # a number that has no value (never the literal nan): the note under the table says why
# Why a leaderboard number can be undefined, by column (what the page says once, under the table).
WHY_UNDEFINED = {
    "bubble_f1": "no bubble was detected in the trial's validation targets nor in its predictions, so there is nothing "
                 "to match (F1 = 2·TP / (2·TP + FP + FN) is 0/0)",
    "objective": "the trial reported no objective (it failed before its first validation)",
}


def _undefined_note(rows: list[dict[str, str]], cols: list[str]) -> str:
    """One line naming the columns shown with a dash and why each has no value."""
    hit = [c for c in cols if any(_is_nan(r.get(c)) for r in rows)]
    if not hit:
        return ""
    def why(c: str) -> str:
        if c in WHY_UNDEFINED:
            return WHY_UNDEFINED[c]
        if c.startswith("test_"):
            return "only the best trials by validation (evaluate.test_top_k) are scored on the test split"
        return "not measured for these trials"

    parts = [f"{c} ({sum(_is_nan(r.get(c)) for r in rows)} trials): {why(c)}" for c in hit]
    return f"<p>{UNDEFINED} = undefined. " + html.escape("; ".join(parts)) + ".</p>"


def _is_nan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return False


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return UNDEFINED if math.isnan(v) else f"{v:.4g}"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isnan(f):
        return UNDEFINED
    return v if f.is_integer() else f"{f:.4g}"


def report_sweep(sweep_name: str, out: Path, storage: Path) -> Path:
    """`report`: the HTML report of the finished sweep named `sweep_name` under `storage`, written into `out`
    (refused if `out` is not ours) and logged to the sweep's parent run; the page's path."""
    from study.sweep_dir import finished_sweep_dir
    from study.tracking import check_tracking, sweep_dirs_named, tracking_uri

    check_output_dir(out.resolve(), "report")
    uri = tracking_uri(Path.cwd())
    check_tracking(uri)
    sweep_dir = finished_sweep_dir(storage.resolve(), sweep_name, sweep_dirs_named(uri, sweep_name))
    return write_report(uri, sweep_dir, out.resolve())
