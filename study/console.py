"""What a sweep prints: one line per trial event and a short leaderboard (Ray's status tables only with --verbose)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback

from study.space import SweepSpace
from study.tracking import run_name

# The leaderboard columns a user decides by; leaderboard.csv and MLflow hold all of them.
SHORT_COLUMNS = ("status", "objective", "epochs_trained", "skill_vs_persistence", "bubble_f1", "gflops")
TEST_COLUMNS = ("test_ssim", "test_skill_vs_strongest", "beats_all_baselines", "loses_from_lead")  # with a test split: scored once after the sweep


# Ray Tune's own lines that contradict or repeat ours: its resume hint names Tuner.restore (ours is the command line),
# and an interrupted trial without results is already a row marked "unfinished".
_RAY_LINES = {"ray.tune.tune": ("Experiment has been interrupted", "Training has been interrupted"),
              "ray.tune.analysis.experiment_analysis": ("Failed to fetch metrics",)}


def quiet_ray_tune() -> None:
    """Drop Ray Tune's log lines that the sweep's own lines replace (kept with --verbose)."""
    import logging

    for name, starts in _RAY_LINES.items():
        logger = logging.getLogger(name)
        if not any(getattr(f, "bubbles", False) for f in logger.filters):
            drop = logging.Filter()
            drop.filter = lambda record, starts=starts: not str(record.msg).startswith(starts)  # type: ignore[method-assign]
            drop.bubbles = True  # type: ignore[attr-defined]
            logger.addFilter(drop)


class OneLineTrialErrors(logging.Filter):
    """Tune logs a failed trial's whole traceback (about 90 lines through Ray's worker) on the console: keep one
    line with the error itself; the traceback stays in the trial's error.txt (named in Tune's closing table)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and str(record.msg).startswith("Trial task failed"):
            text = str(record.exc_info[1]).strip()
            last = text.splitlines()[-1] if text else type(record.exc_info[1]).__name__
            record.msg, record.args = f"{record.getMessage()}: {last[:300]} (traceback in the trial's error.txt)", ()
            record.exc_info = record.exc_text = None
        return True


def short_id(trial_id: str) -> str:
    """Tune's trial id as the run names end with it ('run_trial_1dfa84a5' -> '1dfa84a5')."""
    return trial_id.rsplit("_", 1)[-1]


class TrialEvents(Callback):
    """Prints one line per trial event on the driver: started (with its MLflow run name), each epoch's objective,
    stopped by ASHA, finished, collapsed / NaN, failed, restarted after a lost worker."""

    def __init__(self, space: SweepSpace, echo: Callable[[str], None]) -> None:
        self.space = space
        self.echo = echo
        self.began = time.monotonic()
        self.started = 0  # trials started by this driver (0 after fit(): the sweep had nothing left to run)

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config (callbacks included) into the sweep's state; the driver's echo stays here.
        return {**self.__dict__, "echo": print}

    def _say(self, text: str) -> None:
        elapsed = int(time.monotonic() - self.began)
        self.echo(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {text}")

    def _objective(self, result: dict[str, Any]) -> str:
        value = result.get("objective")
        name = self.space.tune.objective
        return f"{name} {value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else f"{name} n/a"

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.started += 1
        try:
            name = run_name(self.space.trial_config(dict(trial.config), f"trial {trial.trial_id}"), trial.trial_id)
        except Exception:  # the trial itself reports a bad config; the line is only a label
            name = short_id(trial.trial_id)
        self._say(f"trial {short_id(trial.trial_id)} started: {name}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if result.get("trial_status", "running") == "running":
            self._say(f"trial {short_id(trial.trial_id)} epoch {result.get('epoch')}/{result.get('epochs_planned')}: "
                      f"{self._objective(result)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        epoch, planned = result.get("epoch", 0), result.get("epochs_planned", 0)
        status = result.get("trial_status")
        tid = short_id(trial.trial_id)
        if status == "nan":
            self._say(f"trial {tid} stopped: NaN at epoch {epoch}")
        elif status == "collapsed":
            self._say(f"trial {tid} stopped: collapsed (predicts one static picture) at epoch {epoch}; {self._objective(result)}")
        elif epoch < planned:
            self._say(f"trial {tid} stopped by ASHA after epoch {epoch}/{planned}: {self._objective(result)}")
        else:
            name = self.space.tune.objective
            final = result.get(f"final_{name}")  # a yardstick objective: best.pt on all the protocol's windows
            if isinstance(final, (int, float)) and math.isfinite(final):
                self._say(f"trial {tid} finished after {epoch} epoch{'s' if epoch != 1 else ''}: {name} {final:.4f} "
                          f"(best.pt on every protocol window; the leaderboard ranks by it)")
            else:
                self._say(f"trial {tid} finished after {epoch} epoch{'s' if epoch != 1 else ''}: {self._objective(result)}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = getattr(trial, "error_file", None) or getattr(trial, "path", "")
        self._say(f"trial {short_id(trial.trial_id)} failed; the error is in {error}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._say(f"trial {short_id(trial.trial_id)} lost its worker; restarting from its last checkpoint")


def short_leaderboard(rows: list[dict[str, Any]], space: SweepSpace, notes: list[tuple[str, str]] | None = None,
                      top: int = 5) -> str:
    """The top rows with the columns that decide: rank, trial, model family, status, objective, epochs, skill against
    persistence, bubble F1, forward GFLOPs per window, and the unbiased test scores where the sweep has them; under
    it, the notes (study.yardstick.column_notes) of the columns it shows, and only those."""
    from study.yardstick import notes_for

    if not rows:
        return "no trials finished"
    tested = [c for c in TEST_COLUMNS if any(_finite(r.get(c)) or r.get(c) in ('yes', 'no') for r in rows[:top])]
    columns = [*SHORT_COLUMNS, *tested]
    head = ["#", "trial", "model", *columns]
    head[head.index("objective")] = space.tune.objective
    table = [head]
    for i, r in enumerate(rows[:top], 1):
        table.append([str(i), short_id(str(r["trial"])), str(r.get("model", "") or _fixed_model(space))]
                     + [_fmt(r.get(c, "")) for c in columns])
    widths = [max(len(row[k]) for row in table) for k in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    more = f" (all {len(rows)} trials and every column: leaderboard.csv, and MLflow)" if len(rows) > top else " (every column: leaderboard.csv, and MLflow)"
    note = notes_for([*columns, space.tune.objective], notes or [])
    return (f"top {min(top, len(rows))} by {space.tune.objective} ({space.tune.mode}){more}:\n" + "\n".join(lines)
            + (f"\n{note}" if note else ""))


def _fixed_model(space: SweepSpace) -> str:
    """The model of a row without one: the space's fixed model; '?' when the model is searched (never a guess)."""
    if any(d.name == "model" for d in space.dimensions):
        return "?"
    return str(space.base.get("model", "convlstm"))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)
