"""The end of a sweep as functions of its trial records (study.records.TrialRecord), none of which needs MLflow:
early-stopped trials scored on the full protocol by the driver from their checkpoints, the ranking, the test-split
pass and the leaderboard. What goes to MLflow afterwards (study.sweep) only reports what these decided."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from study import leaderboard
from study.console import short_id
from study import yardstick as ys
from study.records import TrialRecord
from study.space import SweepSpace

EVALUATED_DIR = "evaluated"  # in the sweep directory: <trial id>.json, the full-protocol score of a stopped trial


def score_stopped(records: list[TrialRecord], yardstick: Any, sweep_dir: Path,
                  echo: Any = None) -> tuple[list[TrialRecord], dict[str, Any]]:
    """Early-stopped trials with a best.pt get the same end-of-trial evaluation as a finished one (the validation
    split's every protocol window, the trial's own windows, strips), by the driver from the checkpoint: their
    ranking never depends on MLflow answering. Scores are kept in the sweep directory (a resumed sweep reads them
    back). Returns the records with `validation` filled in, and trial id -> (config, TrialResult) of those evaluated now
    (their files under evaluated/<trial id>/, for MLflow; drop_evaluated removes them once logged)."""
    from bubbles.evaluation.yardstick import YardstickScore
    from bubbles.training.train import evaluate_checkpoint_dir

    out, fresh = [], {}
    for record in records:
        if record.outcome != "stopped_early" or record.best_pt is None or record.validation:
            out.append(record)
            continue
        kept = sweep_dir / EVALUATED_DIR / f"{record.trial_id}.json"
        if kept.is_file():
            means = YardstickScore.from_dict(json.loads(kept.read_text())).means()
        else:
            work = sweep_dir / EVALUATED_DIR / record.trial_id
            if echo is not None:  # a few seconds per trial: said, so that the minutes after the last trial are not silent
                echo(f"trial {short_id(record.trial_id)}: stopped early; evaluating its best.pt on every validation window ...")
            cfg, result = evaluate_checkpoint_dir(record.checkpoint, work, yardstick=yardstick)  # type: ignore[arg-type]
            means = result.yardstick.means() if result.yardstick is not None else {}
            if result.yardstick is not None:
                tmp = kept.with_suffix(".tmp")
                tmp.write_text(json.dumps(result.yardstick.to_dict()))
                tmp.replace(kept)
            fresh[record.trial_id] = (cfg, result)
        out.append(replace(record, validation=means))
    return out, fresh


def drop_evaluated(sweep_dir: Path, trial_id: str) -> None:
    """The files of a stopped trial's evaluation, once MLflow has them (or its spool does); its score stays."""
    shutil.rmtree(sweep_dir / EVALUATED_DIR / trial_id, ignore_errors=True)


def ranking_objective(record: TrialRecord, space: SweepSpace) -> float:
    """What a trial is ranked by: for a yardstick objective, best.pt on every protocol window (the per-epoch value
    is on a subset of them) when known, for every trial alike; otherwise the best per-epoch objective."""
    name = space.tune.objective
    if name.startswith("yardstick_"):
        value = record.validation.get(name.removeprefix("yardstick_"), math.nan)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return record.best_epoch_objective(space.tune.mode)


def ranked_rows(records: list[TrialRecord], space: SweepSpace, run_ids: dict[str, str]) -> list[dict[str, Any]]:
    """The leaderboard's rows, best first. run_ids: the MLflow run shown per trial ('' when none is known)."""
    rows = [leaderboard.row(r.trial_id, run_ids.get(r.trial_id, ""), r.outcome, r.config, r.metrics,
                            ranking_objective(r, space), space, ys.columns(r.validation, None)) for r in records]
    return leaderboard.rank(rows, space.tune.mode)


def interrupted(records: list[TrialRecord], space: SweepSpace) -> bool:
    """A sweep with an unfinished trial, or fewer trials than asked for without a time budget, was interrupted."""
    return any(r.outcome == "unfinished" for r in records) or (
        len(records) < space.tune.num_samples and space.tune.time_budget_s is None)


def test_pass(space: SweepSpace, protocol: Any, sweep_dir: Path, ranked: list[dict[str, Any]], records: list[TrialRecord],
              echo: Any) -> tuple[dict[str, Any], set[str]]:
    """The test split, read once after every trial has finished (nothing before chose on it): the best test_top_k
    by validation scored on it, their test_ columns added to `ranked`. Returns (trial id -> score, scored now)."""
    from bubbles.evaluation.verdict import Verdict

    checkpoints = {r.trial_id: r.best_pt for r in records if r.best_pt is not None}
    scored, new = ys.test_pass(space, protocol, sweep_dir, ranked, checkpoints, echo)
    for row in ranked:
        if row["trial"] in scored:
            row.update({k: v for k, v in ys.columns(None, scored[row["trial"]].means()).items() if k.startswith("test_")})
            row.update(Verdict.of(scored[row["trial"]]).columns())
    return scored, new
