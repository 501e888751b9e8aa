"""The evolution family: advection (zero motion is persistence bit for bit, a known shift is reproduced within
interpolation error), shapes for any window and frame, gradients through the advection, rollouts beyond the
window, multi-field motion."""

from __future__ import annotations

import math

import pytest
import torch

from bubbles.models.evolution import Evolution, EvolutionConfig
from bubbles.models.warp import advect, departure


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
