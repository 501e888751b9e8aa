"""The sweep's console lines (study.console) for each trial event, and the short leaderboard, without Ray running."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

from study.console import TrialEvents, short_leaderboard
from study.yardstick import column_notes
from study.space import load_space

SPACE = """
data: {{store: {store}, split: condition, val_fraction: 0.34}}
fixed: {{loss: mse_mean, batch_size: 8, layers: 1, hidden: 4, image_size: 16, window: "4->1"}}
search:
  lr: {{type: log, low: 1.0e-3, high: 1.0e-2}}
  epochs: {{type: int, low: 2, high: 4}}
tune: {{objective: val_ssim, num_samples: 4}}
tracking: {{experiment: console-test}}
"""


def _trial(tid: str, last: dict | None = None) -> SimpleNamespace:
    return SimpleNamespace(trial_id=f"run_trial_{tid}", config={"lr": 5e-3, "epochs": 4}, last_result=last or {},
                           error_file=f"/sweeps/x/run_trial_{tid}/error.txt")


def test_one_line_per_trial_event(tiny_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(SPACE.format(store=tiny_store))
    space = load_space(path)
    lines: list[str] = []
    events = TrialEvents(space, lines.append)
    events.on_trial_start(0, [], _trial("aaaa1111"))
    running = {"objective": 0.61234, "epoch": 1, "epochs_planned": 4, "trial_status": "running"}
    events.on_trial_result(0, [], _trial("aaaa1111"), running)
    events.on_trial_complete(0, [], _trial("aaaa1111", {**running, "epoch": 2, "objective": 0.7}))
    events.on_trial_complete(0, [], _trial("bbbb2222", {"objective": 0.9, "epoch": 4, "epochs_planned": 4, "trial_status": "completed"}))
    events.on_trial_complete(0, [], _trial("cccc3333", {"objective": 0.2, "epoch": 3, "epochs_planned": 4, "trial_status": "collapsed"}))
    events.on_trial_complete(0, [], _trial("dddd4444", {"objective": -1e9, "epoch": 1, "epochs_planned": 4, "trial_status": "nan"}))
    events.on_trial_error(0, [], _trial("eeee5555"))
    events.on_trial_recover(0, [], _trial("ffff6666"))
    text = [line.split("] ", 1)[1] for line in lines]
    assert all(line.startswith("[00:0") for line in lines)
    assert text == [
        "trial aaaa1111 started: convlstm-L1-h4-16px-4to1-lr5e-03-aaaa1111",
        "trial aaaa1111 epoch 1/4: val_ssim 0.6123",
        "trial aaaa1111 stopped by ASHA after epoch 2/4: val_ssim 0.7000",
        "trial bbbb2222 finished after 4 epochs: val_ssim 0.9000",
        "trial cccc3333 stopped: collapsed (predicts one static picture) at epoch 3; val_ssim 0.2000",
        "trial dddd4444 stopped: NaN at epoch 1",
        "trial eeee5555 failed; the error is in /sweeps/x/run_trial_eeee5555/error.txt",
        "trial ffff6666 lost its worker; restarting from its last checkpoint",
    ]
    assert events.started == 1
    # The leaderboard: the deciding columns only, aligned, best first as given.
    rows = [{"trial": "run_trial_bbbb2222", "status": "completed", "objective": 0.9, "epochs_trained": 4,
             "skill_vs_persistence": 0.31, "bubble_f1": 0.8, "gflops": 0.01, "lr": 5e-3, "mlflow_run": "abc"},
            {"trial": "run_trial_aaaa1111", "status": "stopped_early", "objective": 0.7, "epochs_trained": 2,
             "skill_vs_persistence": math.nan, "bubble_f1": 0.5, "gflops": 0.01, "lr": 2e-3, "mlflow_run": "def"}]
    notes = column_notes(True, 3, "flow", "", interrupted=True)
    board = short_leaderboard(rows, space, notes).splitlines()
    assert board[0].startswith("top 2 by val_ssim (max)")
    assert board[1].split() == ["#", "trial", "model", "status", "val_ssim", "epochs_trained", "skill_vs_persistence", "bubble_f1", "gflops"]
    assert board[2].split() == ["1", "bbbb2222", "convlstm", "completed", "0.9", "4", "0.31", "0.8", "0.01"]
    assert board[3].split() == ["2", "aaaa1111", "convlstm", "stopped_early", "0.7", "2", "0.5", "0.01"]  # NaN skill: blank
    # Footnotes only for the columns shown: no yardstick_* or test_* column here (an interrupted sweep), so no line
    # describes one; the absence of test scores is said.
    below = board[4:]
    assert [line.split(":")[0] for line in below] == ["objective", "skill_vs_persistence", "bubble_f1", "no test scores yet"]
    assert "abc" not in "\n".join(board)
    # With the test columns, their note and the strongest baseline each skill is measured against, named.
    rows[0] |= {"test_ssim": 0.6, "test_skill_vs_strongest": -0.2}
    notes = column_notes(True, 3, "flow", "flow at leads 1-2, persistence at 3")
    board = short_leaderboard(rows, space, notes).splitlines()
    assert board[1].split()[-2:] == ["test_ssim", "test_skill_vs_strongest"]
    said = "\n".join(board[4:])
    assert "test_*:" in said and "yardstick_*" not in said
    assert "(on validation: flow; on test: flow at leads 1-2, persistence at 3)" in said
