"""One picture of a model's per-lead curves beside every baseline's (MLflow draws one metric per chart, so the
model and its baselines never meet there)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bubbles.evaluation.evaluate import Evaluation

PANELS = (("ssim", "SSIM (higher is better)"), ("psnr", "PSNR dB (higher is better)"), ("mse", "MSE (lower is better)"))


def lead_curves_png(evaluation: Evaluation, title: str, path: Path) -> Path:
    """Write `path`: one panel per metric (SSIM, PSNR, MSE, and bubble F1 when measured), two a row, x = lead time,
    the model as a thick line and each baseline as a thin dashed one, in the same colours on every panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = list(PANELS) + ([("bubble_f1", "bubble F1 (higher is better)")] if evaluation.bubbles.get("bubble_f1") else [])
    # Two panels a row: 1,320 px wide, so MLflow's artifact pane (and a 1,400 px screen) shows it at full size.
    rows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(12, 4.0 * rows + 0.7), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    leads = np.arange(1, len(evaluation.model.mse) + 1)
    for ax, (metric, label) in zip(axes.flat, panels):
        if metric == "bubble_f1":
            model = evaluation.bubbles["bubble_f1"]
            baselines = {b: v for b, v in evaluation.baseline_bubble_f1.items()}
        else:
            model = getattr(evaluation.model, metric)
            baselines = {b: getattr(m, metric) for b, m in evaluation.baselines.items()}
        ax.plot(leads, model, "o-", color="black", linewidth=2.2, label="model")
        for k, (name, values) in enumerate(sorted(baselines.items())):
            ax.plot(leads[: len(values)], values, "x--", color=f"C{k}", linewidth=1.2, label=name)
        ax.set_xlabel("lead time (frames ahead)", fontsize=11)
        ax.set_title(label, fontsize=12)
        ax.tick_params(labelsize=10)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=11, frameon=False)  # below, off the data
    fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.6 / (4.0 * rows + 0.7), 1, 1))
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
