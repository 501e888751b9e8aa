"""PredRNN-v2 and SimVP beside ConvLSTM: published sizes, any N->M window, family-specific names, decoupling loss,
exact resume, learning on held-out conditions."""

from __future__ import annotations

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
    forced = model(x, future=3, target=y, teacher_forcing=1.0, generator=torch.Generator().manual_seed(0))
    # Full teacher forcing with reverse sampling at 1 - 1 = 0: the encoder sees its own frames, the forecast the truth.
    assert not torch.allclose(forced, free)
    again = model(x, future=3, target=y, teacher_forcing=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(forced, again)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"model": "simvp", "layers": 2}, "layers: applies to model convlstm only, not simvp"),
        ({"model": "convlstm", "patch": 2}, "patch: applies to model predrnn_v2 only, not convlstm"),
        ({"model": "simvp", "teacher_forcing": 0.3}, "teacher_forcing: applies to model convlstm and predrnn_v2 only"),
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
    extra = {"teacher_forcing": 0.5} if family == "predrnn_v2" else {}
    cfg = _cfg(tiny_store, family, epochs=2, max_train_windows=16, max_val_windows=4, window="3->2", **extra)
    straight = train(cfg, tmp_path / "a")
    train(trial_config(cfg.flat() | {"epochs": 1}), tmp_path / "b")
    resumed = train(cfg, tmp_path / "b", resume=tmp_path / "b" / CHECKPOINT)
    a = torch.load(tmp_path / "a" / CHECKPOINT, weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(t, b[k]) for k, t in a.items())
    assert straight.history[-1].train_loss == resumed.history[-1].train_loss
