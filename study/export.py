"""Best trial -> export directory (bubbles.bundle), and the MLflow model registry with a `champion` alias."""

from __future__ import annotations

import csv
import json
import math
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from bubbles.bundle import CLIMATOLOGY, BundleInfo, write_bundle
from bubbles.config import TrialConfig, from_json
from bubbles.errors import UserError
from bubbles.evaluation.cost import ModelCost, static_cost
from bubbles.evaluation.evaluate import Evaluation, training_mean_frame
from bubbles.evaluation.verdict import TEST_VERDICT, Verdict
from bubbles.models import build_model, check_state_shapes
from bubbles.training.config import best_by_mode
from bubbles.training.train import COST
from bubbles.data.framesize import format_image_size
from bubbles.data.store import FrameStore
from bubbles.data.windows import split_segments
from bubbles.data.splits import make_splits

from study.tracking import PARENT_FILE, download_file, read_parent, register_export, run_name, trial_files
from study.yardstick import NO_TEST, SHOWN, TEST, VALIDATION

# The epoch metric and the end-of-trial evaluation's name for the same number (same windows, same formula).
OBJECTIVE_METRIC = {
    "val_ssim": "final_ssim", "val_mse": "final_mse", "val_psnr": "final_psnr", "val_skill_vs_persistence": "final_skill_vs_persistence",
    "val_bubble_f1": "final_bubble_f1", "val_iou": "final_iou",
}


def objective_of(evaluation: Evaluation | None, objective: str, validation: dict[str, float] | None = None) -> float:
    """The objective as the evaluation of the exported weights measured it (NaN without an evaluation); a yardstick
    objective from the yardstick's validation means."""
    if objective.startswith("yardstick_"):
        return float((validation or {}).get(objective.removeprefix("yardstick_"), math.nan))
    # final_iou is in the summary of masks only (an IoU objective on grey frames: NaN here, as nothing recorded it)
    return evaluation.summary().get(OBJECTIVE_METRIC[objective], math.nan) if evaluation is not None else math.nan


@dataclass
class Chosen:
    """A trained model picked for export."""

    cfg: TrialConfig
    state: dict
    evaluation: Evaluation | None
    objective_name: str
    objective: float
    mode: str
    source: str
    run_id: str | None = None  # the trial's MLflow run, when the model came from one
    cost: ModelCost | None = None  # as the trial measured it
    yardstick: dict = field(default_factory=dict)  # BundleInfo.yardstick: validation (selection) and test (unbiased)
    verdict: Verdict | None = None  # which baselines it beats per lead on the test split (when it was scored there)

    @property
    def test_line(self) -> str:
        """What the export says of its test score: the number, or why there is none."""
        test = self.yardstick.get(TEST)
        if isinstance(test, dict):
            metric = self.objective_name.removeprefix("yardstick_") if self.objective_name.startswith("yardstick_") else "ssim"
            beats = f"; {self.verdict.sentence()}" if self.verdict is not None else ""
            return f"{TEST}: yardstick_{metric} {test.get(metric, math.nan):.4f}{beats}"
        return f"{TEST}: {test}" if test else ""


    def warnings(self) -> list[str]:
        """A line when the chosen model's test skill is negative at any lead: it loses to a free forecast there."""
        if self.verdict is None or self.verdict.beats_all:
            return []
        return [f"warning: on the test split this model is worse than a baseline at some lead: {self.verdict.sentence()}"]


def _yardstick_record(path: Path) -> tuple[str, dict[str, float]]:
    """(protocol line, validation means) of a trial's yardstick.json; ('', {}) without one."""
    if not path.is_file():
        return "", {}
    try:
        data = json.loads(path.read_text())
        p, means = data["protocol"], {("skill_vs_strongest" if k == "skill" else k): float(v) for k, v in data["means"].items()}
    except (ValueError, KeyError, TypeError):
        return "", {}
    return (f"protocol: leads {', '.join(map(str, p['leads']))} at {p['size'][0]}x{p['size'][1]} px on "
            f"{len(data['windows'])} validation windows (targets after {p['context']} context frames)"), means


def from_checkpoint_dir(directory: Path) -> Chosen:
    """A `train` output directory (or its checkpoint/ folder): best.pt and, beside it, evaluation.json."""
    candidates = [directory / "best.pt", directory / "checkpoint" / "best.pt"]
    best = next((p for p in candidates if p.is_file()), None)
    if best is None:
        raise UserError(f"{directory}: no best.pt here or in checkpoint/")
    try:
        with warnings.catch_warnings():  # a refused pickle is the one line below, not torch's warning with its path
            warnings.simplefilter("ignore")
            state = torch.load(best, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(f"{best}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), str) or "model" not in state:
        raise UserError(f"{best}: a checkpoint without its config or weights (not written by `train`?)")
    cfg = from_json(state["config"])
    check_state_shapes(cfg.model_name, cfg.model, state["model"], str(best))
    evaluation = None
    for path in (best.parent / "evaluation.json", best.parent.parent / "evaluation.json"):
        if path.is_file():
            evaluation = Evaluation.from_dict(json.loads(path.read_text()))
            break
    cost = None
    for path in (best.parent / COST, best.parent.parent / COST):
        if path.is_file():
            try:
                cost = ModelCost.from_dict(json.loads(path.read_text()))
            except (ValueError, KeyError, TypeError):
                pass  # a damaged cost record: the export counts parameters and FLOPs itself
            break
    protocol, validation = "", {}
    for path in (best.parent / "yardstick.json", best.parent.parent / "yardstick.json"):
        if path.is_file():
            protocol, validation = _yardstick_record(path)
            break
    yardstick = {"protocol": protocol, VALIDATION: validation,
                 TEST: "not scored (only a sweep scores its best trials on the test split, once, after the sweep)"} if validation else {}
    objective = cfg.train.best_by
    return Chosen(cfg, state["model"], evaluation, objective, objective_of(evaluation, objective, validation), best_by_mode(objective),
                  f"checkpoint {best}", cost=cost, yardstick=yardstick)


def from_run(uri: str, run_id: str, objective: str | None = None) -> Chosen:
    """An MLflow trial run: its checkpoints/best.pt and evaluation.json artifacts. The objective shown is the one
    the evaluation of these weights measured: best.pt was picked by the sweep's objective, so it is also the
    leaderboard's value."""
    with tempfile.TemporaryDirectory() as tmp:
        run_name, metrics, tags, checkpoints, evaluation = trial_files(uri, run_id, Path(tmp))
        chosen = from_checkpoint_dir(checkpoints)
        chosen.evaluation = Evaluation.from_dict(json.loads(evaluation.read_text()))
        record = download_file(run_id, "yardstick.json", Path(tmp))
        protocol, validation = _yardstick_record(record) if record else ("", {})  # none: a run logged before the yardstick
        scored = download_file(run_id, "yardstick_test.json", Path(tmp))  # the test pass's per-lead record
        if scored is not None:
            chosen.verdict = Verdict.of(json.loads(scored.read_text()))
    test = _test_scores(metrics)
    if validation:
        chosen.yardstick = {"protocol": protocol, VALIDATION: validation, TEST: test or _why_no_test(chosen.cfg)}
        if chosen.verdict is not None:
            chosen.yardstick[TEST_VERDICT] = chosen.verdict.sentence()
    if objective is not None:
        chosen.objective_name, chosen.mode = objective, best_by_mode(objective)
        chosen.objective = objective_of(chosen.evaluation, objective, validation)
    chosen.source = f"MLflow run {run_id} ({run_name})"
    if "gflops_per_window" in metrics and "parameters" in metrics:
        chosen.cost = ModelCost.from_dict(metrics | {"device": tags.get("cost_device", "unknown")})
    chosen.run_id = run_id
    return chosen


def _test_scores(metrics: dict[str, float]) -> dict[str, float]:
    """A trial run's test-split means: test_<metric> (test_yardstick_<metric> and test_yardstick_skill in runs logged
    before the names said what they compare against)."""
    from bubbles.evaluation.yardstick import METRICS

    old = {"skill_vs_strongest": "test_yardstick_skill"}
    return {k: metrics.get(f"test_{k}", metrics.get(old.get(k, f"test_yardstick_{k}"))) for k in METRICS
            if f"test_{k}" in metrics or old.get(k, f"test_yardstick_{k}") in metrics}


def _why_no_test(cfg: TrialConfig) -> str:
    """The line that stands where a test score would: the study has no test split, or this trial was not scored."""
    split = cfg.data.split
    if split.test or split.test_fraction > 0:
        return "not scored: only the best trials by validation (evaluate.test_top_k) are scored on the test split"
    return NO_TEST


def best_run_of_sweep(sweep_dir: Path) -> tuple[str, str, float]:
    """(run id, objective, leaderboard value) of the best completed trial: the first completed row of the sweep's
    leaderboard, so the export is the winner the user saw."""
    marker = sweep_dir / PARENT_FILE
    board = sweep_dir / "leaderboard.csv"
    if not marker.is_file() or not board.is_file():
        raise UserError(f"{sweep_dir}: no finished sweep here (no {PARENT_FILE} / leaderboard.csv)")
    parent = read_parent(sweep_dir)
    with board.open() as f:
        rows = [r for r in csv.DictReader(f) if r["status"] == "completed" and r.get("mlflow_run")]
    if not rows:
        raise UserError(f"sweep {sweep_dir.name!r} has no completed trial to export")
    objective = parent.get("objective", "val_ssim")
    try:
        value = float(rows[0]["objective"])
    except (TypeError, ValueError):
        raise UserError(f"{board}: the best row's objective {rows[0]['objective']!r} is not a number") from None
    if not isinstance(objective, str):
        raise UserError(f"{sweep_dir / PARENT_FILE}: objective {objective!r} is not a metric name")
    return rows[0]["mlflow_run"], objective, value


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def export(chosen: Chosen, out: Path, onnx: bool, note: Callable[[str], None] = _stderr) -> Path:
    """Write the export directory for a chosen model; `note` gets one line for each part it could not include."""
    model = build_model(chosen.cfg.model_name, chosen.cfg.model)
    model.load_state_dict(chosen.state)
    fingerprint, val, climatology = "unavailable", (), None
    try:
        store = FrameStore.open(chosen.cfg.data.store)
    except UserError as exc:
        # The store may live elsewhere (a cluster path): the export still stands on its own, without the baseline.
        note(f"export: no {CLIMATOLOGY} (predict will lack the climatology baseline): {exc}")
    else:
        fingerprint = store.fingerprint()
        val = tuple(sorted({store.sequences[n].condition_id for n, _, _ in split_segments(store, chosen.cfg.data.split).val}))
        try:
            splits = make_splits(chosen.cfg.data, chosen.cfg.window, store)
        except UserError as exc:  # the store is there but the trained splits cannot be rebuilt: never half an export
            raise UserError(f"export: cannot rebuild the splits the model was trained on from {store.path}: {exc}") from None
        climatology = training_mean_frame(splits)
        if climatology is None:
            note(f"export: no {CLIMATOLOGY}: no training frames at the evaluated {splits.frame_size[0]}x{splits.frame_size[1]} "
                 "(tiles of other sizes only); predict will lack the climatology baseline")
    cost = chosen.cost or static_cost(model, chosen.cfg.window.input_len, chosen.cfg.window.output_len)
    info = BundleInfo(chosen.objective_name, chosen.objective, chosen.source, fingerprint, val, cost, chosen.yardstick)
    return write_bundle(out, model, chosen.cfg, info, chosen.evaluation, onnx=onnx, climatology=climatology)


def register(uri: str, name: str, bundle: Path, chosen: Chosen) -> tuple[str, bool, str]:
    """Register the export directory as a version of `name` (study.tracking.register_export), linked to the trial
    run it came from; `champion` moves to it if it is better on the same objective. Returns (version, became
    champion, why not)."""
    from bubbles.bundle import example_input

    x = example_input(chosen.cfg).numpy()
    y = np.zeros((x.shape[0], chosen.cfg.window.output_len, chosen.cfg.model.out_channels, *x.shape[3:]), dtype=np.float32)
    tags: dict[str, str] = {}
    for score, key in ((VALIDATION, "yardstick"), (TEST, "test")):
        means = chosen.yardstick.get(score)
        if isinstance(means, dict):  # the leaderboard's names: yardstick_ssim, test_skill_vs_strongest, ...
            tags |= {f"{key}_{k}": f"{v:.6g}" for k, v in means.items() if k in SHOWN}
        elif means:
            tags[key] = str(means)[:250]
    if chosen.verdict is not None:
        tags["test_beats_all_baselines"] = "yes" if chosen.verdict.beats_all else "no"
        tags["test_against_baselines"] = chosen.verdict.sentence()[:250]
    return register_export(uri, name, bundle, chosen.source, chosen.run_id,
                           (chosen.objective_name, chosen.objective, chosen.mode), (x, y), tags,
                           model_name=run_name(chosen.cfg), description=version_description(name, bundle, chosen))


def version_description(name: str, bundle: Path, chosen: Chosen) -> str:
    """The registry version's description (Markdown): what the model is, its objective, validation and test scores
    side by side, the data and window it was trained on, and how to predict with it."""
    cfg = chosen.cfg
    lines = [f"**{run_name(cfg)}** — {cfg.model_name}, {cfg.window.input_len} frames in → {cfg.window.output_len} out "
             f"at {format_image_size(cfg.data.image_size)} px; from {chosen.source}.", "",
             f"Objective: `{chosen.objective_name}` = {chosen.objective:.4f} ({chosen.mode}).", ""]
    scores = {label: chosen.yardstick.get(label) for label in (VALIDATION, TEST)}
    shown = [k for k in ("ssim", "mse", "bubble_f1", "skill")
             if any(isinstance(v, dict) and k in v for v in scores.values())]
    if shown:
        lines += ["| split | " + " | ".join(shown) + " |", "|---|" + "---|" * len(shown)]
        for label, means in scores.items():
            if isinstance(means, dict):
                lines.append(f"| {label} | " + " | ".join(_cell(means.get(k)) for k in shown) + " |")
        lines.append("")
    for label, means in scores.items():
        if means and not isinstance(means, dict):
            lines.append(f"{label}: {means}")
    lines += [f"Data: `{cfg.data.store}`, split by {cfg.data.split.kind}; window {cfg.window.input_len}→"
              f"{cfg.window.output_len}.", "", "Predict:", "",
              f"    bubbles-study predict {bundle} --store {cfg.data.store} --sequence SEQUENCE --out pred/{name}",
              f"    mlflow.pyfunc.load_model('models:/{name}/<this version>').predict(frames)"]
    return "\n".join(lines)


def _cell(v: object) -> str:
    return f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else "—"
