"""The evolution family: advection (zero motion is persistence bit for bit, a known shift is reproduced within
interpolation error), shapes for any window and frame, gradients through the advection, rollouts beyond the
window, multi-field motion; as a study family: config, smoothness term, exact resume, export (TorchScript, ONNX),
autoregressive predict with motion pictures. Its learning test is in test_learning.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bubbles.bundle import load_bundle
from bubbles.config import trial_config
from bubbles.errors import UserError
from bubbles.evaluation.figures import motion_colours, prediction_strip
from bubbles.models.evolution import Evolution, EvolutionConfig, motion_smoothness
from bubbles.models.warp import advect, departure
from bubbles.training.train import CHECKPOINT, train
from cli import main


def _blob(h: int, w: int, cy: float, cx: float, sigma: float = 3.0) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    return torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))


def test_zero_motion_and_zero_residual_is_persistence_exactly() -> None:
    torch.manual_seed(0)
    model = Evolution(EvolutionConfig(width=8, depth=2, substeps=3, scales=2, input_len=4, output_len=3, frame_size=(20, 28))).eval()
    for head in (*model.motion_heads, model.residual_head):  # zero already at initialisation; made explicit here
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    x = torch.rand(2, 4, 1, 20, 28)
    out = model(x, future=7)  # also through a second window of the rollout
    assert torch.equal(out, x[:, -1:].expand(2, 7, 1, 20, 28))


def test_the_observed_frame_is_interpolated_once_per_lead() -> None:
    """Half a pixel to the right per lead: at lead 4 the frame is the last one moved by exactly 2 pixels (one
    interpolation of a composed map), not a blur of four half-pixel resamplings."""
    model = Evolution(EvolutionConfig(width=4, depth=1, input_len=2, output_len=4, frame_size=(12, 16))).eval()
    with torch.no_grad():
        model.motion_heads[0].bias[0::2] = 0.5  # u of every lead; v and the residual stay zero
    x = torch.rand(1, 2, 1, 12, 16)
    out = model(x, future=4)
    # Exact away from the inflow edge (there the clamped edge pixel flows in, as in the flow baseline).
    assert torch.equal(out[0, 3, 0, :, 4:], x[0, -1, 0, :, 2:-2])
    chained = x[:, -1]
    for _ in range(4):
        chained = advect(chained, torch.tensor([0.5, 0.0]).view(1, 2, 1, 1).expand(1, 2, 12, 16))
    assert (chained[0, 0, :, 4:] - x[0, -1, 0, :, 2:-2]).abs().max() > 0.05  # what resampling each lead would do


@pytest.mark.parametrize("substeps", [1, 4])
def test_uniform_shift_is_reproduced_within_interpolation_error(substeps: int) -> None:
    h, w, (dx, dy) = 32, 40, (2.5, -1.5)
    frame = _blob(h, w, 15.0, 17.0)[None, None]
    motion = torch.tensor([dx, dy], dtype=torch.float64).view(1, 2, 1, 1).expand(1, 2, h, w)
    moved = advect(frame, motion, substeps)[0, 0]
    expected = _blob(h, w, 15.0 + dy, 17.0 + dx)
    # Bilinear interpolation errs by at most |f''| h^2 / 8 per axis: |f''| <= 1 / sigma^2 for a unit Gaussian.
    bound = 2 * (1 / 3.0**2) / 8
    assert (moved - expected).abs().max().item() < bound
    assert (moved - expected).abs().max().item() > 1e-6  # a half-pixel shift really interpolates
    # A whole-pixel shift is exact away from the clamped edges.
    whole = advect(frame, torch.tensor([3.0, -2.0], dtype=torch.float64).view(1, 2, 1, 1).expand(1, 2, h, w))[0, 0]
    assert torch.equal(whole[:-2, 3:], frame[0, 0, 2:, :-3])


def test_substeps_follow_a_curved_field() -> None:
    """A rotation: one straight step back leaves the circle; sub-steps stay closer to it."""
    h = w = 33
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    omega = 0.3
    motion = torch.stack([-(y - 16) * omega, (x - 16) * omega])[None]  # rigid rotation about the centre
    radius = lambda dy, dx: torch.sqrt((dy - 16) ** 2 + (dx - 16) ** 2)  # noqa: E731
    r0 = radius(y, x)[16, 24]
    errors = [abs(radius(*(d[0] for d in departure(motion, s)))[16, 24] - r0).item() for s in (1, 8)]
    assert errors[1] < errors[0] / 4, errors
    assert math.isfinite(errors[0])


@pytest.mark.parametrize("window, size, fields", [((4, 1), (16, 24), 1), ((3, 5), (17, 13), 2), ((5, 2), (16, 16), 3)])
def test_any_window_any_frame_any_fields(window: tuple[int, int], size: tuple[int, int], fields: int) -> None:
    n, m = window
    torch.manual_seed(0)
    cfg = EvolutionConfig(width=8, depth=2, substeps=2, scales=3, input_len=n, output_len=m, in_channels=fields,
                          out_channels=fields, frame_size=size)
    model = Evolution(cfg)
    for p in model.parameters():  # away from the zero start, so motion and residual are not trivial
        p.data.add_(0.05 * torch.randn_like(p))
    model.eval()
    x = torch.rand(2, n, fields, *size)
    for future in (m, m + 3):
        motion: list[torch.Tensor] = []
        out = model(x, future=future, motion=motion)
        assert out.shape == (2, future, fields, *size) and (out >= 0).all() and (out <= 1).all()
        assert motion[0].shape == (2, future, 2, *size) and motion[0].abs().max() > 0
    assert torch.allclose(model(x, future=m + 3)[:, :m], model(x, future=m), atol=1e-6)


def test_gradients_reach_the_motion_through_the_advection() -> None:
    torch.manual_seed(0)
    model = Evolution(EvolutionConfig(width=8, depth=1, input_len=3, output_len=2, frame_size=(16, 16)))
    x = torch.rand(2, 3, 1, 16, 16)
    loss = ((model(x, future=2) - torch.rand(2, 2, 1, 16, 16)) ** 2).mean()
    loss.backward()
    # The heads start at zero: their own gradients are what moves the model off persistence.
    assert model.motion_heads[0].weight.grad.abs().sum() > 0
    assert model.residual_head.weight.grad.abs().sum() > 0


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="scales"):
        Evolution(EvolutionConfig(depth=1, scales=3))
    with pytest.raises(ValueError, match="in_channels"):
        Evolution(EvolutionConfig(in_channels=2, out_channels=1))


# --- as a family of the study: config, training hooks, resume, export, predict, pictures ---------------------------

SMALL = {"model": "evolution", "ev_width": 8, "ev_depth": 1, "motion_scales": 2, "substeps": 2, "smoothness": 0.05}


def test_config_names_ranges_and_round_trip() -> None:
    cfg = trial_config(SMALL | {"image_size": "16x24", "window": "3->2"})
    assert cfg.model == EvolutionConfig(width=8, depth=1, substeps=2, scales=2, smoothness=0.05, input_len=3, output_len=2,
                                        frame_size=(16, 24))
    assert trial_config(cfg.flat()) == cfg and "teacher_forcing" not in cfg.flat()
    assert cfg.data.feedback and cfg.model.label() == "E1x8-s2-m2"
    for params, message in [
        ({"motion_scales": 3}, r"motion_scales: must be <= ev_depth \+ 1 = 2, got 3"),
        ({"substeps": 0}, "substeps: must be >= 1"),
        ({"smoothness": -1.0}, "smoothness: must be in"),
        ({"teacher_forcing": 0.2}, "teacher_forcing: applies to model convlstm only"),
    ]:
        with pytest.raises(UserError, match=message):
            trial_config(SMALL | params, "t.yaml")
    with pytest.raises(UserError, match="ev_width: applies to model evolution only, not simvp"):
        trial_config({"model": "simvp", "ev_width": 8}, "t.yaml")


def test_smoothness_term_prefers_a_rigid_motion() -> None:
    rigid = torch.ones(1, 2, 2, 8, 8)
    torn = rigid.clone()
    torn[..., ::2, :] *= -1
    assert motion_smoothness(rigid).item() == 0.0 and motion_smoothness(torn).item() > 1.0


def _params(store: Path, **extra: object) -> dict:
    return {"store": str(store), "image_size": 32, "window": "3->2", "batch_size": 8, "lr": 3e-3, "loss": "mse_mean",
            "split": "condition", "val_fraction": 0.34, "seed": 3, "max_train_windows": 16, "max_val_windows": 4} | SMALL | extra


def test_resume_is_bit_exact(tiny_store: Path, tmp_path: Path) -> None:
    cfg = trial_config(_params(tiny_store, epochs=2))
    straight = train(cfg, tmp_path / "a")
    train(trial_config(cfg.flat() | {"epochs": 1}), tmp_path / "b")
    resumed = train(cfg, tmp_path / "b", resume=tmp_path / "b" / CHECKPOINT)
    a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(t, b[k]) for k, t in a.items())
    assert straight.history[-1].train_loss == resumed.history[-1].train_loss
    # The trial's strips carry a motion row: taller than the strip of the same window without it.
    strip = Image.open(straight.strips[0])
    plain = prediction_strip(np.zeros((3, 32, 32)), np.zeros((2, 32, 32)), np.zeros((2, 32, 32)))
    assert strip.height > plain.height and straight.cost is not None and straight.cost.gflops_per_window > 0


@pytest.mark.slow
def test_export_onnx_and_autoregressive_predict_with_motion(tiny_store: Path, tmp_path: Path) -> None:
    """Train through the CLI (MLflow in sqlite), export with ONNX checked against PyTorch by the exporter, then
    predict beyond the trained horizon: frames, motion.npy and a strip with the motion row."""
    trial = tmp_path / "trial.yaml"
    trial.write_text(json.dumps(_params(tiny_store, epochs=1)))
    runner = CliRunner(env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"})
    result = runner.invoke(main, ["train", str(trial), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "exp"), "--onnx"])
    assert result.exit_code == 0, result.output
    import onnxruntime

    model, cfg, _ = load_bundle(tmp_path / "exp")
    x = torch.rand(2, 3, 1, 32, 32)
    got = onnxruntime.InferenceSession(str(tmp_path / "exp" / "model.onnx")).run(None, {"frames": x.numpy()})[0]
    scripted = torch.jit.load(str(tmp_path / "exp" / "model.ts"))
    with torch.no_grad():
        expected = model(x, future=2)
        assert torch.allclose(scripted(x), expected, atol=1e-5)
    assert abs(got - expected.numpy()).max() < 1e-4
    result = runner.invoke(main, ["predict", str(tmp_path / "exp"), "--store", str(tiny_store), "--sequence", "seq001",
                                  "--start", "5", "--steps", "7", "--autoregressive", "--out", str(tmp_path / "pred")])
    assert result.exit_code == 0, result.output
    motion = np.load(tmp_path / "pred" / "motion.npy")
    assert np.load(tmp_path / "pred" / "prediction.npy").shape == (7, 32, 32) and motion.shape == (7, 2, 32, 32)
    plain = prediction_strip(np.zeros((3, 32, 32)), np.zeros((7, 32, 32)), np.zeros((7, 32, 32)))
    assert Image.open(tmp_path / "pred" / "strip.png").height > plain.height  # the motion row


def test_motion_picture_colours_directions() -> None:
    right, down = np.zeros((2, 4, 4)), np.zeros((2, 4, 4))
    right[0], down[1] = 2.0, 2.0
    colours = motion_colours(np.stack([right, down, np.zeros((2, 4, 4))]), largest=2.0)
    assert colours.shape == (3, 4, 4, 3)
    assert np.allclose(colours[0, 0, 0], (1, 0, 0))  # moving right: red
    assert np.allclose(colours[2], 1.0)  # at rest: white
    assert not np.allclose(colours[1, 0, 0], colours[0, 0, 0])
    strip = prediction_strip(np.random.rand(4, 16, 24), np.random.rand(3, 16, 24), np.random.rand(3, 16, 24),
                             np.random.randn(3, 2, 16, 24))
    grey = prediction_strip(np.random.rand(4, 16, 24), np.random.rand(3, 16, 24), np.random.rand(3, 16, 24))
    assert strip.mode == "RGB" and strip.height > grey.height and strip.width == grey.width  # one more row: motion
