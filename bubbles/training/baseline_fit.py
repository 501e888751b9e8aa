"""The baseline start's initial weights: per lead, the least-squares combination of persistence, climatology and
flow that best predicts the TRAINING windows (bubbles.models.baseline_start). Nothing here reads the validation or
test frames: the climatology is the training frames' mean, and the fit uses training windows only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from bubbles.config import TrialConfig
from bubbles.data.windows import WindowSplits
from bubbles.evaluation.baselines import measure_flow_radius
from bubbles.evaluation.evaluate import subset, training_mean_frame
from bubbles.models.baseline_start import SOURCES, BaselineStart

FIT_WINDOWS = 128  # training windows the fit reads (evenly spaced): 3 unknowns per lead need few
RADIUS_WINDOWS = 32  # of them, for choosing the flow's ILK window (one flow per candidate radius each)
BATCH = 16


@dataclass(frozen=True)
class StartFit:
    """What the fit found, per lead: the weights of each source and the MSE on the fitted windows of the blend and
    of each source alone (the blend is never worse than the best of them there: each is a special case)."""

    sources: tuple[str, ...]
    weights: tuple[tuple[float, ...], ...]
    blend_mse: tuple[float, ...]
    source_mse: dict[str, tuple[float, ...]]
    windows: int
    flow_radius: int = 0  # the flow source's ILK window (px), chosen on training frames; 0: no flow

    def line(self) -> str:
        """One line for the console: lead 1 0.91 persistence + 0.09 climatology (MSE 0.0011; best alone ...)."""
        parts = []
        for lead, (w, mse) in enumerate(zip(self.weights, self.blend_mse), start=1):
            terms = " + ".join(f"{v:.2f} {s}" for s, v in zip(self.sources, w))
            best = min(self.sources, key=lambda s: self.source_mse[s][lead - 1])
            parts.append(f"lead {lead}: {terms} (MSE {mse:.5f}; {best} alone {self.source_mse[best][lead - 1]:.5f})")
        radius = f" (flow ILK radius {self.flow_radius} px)" if self.flow_radius else ""
        return f"baseline start, fitted on {self.windows} training windows{radius}: " + "; ".join(parts)


def training_flow_radius(splits: WindowSplits, max_windows: int = FIT_WINDOWS) -> int:
    """The ILK window (px) whose flow forecast best predicts lead 1 of training windows (evenly spaced), as the
    yardstick chooses its own on training frames (bubbles.evaluation.baselines.measure_flow_radius)."""
    indices = subset(len(splits.train), max_windows)
    pairs = [splits.train[indices[k]] for k in subset(len(indices), RADIUS_WINDOWS)]
    triples = np.stack([np.concatenate([x[-2:, 0].numpy(), y[:1, 0].numpy()]) for x, y in pairs])
    return int(measure_flow_radius(triples)[0])


def start_flow_motion(model: torch.nn.Module, splits: WindowSplits) -> int | None:
    """For a model whose motion starts from the flow baseline's field (evolution's `flow_motion`, wrapped by the
    baseline start or not): measure that field's ILK radius on training windows, set it, and say it. None when the
    model has no such field (or one context frame)."""
    inner = model.inner if isinstance(model, BaselineStart) else model
    if not getattr(getattr(inner, "cfg", None), "flow_motion", False) or splits.train.window.input_len < 2:
        return None
    radius = training_flow_radius(splits)
    inner.flow_radius.fill_(float(radius))
    print(f"flow motion: the motion starts from the optical-flow field (ILK radius {radius} px, measured on training windows)", flush=True)
    return radius


def _fit_batches(splits: WindowSplits, indices: list[int], tiles: bool, device: torch.device
                 ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """The fitted windows in batches (x, y, tile origin or None)."""
    train = splits.train
    with_origin = tiles and hasattr(train, "with_origin")
    if with_origin:
        train.with_origin = True  # type: ignore[attr-defined]
    try:
        out = []
        for start in range(0, len(indices), BATCH):
            items = [train[i] for i in indices[start : start + BATCH]]
            origin = torch.stack([it[2] for it in items]) if with_origin else None
            out.append((torch.stack([it[0] for it in items]).to(device), torch.stack([it[1] for it in items]).to(device).float(), origin))
        return out
    finally:
        if with_origin:
            train.with_origin = False  # type: ignore[attr-defined]


@torch.no_grad()
def fit_baseline_start(model: BaselineStart, splits: WindowSplits, tiles: bool, max_windows: int = FIT_WINDOWS) -> StartFit:
    """Fill the model's climatology (training frames' mean at the evaluated size; none with several fields) and set
    its weights to the per-lead least-squares blend on training windows; the gate stays at 0, so the untrained model
    is that blend. With tiles each training tile's blend takes the same tile of the climatology."""
    cfg = model.cfg
    device = model.weights.device
    mean = None if cfg.out_channels != 1 else training_mean_frame(splits)
    if mean is not None and mean.shape != tuple(cfg.frame_size):
        mean = None
    model.sources.copy_(torch.tensor([1.0, float(mean is not None), float(splits.train.window.input_len >= 2)]))
    if mean is not None:
        model.climatology.copy_(torch.from_numpy(mean)[None].to(device))
    leads = cfg.output_len
    indices = subset(len(splits.train), max_windows)
    if model.sources[2] > 0:  # the flow's ILK window, chosen on training frames as the yardstick chooses its own
        model.flow_radius.fill_(float(training_flow_radius(splits, max_windows)))
    used: list[str] = []
    gram = np.zeros((leads, len(SOURCES), len(SOURCES)))
    rhs = np.zeros((leads, len(SOURCES)))
    sq = {s: np.zeros(leads) for s in SOURCES}
    pixels = 0
    batches = _fit_batches(splits, indices, tiles, device)  # read once: tiles are drawn anew at every read
    for x, y, origin in batches:
        found = model.baselines(x, leads, origin)
        used = [s for s in SOURCES if s in found]
        # (leads, k, pixels): each source's frames per lead, flattened over windows, fields and pixels
        cols = torch.stack([found[s].transpose(0, 1).reshape(leads, -1) for s in used], 1).double().cpu().numpy()
        target = y.transpose(0, 1).reshape(leads, -1).double().cpu().numpy()
        idx = [SOURCES.index(s) for s in used]
        gram[np.ix_(range(leads), idx, idx)] += np.einsum("lkp,ljp->lkj", cols, cols)
        rhs[:, idx] += np.einsum("lkp,lp->lk", cols, target)
        for j, s in enumerate(used):
            sq[s] += ((cols[:, j] - target) ** 2).sum(axis=1)
        pixels += target.shape[1]
    idx = [SOURCES.index(s) for s in used]
    weights = np.zeros((leads, len(SOURCES)))
    for lead in range(leads):
        g = gram[lead][np.ix_(idx, idx)]
        ridge = 1e-9 * max(np.trace(g), 1e-12)  # a tiny ridge: two sources may coincide (flow ~ persistence)
        w = np.linalg.solve(g + ridge * np.eye(len(idx)), rhs[lead, idx])
        weights[lead, idx] = w
    model.weights.copy_(torch.from_numpy(weights).float().to(device))
    model.gate.zero_()
    # The blend's MSE on the same windows (clipped to [0, 1] as the model clips it), for the console and the test.
    total = np.zeros(leads)
    for x, y, origin in batches:
        found = model.baselines(x, leads, origin)
        blend = sum(model.weights[:, SOURCES.index(s)].view(1, leads, 1, 1, 1) * found[s] for s in used)
        total += ((blend.clamp(0, 1) - y) ** 2).transpose(0, 1).reshape(leads, -1).sum(1).double().cpu().numpy()
    return StartFit(tuple(used), tuple(tuple(float(weights[lead, SOURCES.index(s)]) for s in used) for lead in range(leads)),
                    tuple((total / max(pixels, 1)).tolist()), {s: tuple((sq[s] / max(pixels, 1)).tolist()) for s in used},
                    len(indices), int(model.flow_radius.item()) if "flow" in used else 0)


def start_baselines(model: BaselineStart, cfg: TrialConfig, splits: WindowSplits, out_dir: Path) -> StartFit:
    """Fit the baseline start before training (not on resume: the weights come from the checkpoint); say what it
    found, and keep it beside the checkpoints (baseline_start.json)."""
    start_flow_motion(model, splits)  # first: the fit reads the family's own frame, which flows along that field
    fit = fit_baseline_start(model, splits, tiles=cfg.data.tile is not None)
    print(fit.line(), flush=True)
    (out_dir / "baseline_start.json").write_text(json.dumps(asdict(fit), indent=1))
    return fit
