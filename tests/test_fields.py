"""Multi-field simulations: BubbleML-layout HDF5 -> a multi-field store -> trials that choose input and predicted
fields -> export -> predict, and the one-line errors on the way."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from bubbles.data.store import FrameStore, SequenceMeta, downsample2, field_names
from bubbles.errors import UserError
from bubbles.data.windows import DataConfig, FrameCache, SplitConfig, WindowConfig
from bubbles.data.splits import make_splits
from bubbles.models import build_model
from bubbles.models.convlstm import ConvLSTMConfig
from bubbles.models.predrnn_v2 import PredRNNv2Config
from bubbles.models.simvp import SimVPConfig
from cli import main

FIELDS = ("dfun", "temperature", "velx")


def _simulation(path: Path, seed: int, frames: int = 24, shape: tuple[int, int] = (32, 48), velx_shape: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """One BubbleML-layout file: a float dataset per field (T x rows x columns, row 0 next to the heater), the
    coordinate grids x and y, and the runtime-parameter tables."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    dfun = np.stack([4.0 - np.hypot(xx - w / 2 - 3 * np.sin(k / 4), yy - 1.5 * k % h) for k in range(frames)])
    fields = {
        "dfun": dfun,
        "temperature": np.exp(-yy / 6)[None] + 0.05 * (dfun > 0) + 0.01 * rng.normal(size=dfun.shape),
        "velx": 0.3 * np.sin(xx / 5)[None] * np.exp(-dfun**2 / 20),
        "vely": np.exp(-dfun**2 / 20),
        "pressure": 0.1 * rng.normal(size=dfun.shape),
    }
    if velx_shape is not None:
        fields["velx"] = rng.normal(size=(frames, *velx_shape))
    with h5py.File(path, "w") as f:
        for name, data in fields.items():
            f[name] = data.astype(np.float32)
        f["x"] = np.broadcast_to(xx / w, dfun.shape).astype(np.float32)
        f["y"] = np.broadcast_to(yy / h, dfun.shape).astype(np.float32)
        f["real-runtime-params"] = np.array([(b"ht_twall_high", 1.0)], dtype=[("name", "S32"), ("value", "f8")])
        f["int-runtime-params"] = np.array([(b"nblockx", 4)], dtype=[("name", "S32"), ("value", "i8")])
    return {k: v.astype(np.float32) for k, v in fields.items()}


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner(env=env).invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def fields_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, np.ndarray]]]:
    """Two simulations x 3 fields x 24 frames of 32x48, ingested through the CLI."""
    tmp = tmp_path_factory.mktemp("fields")
    sources = {}
    for seed, twall in enumerate((90, 100)):
        sources[f"Twall-{twall}"] = _simulation(tmp / f"Twall-{twall}.hdf5", seed)
        code, out = _run("ingest", tmp / f"Twall-{twall}.hdf5", tmp / "f.zarr", *(a for f in FIELDS for a in ("--field", f)),
                         "--condition", f"twall={twall}")
        assert code == 0, out
    return tmp / "f.zarr", sources


def test_fields_are_channels_scaled_each_by_its_own_range(fields_store: tuple[Path, dict]) -> None:
    path, sources = fields_store
    store = FrameStore.open(path)
    info = store.sequences["Twall-90"]
    assert info.fields == FIELDS and info.level_sizes == ((32, 48), (16, 24))
    level0 = store.read("Twall-90", 0)
    assert level0.shape == (24, 3, 32, 48)
    for c, name in enumerate(FIELDS):
        field = sources["Twall-90"][name].astype(np.float64)[:, ::-1]  # y up: the heater row goes to the bottom
        lo, hi = float(field.min()), float(field.max())
        assert info.meta.fields[c] == {"name": name, "scale": {"min": lo, "max": hi}}
        expected = np.rint((field / 2 - lo / 2) / (hi / 2 - lo / 2) * 255).astype(np.uint8)
        np.testing.assert_array_equal(level0[:, c], expected)
    # Each pyramid level and each in-between size holds each field on its own: no field leaks into another.
    np.testing.assert_array_equal(store.read("Twall-90", 1), np.rint(downsample2(level0)).astype(np.uint8))
    both = FrameCache(store, (24, 36)).frames("Twall-90", 0, 5)
    for c in range(3):
        alone = FrameCache(store, (24, 36))._fit(np.ascontiguousarray(level0[:5, c]))
        np.testing.assert_array_equal(both[:, c], alone)
    code, out = _run("inspect", path, "--verify")
    assert code == 0 and "dfun,temperature,velx" in out and "all checksums match" in out, out


def test_sequences_without_a_fields_record_have_one_named_field() -> None:
    assert field_names(SequenceMeta("hdf5:Twall-100.hdf5:dfun")) == ("dfun",)  # ingested before fields were recorded
    assert field_names(SequenceMeta("video:clip.mp4")) == field_names(SequenceMeta("synth")) == ("intensity",)


def test_windows_read_the_chosen_fields(fields_store: tuple[Path, dict]) -> None:
    path, _ = fields_store
    store = FrameStore.open(path)
    split = SplitConfig(kind="sequence", val=("Twall-100",))
    data = DataConfig(str(path), image_size=(32, 48), split=split, channels=("velx", "dfun"), targets=("dfun",))
    splits = make_splits(data, WindowConfig(4, 2))
    x, y = splits.train[3]
    assert x.shape == (4, 2, 32, 48) and y.shape == (2, 1, 32, 48)
    frames = store.read("Twall-90", 0, 3, 9).astype(np.float32) / 255
    np.testing.assert_allclose(x.numpy(), frames[:4, [2, 0]])
    np.testing.assert_allclose(y.numpy(), frames[4:, [0]])
    assert splits.train.target_inputs == (1,)  # dfun's own past is input 1: what its baselines forecast from
    default = make_splits(DataConfig(str(path), image_size=(32, 48), split=split), WindowConfig(4, 1))
    assert (default.channels, default.targets) == (("dfun",), ("dfun",)) and default.train[0][0].shape == (4, 1, 32, 48)


@pytest.mark.parametrize("name, cfg", [
    ("convlstm", ConvLSTMConfig(layers=1, hidden=(4,), in_channels=3, out_channels=2, frame_size=(16, 24))),
    ("predrnn_v2", PredRNNv2Config(layers=1, hidden=4, kernel=3, patch=2, in_channels=3, out_channels=2, frame_size=(16, 24))),
    ("simvp", SimVPConfig(hid_s=4, hid_t=8, n_s=2, n_t=1, input_len=4, output_len=1, in_channels=3, out_channels=2, frame_size=(16, 24))),
])
def test_every_family_takes_fields_in_and_out(name: str, cfg: object) -> None:
    model = build_model(name, cfg).eval()  # type: ignore[arg-type]
    assert model(torch.rand(2, 4, 3, 16, 24), future=1).shape == (2, 1, 2, 16, 24)
    with pytest.raises(ValueError, match="in_channels"):  # feeding 2 predicted fields back as 3 inputs
        if name == "convlstm":
            build_model(name, ConvLSTMConfig(layers=1, hidden=(4,), mode="seq2seq", in_channels=3, out_channels=2))
        model(torch.rand(2, 4, 3, 16, 24), future=3)


def _trial(tmp: Path, store: Path, **extra: object) -> Path:
    params = {"store": str(store), "split": "sequence", "val": ["Twall-100"], "image_size": "32x48", "window": "4->1",
              "layers": 1, "hidden": 4, "epochs": 1, "batch_size": 8, "loss": "mse_mean", "max_val_windows": 6} | extra
    path = tmp / "trial.yaml"
    path.write_text(json.dumps(params))
    return path


def test_bad_field_choices_are_one_line(fields_store: tuple[Path, dict], tmp_path: Path) -> None:
    path, _ = fields_store
    _simulation(tmp_path / "odd.hdf5", 3, velx_shape=(32, 40))
    np.save(tmp_path / "odd.npy", np.zeros((4, 32, 32), np.uint8))
    trial = _trial(tmp_path, path)
    cases = [
        (["ingest", tmp_path / "odd.hdf5", tmp_path / "s.zarr", "--field", "dfun", "--field", "humidity"], "no 3-D field 'humidity'"),
        (["ingest", tmp_path / "odd.hdf5", tmp_path / "s.zarr", "--field", "dfun", "--field", "velx"], "differ in shape (dfun 24x32x48, velx 24x32x40)"),
        (["ingest", tmp_path / "odd.hdf5", tmp_path / "s.zarr", "--field", "dfun", "--field", "dfun"], "--field dfun is given twice"),
        (["ingest", tmp_path / "odd.npy", tmp_path / "s.zarr", "--field", "dfun"], "--field applies to HDF5 simulations and netCDF files only"),
        (["train", trial, "--dry-run", "--set", "channels=dfun,humidity"], "has no field 'humidity' (its fields: dfun, temperature, velx)"),
        (["train", trial, "--dry-run", "--set", "channels=dfun", "--set", "target_fields=velx"], "'velx' is not among channels [dfun]"),
        (["train", trial, "--dry-run", "--set", "channels=dfun,velx", "--set", "window=4->2"], "feeds its predictions back"),
        (["train", trial, "--dry-run", "--set", "channels=dfun,dfun"], "field 'dfun' is named twice"),
    ]
    for args, message in cases:
        code, out = _run(*args)
        lines = [line for line in out.splitlines() if line.strip()]
        assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, out)
    assert not (tmp_path / "s.zarr").exists()


def test_a_sweep_checks_every_field_choice_before_ray(fields_store: tuple[Path, dict], tmp_path: Path) -> None:
    from study.space import load_space

    path, _ = fields_store
    space = tmp_path / "s.yaml"
    text = (f"data: {{store: {path}, split: sequence, val: [Twall-100]}}\n"
            "fixed: {layers: 1, hidden: 4, image_size: 32, window: '4->1'}\n"
            "search: {channels: {type: categorical, choices: ['dfun', 'dfun,temperature,velx']}}\n")
    space.write_text(text)
    assert [d.name for d in load_space(space).dimensions] == ["channels"]
    space.write_text(text.replace("dfun,temperature,velx", "dfun,pressure"))
    with pytest.raises(UserError, match="search corner channels=dfun,pressure: channels: .* has no field 'pressure'"):
        load_space(space)


@pytest.mark.slow
def test_three_fields_train_export_predict(fields_store: tuple[Path, dict], tmp_path: Path) -> None:
    path, _ = fields_store
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    trial = _trial(tmp_path, path, channels=list(FIELDS), target_fields=["dfun", "temperature"])
    code, out = _run("train", trial, "--out", tmp_path / "run", env=env)
    assert code == 0, out
    assert "per predicted field" in out and "| temperature |" in out
    evaluation = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert set(evaluation["per_field"]) == {"dfun", "temperature"}
    assert evaluation["per_field"]["dfun"]["mse"] == pytest.approx(np.mean(evaluation["model"]["mse"]))
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    run = mlflow.search_runs(experiment_names=["bubbles-train"], output_format="list")[0]
    assert {"final_mse_temperature", "final_skill_vs_persistence_dfun"} <= set(run.data.metrics)
    assert run.data.params["target_fields"] == "dfun,temperature"
    code, out = _run("export", "--checkpoint", tmp_path / "run", "--out", tmp_path / "m", env=env)
    assert code == 0, out
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["fields"] == {"inputs": list(FIELDS), "outputs": ["dfun", "temperature"]}
    assert config["input_shape"] == [1, 4, 3, 32, 48] and config["output_shape"] == [1, 1, 2, 32, 48]
    program = torch.jit.load(str(tmp_path / "m" / "model.ts"))
    assert program(torch.rand(1, 4, 3, 32, 48)).shape == (1, 1, 2, 32, 48)
    code, out = _run("predict", tmp_path / "m", "--store", path, "--sequence", "Twall-100", "--start", "5", "--out", tmp_path / "p", env=env)
    assert code == 0, out
    for field in ("dfun", "temperature"):
        files = {p.name for p in (tmp_path / "p" / "fields" / field).iterdir()}
        assert {"strip.png", "rollout.gif", "prediction.npy", "metrics.csv"} <= files
        assert np.load(tmp_path / "p" / "fields" / field / "prediction.npy").shape == (1, 32, 48)
    summary = json.loads((tmp_path / "p" / "metrics.json").read_text())
    assert set(summary["fields"]) == {"dfun", "temperature"} and summary["metrics"] == summary["fields"]["dfun"]
    np.testing.assert_array_equal(np.load(tmp_path / "p" / "prediction.npy"), np.load(tmp_path / "p" / "fields" / "dfun" / "prediction.npy"))
    code, out = _run("predict", tmp_path / "m", "--store", path, "--sequence", "Twall-100", "--steps", "3", "--autoregressive",
                     "--out", tmp_path / "q", env=env)
    assert code == 1 and "cannot become its next inputs" in out
    # --input is read through a temporary store: errors name the user's file (before: '.../input.zarr/input'), and
    # predict does not advise a --field it does not have (before: "choose a field with --field").
    np.save(tmp_path / "rgb.npy", np.random.default_rng(0).integers(0, 255, (8, 32, 48, 3), dtype=np.uint8))
    code, out = _run("predict", tmp_path / "m", "--input", tmp_path / "rgb.npy", "--out", tmp_path / "r", env=env)
    assert code == 1 and out.startswith(f"error: {tmp_path / 'rgb.npy'}: no field 'dfun'") and "input.zarr" not in out, out
    code, out = _run("predict", tmp_path / "m", "--input", path.parent / "Twall-90.hdf5", "--out", tmp_path / "r", env=env)
    assert code == 1 and "predict --input reads one-field recordings" in out and "choose a field" not in out, out


def test_the_yardstick_scores_its_field_and_a_space_predicting_several_is_refused(fields_store: tuple[Path, dict], tmp_path: Path) -> None:
    """A trial is scored on the protocol's field or not at all (it fell back to the trial's first predicted field,
    so a trial predicting temperature was ranked by dfun's score); a space whose trials predict different fields is
    one line before Ray starts."""
    from bubbles.evaluation.yardstick import Protocol, Yardstick
    from study.space import load_space

    path, _ = fields_store
    space = tmp_path / "s.yaml"
    space.write_text(f"data: {{store: {path}, split: sequence, val: [Twall-100]}}\n"
                     "fixed: {layers: 1, hidden: 4, image_size: 32, window: '4->1', channels: 'dfun,temperature'}\n"
                     "search: {target_fields: {type: categorical, choices: ['dfun', 'temperature']}}\n")
    with pytest.raises(UserError) as err:
        load_space(space)
    assert "predict different fields ([dfun] at" in str(err.value) and "[temperature] at" in str(err.value)
    assert "\n" not in str(err.value)

    from bubbles.config import trial_config

    cfg = trial_config({"store": str(path), "image_size": 32, "window": "4->1", "layers": 1, "hidden": 4, "split": "sequence",
                        "val": ["Twall-100"], "channels": "dfun,temperature", "target_fields": "temperature"})
    splits = make_splits(cfg.data, cfg.window)
    cfg = cfg.at_frame_size(splits.frame_size).at_fields(splits.channels, splits.targets)
    protocol = Protocol(leads=(1,), size=(32, 32), context=4, stride=2, windows=4, epoch_windows=2,
                        baselines=("persistence",), field="dfun")
    yardstick = Yardstick(protocol, FrameStore.open(path), splits.segments.val, "val", splits.segments.train)
    model = build_model(cfg.model_name, cfg.model)
    with pytest.raises(UserError, match="scores field 'dfun', this trial predicts \\[temperature\\]"):
        yardstick.score(model, splits.val, 2)
