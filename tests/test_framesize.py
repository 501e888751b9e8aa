"""Non-square frames end to end: image_size as a short side or HxW, pyramid levels, windows, a ConvLSTM with frame
peepholes at H != W, export (shapes in config.json, ONNX) and predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bubbles.config import from_json, trial_config
from bubbles.data.framesize import frame_size, parse_image_size
from bubbles.data.store import FrameStore, SequenceMeta, write_store
from bubbles.data.synth import SynthConfig, synth_store
from bubbles.data.windows import DataConfig, WindowConfig
from bubbles.data.splits import make_splits
from bubbles.errors import UserError
from cli import main


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 sequences x 24 frames at 32x80 (H x W), 2 conditions."""
    path = tmp_path_factory.mktemp("wide") / "wide.zarr"
    synth_store(str(path), SynthConfig(sequences=4, frames=24, size=(32, 80), seed=2, conditions=2), workers=1)
    return path


@pytest.mark.parametrize(
    "value, expected",
    [(64, 64), ("64", 64), (64.0, 64), ("96x256", (96, 256)), ("96X256", (96, 256)), ([96, 256], (96, 256))],
)
def test_parse_image_size(value: object, expected: object) -> None:
    assert parse_image_size(value) == expected


@pytest.mark.parametrize("value", ["96x", "big", 8, "8x64", True, [1, 2, 3]])
def test_parse_image_size_rejects(value: object) -> None:
    with pytest.raises(UserError, match="image_size"):
        parse_image_size(value)


def test_short_side_keeps_the_aspect(wide_store: Path) -> None:
    store = FrameStore.open(wide_store)
    assert store.sequences["seq000"].level_sizes == ((32, 80), (16, 40))
    assert frame_size(store, 16) == (16, 40)
    assert frame_size(store, 24) == (24, 60)
    assert frame_size(store, 24, multiple=8) == (24, 64)  # 60 rounded to what the model needs
    assert frame_size(store, (16, 16)) == (16, 16)  # stretching only when asked
    with pytest.raises(UserError, match="divisible by 8"):
        frame_size(store, (20, 40), multiple=8)
    splits = make_splits(DataConfig(str(wide_store), 16), WindowConfig(4, 1))
    x, y = splits.train[0]
    assert splits.frame_size == (16, 40) and x.shape == (4, 1, 16, 40) and y.shape == (1, 1, 16, 40)
    with pytest.raises(UserError, match="larger than the native 32x80"):
        make_splits(DataConfig(str(wide_store), 40), WindowConfig(4, 1))


def test_mixed_aspects_need_hxw(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    seqs = [(n, rng.integers(0, 255, (12, h, w), dtype=np.uint8), SequenceMeta("test", condition={"k": n})) for n, h, w in
            [("a", 32, 32), ("b", 32, 64)]]
    write_store(tmp_path / "m.zarr", iter(seqs))
    store = FrameStore.open(tmp_path / "m.zarr")
    with pytest.raises(UserError, match="give image_size as HxW"):
        frame_size(store, 16)
    assert frame_size(store, (16, 32)) == (16, 32)


def test_saved_configs_keep_their_size() -> None:
    cfg = trial_config({"image_size": "24x60"})
    assert cfg.model.frame_size == (24, 60) and from_json(cfg.to_json()).data.image_size == (24, 60)
    old = json.loads(trial_config({"image_size": 32}).to_json())
    assert old["image_size"] == 32 and from_json(json.dumps(old)).frame_size == (32, 32)  # squashed before HxW
    with pytest.raises(ValueError, match="short side"):
        _ = trial_config({"image_size": 32}).frame_size


@pytest.mark.slow
def test_non_square_train_export_predict(wide_store: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "trial.yaml"
    cfg.write_text(
        f"store: {wide_store}\nimage_size: 16\nwindow: '4->2'\nlayers: 1\nhidden: 4\nepochs: 1\nbatch_size: 8\n"
        "peephole: frame\nval_fraction: 0.5\nmax_train_windows: 8\nmax_val_windows: 4\n"
    )
    runner = CliRunner()
    dry = runner.invoke(main, ["train", str(cfg), "--dry-run"])
    assert dry.exit_code == 0 and "16x40" in dry.output, dry.output
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    result = runner.invoke(main, ["train", str(cfg), "--out", str(tmp_path / "run")], env=env)
    assert result.exit_code == 0, result.output
    import mlflow

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert "-16x40px-" in run.info.run_name, run.info.run_name  # the frames it trained on, not the short side 16
    assert "epoch 1/1  train loss" in result.output and "ETA 0m00s" in result.output
    result = runner.invoke(main, ["predict", str(tmp_path / "run"), "--store", str(wide_store), "--sequence", "seq001",
                                  "--out", str(tmp_path / "p0")])
    assert result.exit_code != 0 and f"export --checkpoint {tmp_path / 'run'}" in result.output
    result = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "exp"), "--onnx"], env=env)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "exp" / "config.json").read_text())
    assert config["params"]["image_size"] == "16x40"
    assert config["input_shape"] == [1, 4, 1, 16, 40] and config["output_shape"] == [1, 2, 1, 16, 40]
    result = runner.invoke(main, ["predict", str(tmp_path / "exp"), "--store", str(wide_store), "--sequence", "seq001",
                                  "--out", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "pred" / "prediction.npy").shape == (2, 16, 40)
    result = runner.invoke(main, ["predict", str(tmp_path / "exp"), "--store", str(wide_store), "--sequence", "seq001",
                                  "--start", "21", "--out", str(tmp_path / "p2")])
    assert result.exit_code != 0 and "the last valid start is 20" in result.output


def test_run_names_say_the_frame_size_the_model_sees(wide_store: Path, tiny_store: Path) -> None:
    """Issue 32: a short side is resolved against the store (16 on 32x80 frames: 16x40), before and after training
    resolves the config; square frames keep the short form; tiles keep the short side they are cut at."""
    from study.tracking import run_name

    wide = trial_config({"store": str(wide_store), "image_size": 16, "window": "4->2", "hidden": 4, "lr": 1e-3})
    assert run_name(wide) == "convlstm-L3-h4-16x40px-4to2-lr1e-03"
    assert run_name(wide.at_frame_size((16, 40)), "run_trial_ab12cd34") == "convlstm-L3-h4-16x40px-4to2-lr1e-03-ab12cd34"
    square = trial_config({"store": str(tiny_store), "image_size": 16, "window": "4->2", "hidden": 4, "lr": 1e-3})
    assert run_name(square) == run_name(square.at_frame_size((16, 16))) == "convlstm-L3-h4-16px-4to2-lr1e-03"
    missing = trial_config({"store": str(wide_store.parent / "gone.zarr"), "image_size": 16, "window": "4->2", "hidden": 4, "lr": 1e-3})
    assert "-16px-" in run_name(missing)  # a store this process cannot read: the short side, and no error


@pytest.mark.parametrize(
    "family", [{"model": "convlstm"}, {"model": "predrnn_v2", "patch": 4, "st_hidden": 8, "st_layers": 2}, {"model": "simvp", "n_s": 4, "hid_s": 8, "hid_t": 16, "n_t": 2}]
)
def test_every_family_takes_non_square_frames(wide_store: Path, family: dict) -> None:
    import torch

    from bubbles.models import build_model
    from bubbles.models.registry import size_multiple

    cfg = trial_config({"store": str(wide_store), "image_size": 18, "window": "4->2", **family})
    splits = make_splits(cfg.data, cfg.window)
    h, w = splits.frame_size
    # A short side is rounded to what the family needs (patch 4; SimVP's two halvings), the aspect kept.
    multiple = size_multiple(cfg.model)
    assert multiple == (1 if family["model"] == "convlstm" else 4)
    assert h != w and h % multiple == 0 and w % multiple == 0 and abs(w / h - 80 / 32) < 0.4
    model = build_model(cfg.model_name, cfg.at_frame_size(splits.frame_size).model)
    x, y = splits.train[0]
    assert model(x[None], future=2).shape == y[None].shape


def test_a_patch_that_does_not_divide_the_frame_is_named(tiny_store: Path) -> None:
    """Before: 'frame size 33x33 is larger than the native 32x32', without a word about the patch."""
    with pytest.raises(UserError, match=r"image_size 32 rounds to 33x33 so that both sides divide by 3 .*patch"):
        frame_size(FrameStore.open(tiny_store), 32, 3)
