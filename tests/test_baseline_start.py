"""Baseline start (issue 27): an untrained trial with `baseline_start: true` scores the strongest baseline at every
lead, on windows where different baselines win at different leads; the parameter reaches the model, the checkpoint
and a refused field layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bubbles.config import trial_config
from bubbles.data.store import SequenceMeta, write_store
from bubbles.data.splits import make_splits
from bubbles.errors import UserError
from bubbles.evaluation import baselines
from bubbles.evaluation.evaluate import subset, training_mean_frame
from bubbles.models import build_model, check_state_shapes
from bubbles.models.baseline_start import BaselineStart
from bubbles.training.baseline_fit import FIT_WINDOWS, fit_baseline_start

SIZE = 16
A = 0.8  # AR(1) coefficient of the anomaly: persistence wins while A**lead > 1/2 (leads 1-3), climatology after


def _ar_sequence(rng: np.random.Generator, mean: np.ndarray, frames: int) -> np.ndarray:
    """A fixed mean frame plus a pixelwise AR(1) anomaly (std 0.12): yesterday's anomaly decays by A a frame."""
    anomaly = rng.normal(0, 0.12, mean.shape)
    out = []
    for _ in range(frames):
        anomaly = A * anomaly + np.sqrt(1 - A * A) * rng.normal(0, 0.12, mean.shape)
        out.append(np.clip(mean + anomaly, 0, 1))
    return (np.stack(out) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def ar_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    mean = 0.5 + 0.15 * np.sin(6 * xx) * np.cos(4 * yy)
    path = tmp_path_factory.mktemp("ar") / "ar.zarr"
    write_store(path, iter((f"s{k}", _ar_sequence(rng, mean, 48), SequenceMeta("ar", condition={"k": k})) for k in range(4)))
    return path


def _config(store: Path, model: str, **extra: object):  # type: ignore[no-untyped-def]
    params = {"store": str(store), "image_size": SIZE, "window": "4->4", "split": "sequence", "val_fraction": 0.25,
              "model": model, "baseline_start": True, **extra}
    return trial_config(params)


@pytest.mark.parametrize("model, extra", [("convlstm", {"layers": 1, "hidden": 4, "peephole": "channel"}),
                                          ("evolution", {"ev_width": 4, "ev_depth": 1})])
def test_untrained_baseline_start_scores_the_strongest_baseline_at_every_lead(ar_store: Path, model: str, extra: dict) -> None:
    cfg = _config(ar_store, model, **extra)
    splits = make_splits(cfg.data, cfg.window)
    cfg = cfg.at_frame_size(splits.frame_size).at_fields(splits.channels, splits.targets)
    torch.manual_seed(0)
    net = build_model(cfg.model_name, cfg.model)
    assert isinstance(net, BaselineStart)
    fit = fit_baseline_start(net, splits, tiles=False)
    assert fit.sources == ("persistence", "climatology", "flow")
    # Score the untrained model through its own forward, and every baseline on its own, on the fitted windows.
    rows = subset(len(splits.train), FIT_WINDOWS)
    x = torch.stack([splits.train[i][0] for i in rows])
    y = torch.stack([splits.train[i][1] for i in rows])[:, :, 0].numpy()
    with torch.no_grad():
        pred = net.eval()(x, future=4)[:, :, 0].numpy()
    context = x[:, :, 0].numpy()
    mean = training_mean_frame(splits)
    scores = {b: ((baselines.forecast(b, context, 4, mean) - y) ** 2).mean(axis=(0, 2, 3)) for b in ("persistence", "climatology", "flow")}
    model_mse = ((pred - y) ** 2).mean(axis=(0, 2, 3))
    winners = [min(scores, key=lambda b: scores[b][lead]) for lead in range(4)]
    assert len(set(winners)) > 1, f"the windows must have different winners at different leads, got {winners}"
    strongest = np.min(np.stack(list(scores.values())), axis=0)
    assert np.all(model_mse <= strongest * (1 + 1e-5) + 1e-9), (model_mse, scores)
    np.testing.assert_allclose(model_mse, fit.blend_mse, rtol=1e-4)


@pytest.mark.parametrize("model, extra", [("predrnn_v2", {"st_layers": 1, "st_hidden": 4, "st_kernel": 3, "patch": 2}),
                                          ("simvp", {"hid_s": 4, "hid_t": 8, "n_s": 1, "n_t": 1})])
def test_every_family_builds_and_runs_with_the_baseline_start(ar_store: Path, model: str, extra: dict) -> None:
    """The smoke sweep's PredRNN-v2 trial failed: its config had no output_len (the blend's lead count)."""
    cfg = _config(ar_store, model, **extra)
    net = build_model(cfg.model_name, cfg.model)
    assert isinstance(net, BaselineStart) and net.weights.shape == (4, 3)
    x = torch.rand(2, 4, 1, SIZE, SIZE)
    with torch.no_grad():
        pred = net.eval()(x, future=4)
    assert pred.shape == (2, 4, 1, SIZE, SIZE)
    torch.testing.assert_close(pred, x[:, -1:].expand(2, 4, 1, SIZE, SIZE))  # before the fit: persistence


def test_baseline_start_weights_travel_with_the_checkpoint_and_other_layouts_are_refused(ar_store: Path) -> None:
    cfg = _config(ar_store, "simvp", hid_s=4, hid_t=8, n_s=1, n_t=1)
    net = build_model(cfg.model_name, cfg.model)
    assert isinstance(net, BaselineStart) and {"climatology", "sources", "weights", "gate"} <= {k.split(".")[0] for k in net.state_dict()}
    check_state_shapes(cfg.model_name, cfg.model, net.state_dict(), "test")  # the meta-device rebuild has them too
    plain = build_model(cfg.model_name, _config(ar_store, "simvp", hid_s=4, hid_t=8, n_s=1, n_t=1, baseline_start=False).model)
    assert not isinstance(plain, BaselineStart)
    with pytest.raises(UserError, match="baseline_start"):
        trial_config({"store": str(ar_store), "model": "convlstm", "baseline_start": True, "channels": ["a", "b"],
                      "target_fields": ["a"]})


def test_the_models_torch_flow_is_the_yardsticks_flow_baseline() -> None:
    """The baseline start's flow runs in torch (on the model's device, traced into exports); it must forecast what
    the yardstick's numpy/scikit-image flow baseline forecasts."""
    from bubbles.models.baseline_start import flow_forecast

    yy, xx = np.mgrid[0:24, 0:20].astype(np.float32)
    def blobs(dy: float, dx: float) -> np.ndarray:
        return (0.2 + 0.6 * np.exp(-((yy - 9 - dy) ** 2 + (xx - 8 - dx) ** 2) / 12)
                + 0.3 * np.exp(-((yy - 16 - dy) ** 2 + (xx - 13 - dx) ** 2) / 6)).astype(np.float32)
    context = np.stack([np.stack([blobs(0, 0), blobs(1.0, 0.5), blobs(2.0, 1.0)]),
                        np.stack([blobs(0, 0), blobs(-0.5, 1.0), blobs(-1.0, 2.0)])])  # (2, 3, H, W)
    expected = baselines.flow_extrapolation(context, 3)
    got = flow_forecast(torch.from_numpy(context)[:, :, None], 3, 1)[:, :, 0].numpy()
    assert np.abs(expected - context[:, -1:]).max() > 0.05  # it moved: not persistence
    np.testing.assert_allclose(got, expected, atol=2e-3)


@pytest.fixture(scope="module")
def ar_store_32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The AR(1) store at 32 px: room for 16 px tiles (the smallest a tile may be)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:32, 0:32] / 32
    mean = 0.5 + 0.2 * np.sin(6 * xx) * np.cos(4 * yy)
    path = tmp_path_factory.mktemp("ar32") / "ar32.zarr"
    write_store(path, iter((f"s{k}", _ar_sequence(rng, mean, 32), SequenceMeta("ar", condition={"k": k})) for k in range(3)))
    return path


def test_with_tiles_the_climatology_is_the_same_tile_of_the_whole_frames_mean(ar_store_32: Path) -> None:
    """Trained on tiles, run on whole frames: the climatology source stays on; each training tile's blend takes the
    tile of the training mean frame at the tile's own place (issue 27: "for tiles: the same tile of it")."""
    cfg = trial_config({"store": str(ar_store_32), "image_size": 32, "window": "4->4", "split": "sequence",
                        "val_fraction": 0.34, "model": "convlstm", "layers": 1, "hidden": 4, "peephole": "channel",
                        "baseline_start": True, "tile": "16x16"})
    splits = make_splits(cfg.data, cfg.window)
    cfg = cfg.at_frame_size(splits.frame_size).at_fields(splits.channels, splits.targets)
    net = build_model(cfg.model_name, cfg.model)
    fit = fit_baseline_start(net, splits, tiles=True)
    assert "climatology" in fit.sources and fit.windows > 0
    mean = training_mean_frame(splits)
    np.testing.assert_allclose(net.climatology[0].numpy(), mean, atol=1e-6)
    # The blend is fitted on tiles with their own climatology tile: never worse there than a source alone, and the
    # late leads (where the AR anomaly has decayed) lean on climatology.
    for lead in range(4):
        assert fit.blend_mse[lead] <= min(m[lead] for m in fit.source_mse.values()) * (1 + 1e-6)
    lead4 = dict(zip(fit.sources, fit.weights[3]))
    assert lead4["climatology"] > 0.3, fit.weights
    # A training window carries its tile's place; the model cuts the climatology there.
    splits.train.with_origin = True
    x, _, origin = splits.train[0]
    top, left, fh, fw = origin.tolist()
    assert (fh, fw) == tuple(mean.shape) and x.shape[-2:] == (16, 16)
    cut = net.climatology_tiles(x[None], origin[None])[0, 0].numpy()
    np.testing.assert_allclose(cut, mean[top : top + 16, left : left + 16], atol=1e-6)
    # A tile of a frame of another size takes its window's context mean instead.
    other = net.climatology_tiles(x[None], torch.tensor([[0, 0, fh + 2, fw]]))[0, 0].numpy()
    np.testing.assert_allclose(other, x[:, 0].mean(0).numpy(), atol=1e-6)
    # On whole frames (validation, the yardstick, predict) the whole mean frame is the source.
    with torch.no_grad():
        whole = net.eval().baselines(torch.stack([splits.val[0][0]]), 4)
    np.testing.assert_allclose(whole["climatology"][0, 0, 0].numpy(), mean, atol=1e-6)


def test_a_tiled_trial_with_the_baseline_start_trains_with_its_tiles_climatology(ar_store_32: Path, tmp_path: Path) -> None:
    """The training loop hands each tile's place to the blend (a tile at another place than the climatology's
    corner would otherwise be blended with the wrong part of the mean frame, or with none)."""
    from bubbles.training.train import load_checkpoint, train

    cfg = trial_config({"store": str(ar_store_32), "image_size": 32, "window": "4->2", "split": "sequence",
                        "val_fraction": 0.34, "model": "evolution", "ev_width": 4, "ev_depth": 1, "baseline_start": True,
                        "tile": "16x16", "epochs": 1, "batch_size": 4, "loss": "mse_mean", "max_train_windows": 8,
                        "max_val_windows": 4})
    result = train(cfg, tmp_path / "run")
    assert result.status == "completed" and np.isfinite(result.history[-1].train_loss)
    state = load_checkpoint(tmp_path / "run" / "checkpoint" / "best.pt", torch.device("cpu"))["model"]
    assert float(state["sources"][1]) == 1.0 and state["climatology"].shape[-2:] == (32, 32)


def test_exporting_a_baseline_start_model_prints_no_tracer_warning(ar_store: Path, tmp_path: Path) -> None:
    """The torch flow's frame size, sources and ILK radius are constants of an exported program by design: export
    used to print a TracerWarning for them (issue 27), and --onnx three notes of torch.onnx's on unfolded strided
    slices. Silenced there only; the traced program still equals eager."""
    import warnings

    from bubbles.bundle import BundleInfo, write_bundle

    cfg = _config(ar_store, "convlstm", layers=1, hidden=4, peephole="channel")
    splits = make_splits(cfg.data, cfg.window)
    cfg = cfg.at_frame_size(splits.frame_size).at_fields(splits.channels, splits.targets)
    net = build_model(cfg.model_name, cfg.model)
    fit_baseline_start(net, splits, tiles=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = write_bundle(tmp_path / "export", net, cfg, BundleInfo("val_mse", 0.0, "test", "", ()), None, onnx=True)
    noise = [w for w in seen if issubclass(w.category, torch.jit.TracerWarning) or "Constant folding" in str(w.message)]
    assert not noise, [str(w.message)[:80] for w in noise]
    x = torch.stack([splits.val[0][0]])
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.load(str(out / "model.ts"))(x), net.eval()(x, future=4))
