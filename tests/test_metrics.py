"""Metrics against hand-worked values and scikit-image; baselines; skill; collapse detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bubbles.evaluation import baselines, metrics
from bubbles.training.losses import ssim_torch


def test_mse_mae_psnr_by_hand() -> None:
    target = np.zeros((2, 4, 4))
    pred = np.zeros((2, 4, 4))
    pred[0] = 0.1  # every pixel off by 0.1: MSE 0.01, MAE 0.1, PSNR 20 dB
    pred[1, 0, 0] = 1.0  # one pixel of 16 off by 1: MSE 1/16, MAE 1/16
    np.testing.assert_allclose(metrics.mse_frames(pred, target), [0.01, 1 / 16])
    np.testing.assert_allclose(metrics.mae_frames(pred, target), [0.1, 1 / 16])
    np.testing.assert_allclose(metrics.psnr_from_mse(np.array([0.01, 0.0])), [20.0, 100.0])
    assert metrics.psnr_from_mse(np.array([1 / 16]))[0] == pytest.approx(peak_signal_noise_ratio(target[1], pred[1], data_range=1))


def test_ssim_matches_scikit_image() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(3, 32, 32))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    got = metrics.ssim_frames(b, a)
    for k in range(3):
        ref = structural_similarity(b[k], a[k], data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert got[k] == pytest.approx(ref)
    assert metrics.ssim_frames(a, a) == pytest.approx(np.ones(3))
    # The differentiable SSIM of the loss agrees with the metric.
    torch_value = ssim_torch(torch.tensor(b[:, None]), torch.tensor(a[:, None])).item()
    assert torch_value == pytest.approx(got.mean(), abs=1e-6)


def test_baselines_and_skill() -> None:
    inputs = np.stack([np.full((4, 4), v) for v in (0.1, 0.9, 0.3)])[None]  # (1, 3, 4, 4)
    np.testing.assert_allclose(baselines.persistence(inputs, 2), np.full((1, 2, 4, 4), 0.3))
    np.testing.assert_allclose(baselines.context_median(inputs, 2), np.full((1, 2, 4, 4), 0.3))
    mean = np.full((4, 4), 0.6)
    np.testing.assert_allclose(baselines.forecast("climatology", inputs, 2, mean), np.full((1, 2, 4, 4), 0.6))
    np.testing.assert_allclose(metrics.skill(np.array([0.5, 1.0, 2.0]), np.array([1.0, 1.0, 1.0])), [0.5, 0.0, -1.0])


def test_collapse_fires_on_constant_and_not_on_good_predictor() -> None:
    rng = np.random.default_rng(1)
    target = rng.uniform(size=(40, 2, 16, 16))
    const, good = metrics.CollapseMeter(), metrics.CollapseMeter()
    const.update(np.repeat(target.mean(axis=0, keepdims=True), 40, axis=0), target)
    good.update(np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1), target)
    assert const.score() == pytest.approx(0.0, abs=1e-6)
    assert const.score() < metrics.COLLAPSE_THRESHOLD < good.score()
    assert good.score() == pytest.approx(1.0, abs=0.1)


def test_vmaf_from_real_libvmaf() -> None:
    from bubbles.evaluation.vmaf import vmaf_frames

    rng = np.random.default_rng(2)
    target = rng.uniform(size=(6, 32, 32))
    same, note = vmaf_frames(target, target)
    noisy, _ = vmaf_frames(np.clip(target + rng.normal(0, 0.2, target.shape), 0, 1), target)
    assert note == "" and same is not None and noisy is not None
    assert same[1:].min() > 95 and noisy.mean() < same.mean() - 10


def test_vmaf_missing_says_so_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import bubbles.evaluation.vmaf as vmaf

    monkeypatch.setattr(vmaf, "ffmpeg_with_vmaf", lambda: (None, "VMAF unavailable: no ffmpeg"))
    scores, note = vmaf.vmaf_frames(np.zeros((2, 16, 16)), np.zeros((2, 16, 16)))
    assert scores is None and note == "VMAF unavailable: no ffmpeg"


def _blob(cy: float, cx: float, size: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return 0.8 - 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0**2))


def test_flow_extrapolation_moves_a_blob_on() -> None:
    """A blob rising 2 px per frame: the flow baseline puts it 2 and 4 px further up at leads 1 and 2, where
    persistence leaves it behind."""
    inputs = np.stack([_blob(30, 20), _blob(28, 20)])[None]
    forecast = baselines.forecast("flow", inputs, 2)
    for k, row in enumerate((26, 24)):
        target = _blob(row, 20)
        assert metrics.mse_frames(forecast[:, k], target[None])[0] < 0.25 * metrics.mse_frames(inputs[:, -1], target[None])[0]
        assert np.unravel_index(np.argmin(forecast[0, k]), target.shape) == (row, 20)


def test_sharpness_ratio() -> None:
    from scipy.ndimage import gaussian_filter

    target = np.random.default_rng(3).uniform(size=(1, 48, 48))  # fine texture: blurring wipes its gradients out
    assert metrics.sharpness_frames(target, target)[0] == pytest.approx(1.0)
    blurred = gaussian_filter(target, sigma=(0, 2, 2))
    assert metrics.sharpness_frames(blurred, target)[0] < 0.3
    assert np.isnan(metrics.sharpness_frames(target, np.full_like(target, 0.5))[0])  # a flat target has no sharpness
