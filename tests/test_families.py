"""PredRNN-v2 and SimVP beside ConvLSTM: published sizes, any N->M window, family-specific names, decoupling loss,
exact resume, learning on held-out conditions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from bubbles.config import trial_config
from bubbles.errors import UserError
from bubbles.models import build_model, parameter_count
from bubbles.models.predrnn_v2 import PredRNNv2Config, decouple_loss, from_patches, to_patches
from bubbles.models.simvp import SimVPConfig
from bubbles.training.train import CHECKPOINT, train

# OpenSTL Moving-MNIST configurations (10->10, 64x64x1) and their published sizes in millions.
PUBLISHED = [
    ("predrnn_v2", PredRNNv2Config(layers=4, hidden=128, kernel=5, patch=4, layer_norm=False, frame_size=(64, 64)), 23.9),
    ("simvp", SimVPConfig(hid_s=64, hid_t=512, n_s=4, n_t=8, spatio_kernel=3, input_len=10, output_len=10, frame_size=(64, 64)), 46.8),
]


@pytest.mark.parametrize("name, cfg, millions", PUBLISHED)
def test_openstl_configurations_round_to_published_sizes(name: str, cfg: object, millions: float) -> None:
    assert round(parameter_count(build_model(name, cfg)) / 1e6, 1) == millions  # type: ignore[arg-type]


def test_patches_round_trip_non_square() -> None:
    x = torch.rand(2, 3, 2, 8, 12)
    folded = to_patches(x, 4)
    assert folded.shape == (2, 3, 32, 2, 3)
    assert torch.equal(from_patches(folded, 4), x)
    assert torch.equal(folded[0, 0, :16].reshape(4, 4, 2, 3)[:, :, 0, 0], x[0, 0, 0, :4, :4])  # one tile, one channel


@pytest.mark.parametrize("window", [(4, 1), (3, 5), (5, 2)])
def test_any_window_both_families(window: tuple[int, int]) -> None:
    n, m = window
    models = [
        build_model("predrnn_v2", PredRNNv2Config(layers=2, hidden=8, kernel=3, patch=2, frame_size=(16, 24))),
        build_model("simvp", SimVPConfig(hid_s=8, hid_t=16, n_s=2, n_t=2, input_len=n, output_len=m, frame_size=(16, 24))),
    ]
    x = torch.rand(2, n, 1, 16, 24)
    for model in models:
        model.eval()
        for future in (m, m + 3):  # the trained horizon, and a rollout beyond it
            out = model(x, future=future)
            assert out.shape == (2, future, 1, 16, 24) and (out >= 0).all() and (out <= 1).all()
        # A rollout's first frames are the single-window prediction.
        assert torch.allclose(model(x, future=m + 3)[:, :m], model(x, future=m), atol=1e-6)


def test_predrnn_scheduled_sampling_and_decoupling_terms() -> None:
    torch.manual_seed(0)
    model = build_model("predrnn_v2", PredRNNv2Config(layers=2, hidden=8, kernel=3, patch=2, frame_size=(16, 16))).train()
    x, y = torch.rand(2, 4, 1, 16, 16), torch.rand(2, 3, 1, 16, 16)
    deltas: list = []
    free = model(x, future=3, deltas=deltas)
    assert len(deltas) == 2 * (4 + 3 - 1) and deltas[0][0].shape == (2, 8, 64)
    assert 0.0 <= decouple_loss(deltas).item() <= 1.0
    decouple_loss(deltas).backward()
    assert model.adapter.weight.grad is not None and model.adapter.weight.grad.abs().sum() > 0
    forced = model(x, future=3, target=y, encoder_truth=0.0, forecast_truth=1.0, generator=torch.Generator().manual_seed(0))
    # The encoder sees its own frames, the forecast the truth.
    assert not torch.allclose(forced, free)
    again = model(x, future=3, target=y, encoder_truth=0.0, forecast_truth=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(forced, again)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"model": "simvp", "layers": 2}, "layers: applies to model convlstm only, not simvp"),
        ({"model": "simvp", "patch": 2}, "patch: applies to model convlstm and predrnn_v2 only, not simvp"),
        ({"model": "simvp", "teacher_forcing": 0.3}, "teacher_forcing: applies to model convlstm only"),
        ({"model": "predrnn_v2", "teacher_forcing": 0.3}, "teacher_forcing: applies to model convlstm only, not predrnn_v2"),
        ({"model": "predrnn_v2", "sampling_start": 60, "sampling_end": 50}, "sampling_start: must be <= sampling_end 50"),
        ({"model": "predrnn_v2", "image_size": "30x30", "patch": 4}, "patch: must divide the frame size 30x30"),
        ({"model": "simvp", "image_size": "18x18", "n_s": 4}, "n_s: 4 blocks halve the frame 2 times"),
        ({"model": "predrnn_v2", "st_kernel": 4}, "st_kernel: must be odd"),
        ({"model": "predrnn_v2", "st_layer_norm": "yes"}, "st_layer_norm: expected true or false"),
    ],
)
def test_family_names_are_checked(params: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        trial_config(params, "t.yaml")


@pytest.mark.parametrize("model", ["predrnn_v2", "simvp"])
def test_flat_round_trip(model: str) -> None:
    cfg = trial_config({"model": model, "image_size": 32, "window": "4->2"})
    again = trial_config(cfg.flat())
    assert again == cfg and again.model_name == model


FAMILY = {
    "predrnn_v2": {"model": "predrnn_v2", "st_layers": 2, "st_hidden": 16, "st_kernel": 3, "patch": 2, "decouple_beta": 0.1},
    "simvp": {"model": "simvp", "hid_s": 16, "hid_t": 64, "n_s": 2, "n_t": 2},
}


def _cfg(store: Path, family: str, **overrides: object):  # type: ignore[no-untyped-def]
    params = {
        "store": str(store), "image_size": 32, "window": "4->1", "epochs": 8, "batch_size": 8, "lr": 3e-3,
        "loss": "mse_mean", "split": "condition", "val_fraction": 0.34, "seed": 3,
    }
    return trial_config(params | FAMILY[family] | overrides)


@pytest.mark.parametrize("family", ["predrnn_v2", "simvp"])
def test_resume_is_bit_exact(tiny_store: Path, tmp_path: Path, family: str) -> None:
    # PredRNN-v2's sampling schedule moves during these few iterations, so resume must restore where it stands.
    extra = {"sampling_start": 1, "sampling_end": 5, "sampling_alpha": 2.0} if family == "predrnn_v2" else {}
    cfg = _cfg(tiny_store, family, epochs=2, max_train_windows=16, max_val_windows=4, window="3->2", **extra)
    straight = train(cfg, tmp_path / "a")
    train(trial_config(cfg.flat() | {"epochs": 1}), tmp_path / "b")
    resumed = train(cfg, tmp_path / "b", resume=tmp_path / "b" / CHECKPOINT)
    a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(t, b[k]) for k, t in a.items())
    assert straight.history[-1].train_loss == resumed.history[-1].train_loss


def test_predrnn_feeds_back_its_raw_output_as_openstl() -> None:
    """The forecast's next input is the raw 1x1-conv output (OpenSTL), not its sigmoid: training returns the raw
    frames (here partly below 0), a rollout continues exactly as if they were appended to the input, and eval
    returns them clipped to [0, 1]."""
    torch.manual_seed(0)
    model = build_model("predrnn_v2", PredRNNv2Config(layers=2, hidden=8, kernel=3, patch=1, sampling_end=0, frame_size=(8, 8)))
    with torch.no_grad():
        model.conv_last.weight.mul_(20.0)
    x = torch.rand(2, 4, 1, 8, 8)
    with torch.no_grad():
        raw = model.train()(x, future=3)
        assert (raw < 0).any()
        again = model(torch.cat([x, raw[:, :1]], dim=1), future=2)
        assert torch.allclose(again, raw[:, 1:], atol=1e-5)
        assert torch.allclose(model.eval()(x, future=3), raw.clamp(0, 1), atol=1e-6)


def test_predrnn_layer_norm_gate_convolutions_have_no_bias() -> None:
    """OpenSTL's counts: st_layer_norm adds only the LayerNorms' weights (no conv biases, +7,680 at 4 x 128)."""
    plain = build_model("predrnn_v2", PredRNNv2Config(frame_size=(64, 64)))
    normed = build_model("predrnn_v2", PredRNNv2Config(layer_norm=True, frame_size=(64, 64)))
    assert not any(m.bias is not None for m in normed.modules() if isinstance(m, torch.nn.Conv2d))
    layer_norms = sum(p.numel() for m in normed.modules() if isinstance(m, torch.nn.LayerNorm) for p in m.parameters())
    assert parameter_count(normed) - parameter_count(plain) == layer_norms == 4 * 2 * (7 + 4 + 3 + 1) * 128 * 16 * 16


def test_predrnn_reverse_scheduled_sampling_by_iteration() -> None:
    """The paper's / OpenSTL's schedule: encoder 0.5 rising to 1 (exponentially), forecaster 0.5 falling to 0
    (linearly) between sampling_start and sampling_end iterations; without reverse sampling the forecaster's falls
    from 1. Driven by the iteration, independent of teacher_forcing."""
    from bubbles.models.family import Progress
    from bubbles.models.predrnn_v2 import FAMILY, sampling_probabilities
    from bubbles.training.config import TrainConfig

    cfg = PredRNNv2Config(sampling_start=100, sampling_end=300, sampling_alpha=50.0)
    assert sampling_probabilities(cfg, 0) == sampling_probabilities(cfg, 99) == (0.5, 0.5)
    enc, fc = sampling_probabilities(cfg, 150)
    assert enc == pytest.approx(1 - 0.5 * math.exp(-1)) and fc == pytest.approx(0.375)
    assert sampling_probabilities(cfg, 300) == sampling_probabilities(cfg, 10**6) == (1.0, 0.0)
    plain = PredRNNv2Config(reverse_sampling=False, sampling_end=300)
    assert sampling_probabilities(plain, 0) == (1.0, 1.0) and sampling_probabilities(plain, 150) == (1.0, 0.5)
    assert sampling_probabilities(PredRNNv2Config(sampling_end=0), 0) == (1.0, 0.0)
    default = trial_config({"model": "predrnn_v2"}).model  # OpenSTL's 25000 / 50000 / 5000
    assert (default.sampling_start, default.sampling_end, default.sampling_alpha) == (25000, 50000, 5000.0)
    at = FAMILY.sampling(cfg, TrainConfig(teacher_forcing=0.0), Progress(epoch=0, epochs=1, iteration=150, iterations=1000))
    assert at == {"encoder_truth": enc, "forecast_truth": fc}


def test_simvp_initialisation_as_openstl() -> None:
    """Encoder/decoder convolutions trunc-normal std 0.02, gSTA convolutions normal(0, sqrt(2 / fan_out)), their
    biases 0 (PyTorch's defaults give std 1/sqrt(3 fan_in) and non-zero biases)."""
    torch.manual_seed(0)
    model = build_model("simvp", SimVPConfig(hid_s=32, hid_t=64, n_s=2, n_t=2, input_len=4, output_len=4, frame_size=(16, 16)))
    coder = [m for layer in [*model.enc, *model.dec] for m in layer.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(torch.equal(c.bias, torch.zeros_like(c.bias)) for c in coder)
    assert all(c.weight.abs().max() <= 2.0 for c in coder)
    assert model.enc[1].conv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    gsta = [m for b in model.translator for m in b.block.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(gsta) == 2 * 8
    for conv in gsta:
        fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels // conv.groups
        assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.1)
        assert torch.equal(conv.bias, torch.zeros_like(conv.bias))


def test_simvp_stochastic_depth_and_odd_n_s_as_openstl() -> None:
    from bubbles.models.simvp import DropPath

    model = build_model("simvp", trial_config({"model": "simvp", "window": "4->4", "image_size": 16, "hid_s": 8,
                                               "hid_t": 16, "n_t": 4, "drop_path": 0.3}).model)
    drops = [b.block.drop_path.p for b in model.translator]
    assert drops == pytest.approx([0.01, 0.01 + (0.3 - 0.01) / 3, 0.01 + 2 * (0.3 - 0.01) / 3, 0.3])
    x = torch.rand(8, 4, 1, 16, 16)
    model.train()
    torch.manual_seed(1)
    a = model(x, future=4)
    assert not torch.equal(a, model(x, future=4))  # a drawn depth per sample
    model.eval()
    assert torch.equal(model(x, future=4), model(x, future=4)) and isinstance(model.translator[-1].block.drop_path, DropPath)
    # OpenSTL's sampling_generator: an odd N_S builds N_S - 1 blocks a side.
    three = build_model("simvp", SimVPConfig(hid_s=8, hid_t=16, n_s=3, n_t=2, input_len=4, output_len=4, frame_size=(16, 16)))
    two = build_model("simvp", SimVPConfig(hid_s=8, hid_t=16, n_s=2, n_t=2, input_len=4, output_len=4, frame_size=(16, 16)))
    assert len(three.enc) == len(three.dec) == 2 and parameter_count(three) == parameter_count(two)
