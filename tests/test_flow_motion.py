"""Objects at native scale (issue 27, deliverable 5): evolution's motion can start from the optical-flow baseline's
field (`flow_motion`), so an untrained model IS the flow forecast and displacements of several pixels a frame need
no learning; and a training term aligned with bubble overlap (`bubble_dice`: soft Dice of soft-thresholded masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bubbles.config import trial_config
from bubbles.data.store import SequenceMeta, write_store
from bubbles.data.splits import make_splits
from bubbles.evaluation import baselines
from bubbles.models import build_model, check_state_shapes
from bubbles.models.evolution import Evolution
from bubbles.training.baseline_fit import start_flow_motion
from bubbles.training.losses import bubble_overlap
from bubbles.training.train import load_checkpoint, train

SIZE = 24


def _moving_discs(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Two bright soft discs (radius 3-4 px) on a dark field, each moving 1.5-2.5 px a frame (wrapping): motion of
    the size the native-scale recordings have, which an untrained zero-motion model cannot reach."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    starts = rng.uniform(4, SIZE - 4, (2, 2))
    speeds = rng.uniform(1.5, 2.5, (2, 2)) * rng.choice([-1, 1], (2, 2))
    out = []
    for t in range(frames):
        frame = np.full((SIZE, SIZE), 0.1)
        for (y0, x0), (vy, vx), r in zip(starts, speeds, (3.0, 4.0)):
            cy, cx = (y0 + vy * t) % SIZE, (x0 + vx * t) % SIZE
            d = np.hypot(yy - cy, xx - cx)
            frame = np.maximum(frame, 0.1 + 0.8 / (1 + np.exp((d - r) / 0.7)))
        out.append(frame)
    return (np.stack(out) * 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def disc_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(3)
    path = tmp_path_factory.mktemp("discs") / "discs.zarr"
    write_store(path, iter((f"s{k}", _moving_discs(rng, 24), SequenceMeta("discs", condition={"k": k})) for k in range(4)))
    return path


def _params(store: Path, **extra: object) -> dict:
    return {"store": str(store), "image_size": SIZE, "window": "3->3", "split": "sequence", "val_fraction": 0.25,
            "model": "evolution", "ev_width": 4, "ev_depth": 1, "flow_motion": True, **extra}


def test_untrained_evolution_with_flow_motion_scores_the_flow_baseline(disc_store: Path) -> None:
    cfg = trial_config(_params(disc_store))
    splits = make_splits(cfg.data, cfg.window)
    cfg = cfg.at_frame_size(splits.frame_size).at_fields(splits.channels, splits.targets)
    torch.manual_seed(0)
    net = build_model(cfg.model_name, cfg.model)
    assert isinstance(net, Evolution) and cfg.model.label().endswith("-f")
    radius = start_flow_motion(net, splits)
    assert radius is not None and int(net.flow_radius.item()) == radius
    x = torch.stack([splits.val[i][0] for i in range(len(splits.val))])
    y = torch.stack([splits.val[i][1] for i in range(len(splits.val))])[:, :, 0].numpy()
    with torch.no_grad():
        pred = net.eval()(x, future=3)[:, :, 0].numpy()
    context = x[:, :, 0].numpy()
    flow = baselines.forecast("flow", context, 3, flow_radius_px=radius)
    persistence = baselines.forecast("persistence", context, 3)
    mse = lambda f: ((f - y) ** 2).mean(axis=(0, 2, 3))  # noqa: E731
    model_mse, flow_mse, persistence_mse = mse(pred), mse(flow), mse(persistence)
    print("MSE per lead: untrained evolution", model_mse, "flow", flow_mse, "persistence", persistence_mse)
    assert np.all(flow_mse < 0.9 * persistence_mse), (flow_mse, persistence_mse)  # the discs move: flow pays here
    # Lead 1 is the flow forecast (the torch ILK is scikit-image's up to float32 and its edge handling: a few
    # pixels differ by a few hundredths), and later leads trace the same field (the departure map is interpolated
    # where flow samples the field).
    assert np.mean(np.abs(pred[:, 0] - flow[:, 0])) < 2e-3
    np.testing.assert_allclose(model_mse, flow_mse, rtol=0.1)
    # Without flow_motion the same untrained model is persistence, far behind.
    plain = build_model(cfg.model_name, trial_config(_params(disc_store, flow_motion=False)).at_frame_size(splits.frame_size).model)
    with torch.no_grad():
        np.testing.assert_allclose(plain.eval()(x, future=3)[:, :, 0].numpy(), persistence, atol=1e-6)


def test_flow_motion_and_bubble_dice_train_and_the_radius_travels_with_the_checkpoint(disc_store: Path, tmp_path: Path) -> None:
    cfg = trial_config(_params(disc_store, epochs=1, batch_size=4, lr=1e-3, loss="mse_mean", bubble_dice=0.5,
                               bubble_threshold=0.5, max_train_windows=8, max_val_windows=4))
    result = train(cfg, tmp_path / "run")
    assert result.status == "completed" and np.isfinite(result.history[-1].train_loss)
    state = load_checkpoint(tmp_path / "run" / "checkpoint" / "best.pt", torch.device("cpu"))
    assert float(state["model"]["flow_radius"]) >= 2
    check_state_shapes("evolution", cfg.at_frame_size((SIZE, SIZE)).model, state["model"], "test")
    # An evolution without flow_motion has no such buffer: old checkpoints keep their exact state_dict.
    assert "flow_radius" not in build_model("evolution", trial_config(_params(disc_store, flow_motion=False)).model).state_dict()


def test_bubble_overlap_pays_for_a_missed_or_blurred_bubble_and_has_a_gradient() -> None:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]

    def disc(cy: float, cx: float, softness: float = 0.3) -> torch.Tensor:
        d = np.hypot(yy - cy, xx - cx)
        return torch.from_numpy(1 / (1 + np.exp((d - 4) / softness))).float().view(1, 1, 1, SIZE, SIZE)

    target = disc(12, 12)
    right, shifted, blurred = disc(12, 12), disc(12, 16), disc(12, 12, softness=3.0) * 0.6
    right_loss = bubble_overlap(right, target, 0.5, "bright")
    assert right_loss < 0.05
    assert bubble_overlap(shifted, target, 0.5, "bright") > right_loss + 0.2
    assert bubble_overlap(blurred, target, 0.5, "bright") > right_loss + 0.2
    # dark bubbles (shadowgraphs): the mirror image scores the same
    assert torch.isclose(bubble_overlap(1 - shifted, 1 - target, 0.5, "dark"), bubble_overlap(shifted, target, 0.5, "bright"))
    pred = shifted.clone().requires_grad_(True)
    bubble_overlap(pred, target, 0.5, "bright").backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
