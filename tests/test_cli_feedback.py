"""What the CLI tells the user: --set wins over the file's window, windows per sequence per split with a warning for
a held-out condition that gives none, and a singular "1 sequence"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bubbles.config import override, trial_config
from bubbles.data.store import SequenceMeta, write_store
from bubbles.errors import UserError
from cli import main
from study.config import load_trial_config


def test_set_wins_over_the_files_window(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("window: '20->1'\n")
    cfg = load_trial_config(path, ["input_len=4", "output_len=3"])
    assert (cfg.window.input_len, cfg.window.output_len) == (4, 3)
    assert load_trial_config(path, ["input_len=4"]).window.output_len == 1  # the other half of the file's window
    assert load_trial_config(path, ["window=5->2"]).window.input_len == 5
    with pytest.raises(UserError, match="give one or the other"):
        override({}, {"window": "4->1", "input_len": 3})
    assert trial_config(override({"input_len": 9, "output_len": 9}, {"window": "4->1"})).window.input_len == 4


def test_short_held_out_sequence_is_listed_and_warned(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    seqs = [(n, rng.integers(0, 255, (t, 16, 16), dtype=np.uint8), SequenceMeta("test", condition={"run": n}))
            for n, t in [("long1", 30), ("long2", 30), ("short", 6)]]
    write_store(tmp_path / "s.zarr", iter(seqs))
    path = tmp_path / "t.yaml"
    path.write_text(f"store: {tmp_path / 's.zarr'}\nimage_size: 16\nwindow: '6->1'\nsplit: sequence\nval: [long2, short]\n"
                    "layers: 1\nhidden: 4\n")
    result = CliRunner().invoke(main, ["train", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "val windows per sequence: long2 24, short 0" in result.output
    # 24 windows of 7 frames, 1 frame apart: said to overlap, with how many share no frame (30 // 7 = 4).
    assert "(these 24 windows, 1 frame apart, overlap: about 4 of them share no frame" in result.output
    assert "warning: val condition" in result.output and "short: 6 frames" in result.output
    assert "long2: 30" not in result.output  # conditions that give windows are not warned about
    inspect = CliRunner().invoke(main, ["inspect", str(tmp_path / "s.zarr")])
    assert "(3 sequences," in inspect.output
    write_store(tmp_path / "one.zarr", iter(seqs[:1]))
    assert "(1 sequence," in CliRunner().invoke(main, ["inspect", str(tmp_path / "one.zarr")]).output
