"""Pictures: strips label their columns with the frame's time; the per-lead picture has the model and every
baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from bubbles.evaluation.evaluate import Evaluation
from bubbles.evaluation.figures import HEADER, LABEL_WIDTH, bubble_strip, prediction_strip
from bubbles.evaluation.lead_figure import lead_curves_png
from bubbles.evaluation.scoring import LeadMetrics


def _dark_in_band(image: Image.Image, top: int, left: int) -> bool:
    band = np.asarray(image.convert("L"))[top : top + HEADER, left:]
    return bool((band < 160).any())


def test_strips_have_a_time_label_above_each_column() -> None:
    rng = np.random.default_rng(0)
    strip = prediction_strip(rng.random((6, 16, 16)), rng.random((3, 16, 16)), rng.random((3, 16, 16)))
    scale = 96 // 16
    tile = 16 * scale
    # Two header bands: above the inputs (t-5 … t) and above the targets (t+1 … t+3); text only in the bands.
    assert strip.height == 4 * tile + 3 * 4 + 2 * HEADER
    assert _dark_in_band(strip, 0, LABEL_WIDTH) and _dark_in_band(strip, HEADER + tile + 4, LABEL_WIDTH)
    third_lead_column = LABEL_WIDTH + 2 * (tile + 2)
    assert _dark_in_band(strip, HEADER + tile + 4, third_lead_column)  # 't+3'
    assert not _dark_in_band(strip, HEADER + tile + 4, LABEL_WIDTH + 3 * (tile + 2))  # no 4th lead, no label
    bubbles = bubble_strip(rng.random((4, 16, 16)), rng.random((4, 16, 16)))
    assert _dark_in_band(bubbles, 0, LABEL_WIDTH)


def _evaluation() -> Evaluation:
    def lm(v: float) -> LeadMetrics:
        return LeadMetrics(ssim=(v, v - 0.1, v - 0.2), psnr=(30, 28, 26), mse=(0.01, 0.02, 0.03), mae=(0.1, 0.1, 0.1))

    return Evaluation(windows=4, model=lm(0.9), baselines={"persistence": lm(0.8), "median": lm(0.5)},
                      skill={"persistence": (0.1, 0.1, 0.1), "median": (0.2, 0.2, 0.2)}, strongest=("persistence",) * 3,
                      skill_vs_strongest=(0.1, 0.1, 0.1), per_condition={}, collapse_score=1.0, collapsed=False)


def test_lead_picture_draws_model_and_every_baseline(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    seen: list[list[str]] = []
    real = plt.Figure.savefig

    def spy(fig, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append([line.get_label() for line in fig.axes[0].get_lines()])
        return real(fig, *args, **kwargs)

    plt.Figure.savefig = spy  # type: ignore[method-assign]
    try:
        path = lead_curves_png(_evaluation(), "t", tmp_path / "lead.png")
    finally:
        plt.Figure.savefig = real  # type: ignore[method-assign]
    assert seen == [["model", "median", "persistence"]]
    width, height = Image.open(path).size
    # Two panels a row, no wider than a 1,400 px screen shows at full size (issue 31: 1680x380 was unreadable).
    assert 1000 <= width <= 1400 and height > width / 2, (width, height)
