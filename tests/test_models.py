"""ConvLSTM: the seed's exact size, shapes per mode and peephole, and equality with the plain concat[x, h] form."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from bubbles.models import build_model, parameter_count
from bubbles.models.convlstm import ConvLSTMCell, ConvLSTMConfig


def test_seed_configuration_has_exactly_10178497_parameters() -> None:
    model = build_model("convlstm", ConvLSTMConfig(layers=3, hidden=(64,), kernel=3, peephole="frame", frame_size=(128, 128)))
    assert parameter_count(model) == 10_178_497


@pytest.mark.parametrize("peephole, extra", [("frame", 3 * 8 * 16 * 16), ("channel", 3 * 8), ("none", 0)])
def test_peephole_modes(peephole: str, extra: int) -> None:
    base = parameter_count(build_model("convlstm", ConvLSTMConfig(layers=1, hidden=(8,), peephole="none", frame_size=(16, 16))))
    model = build_model("convlstm", ConvLSTMConfig(layers=1, hidden=(8,), peephole=peephole, frame_size=(16, 16)))  # type: ignore[arg-type]
    assert parameter_count(model) - base == extra
    for p in model.parameters():
        assert torch.isfinite(p).all()  # peepholes are initialised, not torch.empty garbage
    out = model(torch.rand(2, 5, 1, 16, 16))
    assert out.shape == (2, 1, 1, 16, 16)


def test_seq2seq_rolls_out_m_frames_and_per_layer_widths() -> None:
    model = build_model("convlstm", ConvLSTMConfig(layers=2, hidden=(8, 4), mode="seq2seq", frame_size=(16, 16)))
    out = model(torch.rand(3, 5, 1, 16, 16), future=7)
    assert out.shape == (3, 7, 1, 16, 16)
    assert (out >= 0).all() and (out <= 1).all()


def test_seq2one_refuses_longer_horizons() -> None:
    model = build_model("convlstm", ConvLSTMConfig(layers=1, hidden=(4,), frame_size=(16, 16)))
    with pytest.raises(ValueError, match="seq2one"):
        model(torch.rand(1, 3, 1, 16, 16), future=2)


def test_teacher_forcing_feeds_the_truth() -> None:
    torch.manual_seed(0)
    model = build_model("convlstm", ConvLSTMConfig(layers=1, hidden=(4,), mode="seq2seq", frame_size=(16, 16))).eval()
    x, y = torch.rand(2, 4, 1, 16, 16), torch.rand(2, 3, 1, 16, 16)
    forced = model(x, future=3, target=y, teacher_forcing=1.0)
    # With full teacher forcing, lead 3 is the one-step prediction after seeing x and the true leads 1 and 2.
    direct = model(torch.cat([x, y[:, :2]], dim=1), future=1)
    free = model(x, future=3)
    assert torch.allclose(forced[:, 2], direct[:, 0], atol=1e-5)
    assert not torch.allclose(forced[:, 2], free[:, 2], atol=1e-5)


def test_hoisted_input_conv_equals_one_conv_over_concat() -> None:
    torch.manual_seed(1)
    cell = ConvLSTMCell(3, 5, 3, "frame", (12, 12))
    with torch.no_grad():
        for w in (cell.w_ci, cell.w_cf, cell.w_co):
            w.normal_(0, 0.1)
    x = torch.rand(2, 4, 3, 12, 12)
    hs, _ = cell(x)
    # The reference form: one conv over concat[x_t, h_{t-1}] per step.
    h = torch.zeros(2, 5, 12, 12)
    c = torch.zeros_like(h)
    for t in range(4):
        gates = F.conv2d(torch.cat([x[:, t], h], 1), cell.conv.weight, cell.conv.bias, padding=1)
        i, f, g, o = gates.chunk(4, 1)
        i, f = torch.sigmoid(i + cell.w_ci * c), torch.sigmoid(f + cell.w_cf * c)
        c = f * c + i * torch.tanh(g)
        h = torch.sigmoid(o + cell.w_co * c) * torch.tanh(c)
        assert torch.allclose(hs[:, t], h, atol=1e-6)


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "none"])
def test_norm_choices_run_seq2seq_and_keep_shapes(norm: str) -> None:
    cfg = ConvLSTMConfig(layers=2, hidden=(8,), kernel=3, peephole="channel", mode="seq2seq", norm=norm, frame_size=(16, 16))  # type: ignore[arg-type]
    model = build_model("convlstm", cfg).eval()
    out = model(torch.rand(2, 4, 1, 16, 16), future=3)
    assert out.shape == (2, 3, 1, 16, 16) and torch.isfinite(out).all()
    # Only batch norm in seq2seq needs rollout statistics of its own; per-frame norms have no running statistics.
    assert (model.rollout_norms is not None) == (norm == "batch")


def test_seq2seq_encoder_batchnorm_statistics_are_the_encoder_pass_alone() -> None:
    """With momentum 1 the running statistics are the last batch's: eval-mode lead 1 then equals train-mode lead 1
    only if the rollout steps did not overwrite the encoder's statistics (they did before issue 10)."""
    torch.manual_seed(0)
    cfg = ConvLSTMConfig(layers=2, hidden=(8,), kernel=3, peephole="channel", mode="seq2seq", frame_size=(16, 16))
    model = build_model("convlstm", cfg)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.momentum = 1.0
    x = torch.rand(4, 5, 1, 16, 16)
    with torch.no_grad():
        train_lead1 = model.train()(x, future=3)[:, 0]
        eval_lead1 = model.eval()(x, future=3)[:, 0]
    assert torch.allclose(train_lead1, eval_lead1, atol=1e-3)


@pytest.mark.parametrize("mode", ["seq2one", "seq2seq"])
def test_patches_run_the_cells_on_folded_frames(mode: str) -> None:
    """patch p at H x W is a patch-1 ConvLSTM on the (C*p², H/p, W/p) folded frames, unfolded: same weights, same
    outputs; and the trial config takes `patch` for convlstm (it was predrnn_v2's only)."""
    from bubbles.config import trial_config
    from bubbles.models.patches import from_patches, to_patches

    torch.manual_seed(0)
    cfg = ConvLSTMConfig(layers=2, hidden=(6,), peephole="frame", mode=mode, patch=2, frame_size=(8, 12))  # type: ignore[arg-type]
    folded = ConvLSTMConfig(layers=2, hidden=(6,), peephole="frame", mode=mode, in_channels=4, out_channels=4, frame_size=(4, 6))  # type: ignore[arg-type]
    model, plain = build_model("convlstm", cfg).eval(), build_model("convlstm", folded).eval()
    plain.load_state_dict(model.state_dict())
    x, future = torch.rand(2, 3, 1, 8, 12), 3 if mode == "seq2seq" else 1
    with torch.no_grad():
        out = model(x, future=future)
        assert out.shape == (2, future, 1, 8, 12)
        assert torch.allclose(out, from_patches(plain(to_patches(x, 2), future=future), 2), atol=1e-6)
    t = trial_config({"patch": 4, "window": "4->2", "image_size": "32x48"})
    assert (t.model.patch, t.data.size_multiple, t.model.label()) == (4, 4, "L3-h64-p4")
    assert parameter_count(build_model("convlstm", t.model)) < parameter_count(build_model("convlstm", replace(t.model, patch=1)))


def _drifting_squares(n: int, length: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """(n, length, 1, size, size): a bright square on grey moving one pixel a frame, a new place and direction each."""
    frames = torch.full((n, length, 1, size, size), 0.3)
    for i in range(n):
        y, x = (int(v) for v in torch.randint(2, size - 6, (2,), generator=generator))
        dy, dx = (int(v) for v in torch.randint(-1, 2, (2,), generator=generator))
        for t in range(length):
            yy, xx = min(max(y + dy * t, 0), size - 4), min(max(x + dx * t, 0), size - 4)
            frames[i, t, 0, yy : yy + 4, xx : xx + 4] = 0.9
    return frames


def test_seq2seq_lead1_after_a_short_training_is_no_worse_than_lead2() -> None:
    """Issue 27's lead-1 bug: BatchNorm's running variance still held 0.9**n of its initial 1 after n batches, ~20x
    the hidden activations' variance, so eval-mode lead 1 (the encoder's norm) was flat grey after a short training.
    Here, where lead 1 is the easiest lead (one pixel of motion), a trial trained 40 batches must beat persistence at
    lead 1 at least as clearly as at lead 2, in eval mode, and eval must agree with train mode at lead 1."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    cfg = ConvLSTMConfig(layers=1, hidden=(8,), kernel=3, peephole="channel", mode="seq2seq", frame_size=(16, 16),
                         output_len=4)
    model = build_model("convlstm", cfg)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(40):
        seq = _drifting_squares(8, 8, 16, g)
        loss = F.mse_loss(model(seq[:, :4], future=4), seq[:, 4:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    seq = _drifting_squares(32, 8, 16, torch.Generator().manual_seed(1))
    x, y = seq[:, :4], seq[:, 4:]
    with torch.no_grad():
        pred_eval = model.eval()(x, future=4)
        pred_train = model.train()(x, future=4)
    mse = ((pred_eval - y) ** 2).mean(dim=(0, 2, 3, 4))
    persistence = ((x[:, -1:] - y) ** 2).mean(dim=(0, 2, 3, 4))
    skill = 1 - mse / persistence
    assert skill[0] > 0 and skill[0] >= skill[1], f"skill per lead {skill.tolist()}"
    train_mse1 = float(((pred_train[:, 0] - y[:, 0]) ** 2).mean())
    assert float(mse[0]) <= 1.5 * train_mse1, (float(mse[0]), train_mse1)
