"""What a user sees first in MLflow's UI after a sweep: the runs table opened on the sweep's trials, ranked by the
objective with the comparable columns shown (a shared view, stored as an experiment tag), and the parent run's
description holding the top-5 table with links to the trials."""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

from study.tracking.store import configure, experiment_id

# MLflow 3.17's UI reads a runs-table view from the experiment tag mlflow.sharedViewState.<key> when the page's URL
# has ?viewStateShareKey=<key>: the search facets (filter, order) and the table's UI state (columns, order).
SHARED_VIEW_TAG = "mlflow.sharedViewState."
NOTE_TAG = "mlflow.note.content"  # the run's description (Markdown) in MLflow's UI
TOP = 5
# The leaderboard's columns the description shows when present (first match of each group), besides the objective.
DESCRIPTION_COLUMNS = (("model",), ("window",), ("image_size",),
                       ("test_skill_vs_strongest", "test_skill_unbiased", "test_ssim", "test_ssim_unbiased"),
                       ("yardstick_skill_vs_strongest", "skill_vs_strongest", "val_skill_selection", "skill_vs_persistence"),
                       ("yardstick_bubble_f1", "bubble_f1", "val_bubble_f1_selection"), ("beats_all_baselines",),
                       ("loses_from_lead",))


def _key(type_: str, name: str) -> str:
    """A column of MLflow's runs table, as its UI names it (e.g. metrics.`final_yardstick_ssim`)."""
    return f"{type_}.`{name}`"


def view_columns(metric_keys: set[str], objective: str) -> tuple[str, list[str]]:
    """(the metric to sort by, the metric columns to show) among the metrics the sweep's trial runs hold: the
    objective's trial-end value, its test-split value, skill and bubble F1 (validation, then test)."""
    metric = objective.removeprefix("yardstick_")
    sort = next((k for k in (f"final_{objective}", objective, f"epoch/{objective}") if k in metric_keys), f"final_{objective}")
    wanted = [sort, f"test_{metric}", f"test_{objective}", f"test_yardstick_{metric}"]
    for part in ("skill", "bubble_f1"):
        wanted += sorted(k for k in metric_keys if k.startswith(("final_yardstick_", "test_")) and part in k)
    return sort, [k for k in dict.fromkeys(wanted) if k in metric_keys]


def sweep_view_link(uri: str, experiment: str, parent_run_id: str, sweep: str, objective: str, mode: str) -> str:
    """Store the sweep's runs-table view in its experiment and return the link that opens it: only this sweep's
    trial runs (not the collapsed parent), ranked by the objective, the objective, test score, skill and bubble F1
    as the first columns, then the family, window and size. A local sqlite store gets the `mlflow ui` command."""
    import mlflow

    configure(uri)
    client = mlflow.MlflowClient()
    exp = experiment_id(experiment, uri)
    children = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=200)
    metric_keys = {k for r in children for k in r.data.metrics}
    param_keys = {k for r in children for k in r.data.params}
    sort, metrics = view_columns(metric_keys, objective)
    params = [p for p in ("model", "input_len", "output_len", "image_size", "lr") if p in param_keys]
    columns = [_key("metrics", m) for m in metrics] + [_key("params", p) for p in params]
    state = {
        "searchFilter": f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        "orderByKey": _key("metrics", sort),
        "orderByAsc": mode == "min",
        "selectedColumns": columns,  # what is not given here keeps the UI's defaults (it merges them in)
        "columnOrder": columns,
        "runListHidden": False,
        "viewMaximized": False,
    }
    key = f"sweep-{sweep}"
    client.set_experiment_tag(exp, SHARED_VIEW_TAG + key, json.dumps(state))
    path = f"#/experiments/{exp}/runs?viewStateShareKey={quote(key)}&workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{path}"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1, then http://127.0.0.1:5000/{path}"


def sweep_description(rows: list[dict[str, Any]], experiment: str, objective: str, mode: str) -> str:
    """The parent run's description (Markdown): the top TOP trials with links to their runs and the comparable
    columns, best first, as the leaderboard ranks them."""
    if not rows:
        return "No trial finished."
    shown = [next(c for c in group if c in rows[0]) for group in DESCRIPTION_COLUMNS if any(c in rows[0] for c in group)]
    head = ["#", "trial", f"objective ({objective}, {mode})", "status", *shown]
    lines = [f"**Top {min(TOP, len(rows))} of {len(rows)} trials by {objective}** ({'higher' if mode == 'max' else 'lower'}"
             " is better; the leaderboard.csv artifact has every trial and column).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k, r in enumerate(rows[:TOP], 1):
        trial = f"[{r['trial']}](#/experiments/{experiment}/runs/{r['mlflow_run']})" if r.get("mlflow_run") else str(r["trial"])
        cells = [str(k), trial, _cell(r.get("objective")), str(r.get("status", "")), *(_cell(r.get(c)) for c in shown)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else f"{v:.4g}"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "" if v is None else str(v).replace("|", "/")
    if not math.isfinite(f):
        return "—"
    return str(v) if f.is_integer() else f"{f:.4g}"
