"""Honest evaluation of a model on a window dataset: per-lead metrics, two baselines, skill, per condition, collapse."""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from bubbles.evaluation import metrics
from bubbles.evaluation.bubbles import BubbleMeter, DetectorConfig
from bubbles.evaluation.vmaf import vmaf_frames
from bubbles.data.windows import WindowDataset


@dataclass(frozen=True)
class LeadMetrics:
    """Mean over windows of each metric, one value per lead time 1..M."""

    ssim: tuple[float, ...]
    psnr: tuple[float, ...]
    mse: tuple[float, ...]
    mae: tuple[float, ...]

    def mean(self, name: str) -> float:
        return float(np.mean(getattr(self, name)))


@dataclass(frozen=True)
class Evaluation:
    """Everything `evaluate` measured. per_condition maps a condition id to its mean metrics over its windows."""

    windows: int
    model: LeadMetrics
    persistence: LeadMetrics
    median: LeadMetrics
    skill_persistence: tuple[float, ...]
    skill_median: tuple[float, ...]
    per_condition: dict[str, dict[str, float]]
    collapse_score: float
    collapsed: bool
    vmaf: tuple[float, ...] | None = None
    vmaf_note: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    bubbles: dict[str, tuple[float, ...]] = field(default_factory=dict)  # BubbleMeter.leads() of the model

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Evaluation:
        """Inverse of to_dict (evaluation.json)."""
        fields = dict(data)
        for key in ("model", "persistence", "median"):
            fields[key] = LeadMetrics(**{k: tuple(v) for k, v in data[key].items()})
        for key in ("skill_persistence", "skill_median"):
            fields[key] = tuple(data[key])
        fields["vmaf"] = tuple(data["vmaf"]) if data.get("vmaf") is not None else None
        fields["bubbles"] = {k: tuple(v) for k, v in data.get("bubbles", {}).items()}
        return cls(**fields)

    def summary(self) -> dict[str, float]:
        """One number each: means over lead times (what a trial is compared by at its end)."""
        return {
            "final_ssim": self.model.mean("ssim"),
            "final_psnr": self.model.mean("psnr"),
            "final_mse": self.model.mean("mse"),
            "final_persistence_ssim": self.persistence.mean("ssim"),
            "final_skill_persistence": float(np.mean(self.skill_persistence)),
            "final_collapse_score": self.collapse_score,
            "final_collapsed": float(self.collapsed),
        } | {f"final_{k}": float(np.mean(v)) for k, v in self.bubbles.items() if k in ("bubble_f1", "sharpness")}

    def lead_table(self) -> str:
        """The per-lead table a researcher keeps by hand (markdown)."""
        head = "| lead | SSIM | PSNR dB | MSE | SSIM persist. | PSNR persist. | SSIM median | skill vs persist. | skill vs median |"
        lines = [head, "|" + "---|" * 9]
        for k in range(len(self.model.ssim)):
            lines.append(
                f"| {k + 1} | {self.model.ssim[k]:.3f} | {self.model.psnr[k]:.2f} | {self.model.mse[k]:.5f} | "
                f"{self.persistence.ssim[k]:.3f} | {self.persistence.psnr[k]:.2f} | {self.median.ssim[k]:.3f} | "
                f"{self.skill_persistence[k]:+.3f} | {self.skill_median[k]:+.3f} |"
            )
        if self.bubbles:
            b = self.bubbles
            lines += ["", "| lead | bubble F1 | precision | recall | count err. | diameter err. px | centroid err. px | sharpness |", "|" + "---|" * 8]
            for k in range(len(b["bubble_f1"])):
                lines.append(
                    f"| {k + 1} | {b['bubble_f1'][k]:.3f} | {b['bubble_precision'][k]:.3f} | {b['bubble_recall'][k]:.3f} | "
                    f"{b['bubble_count_error'][k]:.2f} | {b['bubble_diameter_error_px'][k]:.2f} | "
                    f"{b['bubble_centroid_error_px'][k]:.2f} | {b['sharpness'][k]:.3f} |"
                )
        if self.vmaf is not None:
            lines.append("\nVMAF per lead (loosely interpretable on small grayscale frames): " + " ".join(f"{v:.1f}" for v in self.vmaf))
        elif self.vmaf_note and self.vmaf_note != "not computed":
            lines.append("\n" + self.vmaf_note)
        return "\n".join(lines)

    def condition_table(self) -> str:
        """Per held-out condition (CSV)."""
        cols = ["windows", "ssim", "psnr", "mse", "persistence_ssim", "persistence_mse", "skill_persistence"]
        lines = ["condition," + ",".join(cols)]
        for cid, row in sorted(self.per_condition.items()):
            lines.append(cid + "," + ",".join(f"{row[c]:.6g}" for c in cols))
        return "\n".join(lines) + "\n"


def subset(n: int, limit: int) -> list[int]:
    """At most `limit` indices spread evenly over range(n) (all of them when limit is 0)."""
    if limit <= 0 or limit >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, limit).round().astype(int).tolist()))


class FrameMetrics:
    """Per-frame metric values, gathered as (windows, leads) arrays."""

    def __init__(self) -> None:
        self.values: dict[str, list[np.ndarray]] = {"ssim": [], "psnr": [], "mse": [], "mae": []}

    def add(self, pred: np.ndarray, target: np.ndarray) -> None:
        n, m = pred.shape[:2]
        p, t = pred.reshape(n * m, *pred.shape[2:]), target.reshape(n * m, *target.shape[2:])
        mse = metrics.mse_frames(p, t)
        self.values["mse"].append(mse.reshape(n, m))
        self.values["psnr"].append(metrics.psnr_from_mse(mse).reshape(n, m))
        self.values["mae"].append(metrics.mae_frames(p, t).reshape(n, m))
        self.values["ssim"].append(metrics.ssim_frames(p, t).reshape(n, m))

    def array(self, name: str) -> np.ndarray:
        return np.concatenate(self.values[name])

    def leads(self) -> LeadMetrics:
        return LeadMetrics(*(tuple(float(v) for v in self.array(k).mean(axis=0)) for k in ("ssim", "psnr", "mse", "mae")))


def detectors(dataset: WindowDataset, indices: list[int]) -> list[DetectorConfig]:
    """The bubble detector for each window: defaults, with what its sequence's `extra.detector` sets."""
    by_sequence: dict[str, DetectorConfig] = {}
    out = []
    for i in indices:
        name = dataset.starts[i][0]
        if name not in by_sequence:
            hints = dataset.cache.store.sequences[name].meta.extra.get("detector", {})
            by_sequence[name] = DetectorConfig().with_store_hints(hints if isinstance(hints, dict) else {})
        out.append(by_sequence[name])
    return out


@torch.no_grad()
def predict_batches(model: nn.Module, dataset: WindowDataset, indices: list[int], device: torch.device, batch_size: int):  # type: ignore[no-untyped-def]
    """Yield (index list, inputs, targets, predictions) as numpy (N, T, H, W) arrays, single channel."""
    model.eval()
    horizon = dataset.window.output_len
    for start in range(0, len(indices), batch_size):
        idx = indices[start : start + batch_size]
        xs, ys = zip(*(dataset[i] for i in idx))
        x = torch.stack(xs).to(device)
        pred = model(x, future=horizon).float()
        yield idx, x[:, :, 0].cpu().numpy(), torch.stack(ys)[:, :, 0].numpy(), pred[:, :, 0].cpu().numpy()


def evaluate(
    model: nn.Module,
    dataset: WindowDataset,
    device: torch.device,
    batch_size: int = 8,
    max_windows: int = 0,
    with_vmaf: bool = False,
) -> Evaluation:
    """Metrics of the model and of persistence and context-median baselines on the same windows; VMAF per lead
    too when asked for (see bubbles.evaluation.vmaf for what it means on small grayscale frames)."""
    indices = subset(len(dataset), max_windows)
    horizon = dataset.window.output_len
    frames = {"model": FrameMetrics(), "persistence": FrameMetrics(), "median": FrameMetrics()}
    collapse = metrics.CollapseMeter()
    bubble_meter = BubbleMeter(horizon)
    conditions: list[str] = []
    vmaf_rows: list[np.ndarray] = []
    vmaf_note = "" if with_vmaf else "not computed"
    for idx, x, y, pred in predict_batches(model, dataset, indices, device, batch_size):
        if with_vmaf and not vmaf_note:
            scores, vmaf_note = vmaf_frames(pred.reshape(-1, *pred.shape[2:]), y.reshape(-1, *y.shape[2:]))
            if scores is not None:
                vmaf_rows.append(scores.reshape(pred.shape[:2]))
        frames["model"].add(pred, y)
        frames["persistence"].add(metrics.persistence(x, horizon), y)
        frames["median"].add(metrics.context_median(x, horizon), y)
        collapse.update(pred, y)
        bubble_meter.add(pred, y, detectors(dataset, idx))
        conditions.extend(dataset.condition_of(i) for i in idx)
    model_leads, pers_leads, med_leads = (frames[k].leads() for k in ("model", "persistence", "median"))
    per_condition = {}
    cond_arr = np.array(conditions)
    model_arrays = {k: frames["model"].array(k) for k in ("ssim", "psnr", "mse")}
    pers_arrays = {k: frames["persistence"].array(k) for k in ("ssim", "mse")}
    for cid in sorted(set(conditions)):
        rows = cond_arr == cid
        m_mse, p_mse = model_arrays["mse"][rows].mean(), pers_arrays["mse"][rows].mean()
        per_condition[cid] = {
            "windows": float(rows.sum()),
            "ssim": float(model_arrays["ssim"][rows].mean()),
            "psnr": float(model_arrays["psnr"][rows].mean()),
            "mse": float(m_mse),
            "persistence_ssim": float(pers_arrays["ssim"][rows].mean()),
            "persistence_mse": float(p_mse),
            "skill_persistence": float(metrics.skill(m_mse, p_mse)),
        }
    score = collapse.score()
    return Evaluation(
        windows=len(indices),
        model=model_leads,
        persistence=pers_leads,
        median=med_leads,
        skill_persistence=tuple(float(v) for v in metrics.skill(np.array(model_leads.mse), np.array(pers_leads.mse))),
        skill_median=tuple(float(v) for v in metrics.skill(np.array(model_leads.mse), np.array(med_leads.mse))),
        per_condition=per_condition,
        collapse_score=float(score),
        collapsed=bool(score < metrics.COLLAPSE_THRESHOLD),
        vmaf=tuple(float(v) for v in np.concatenate(vmaf_rows).mean(axis=0)) if vmaf_rows and not vmaf_note else None,
        vmaf_note=vmaf_note,
        bubbles=bubble_meter.leads(dataset.cache.size),
    )


@dataclass(frozen=True)
class Validation:
    """The per-epoch numbers: mean over windows and leads, MSE per pixel (comparable across sizes and windows)."""

    mse: float
    ssim: float
    psnr: float
    collapse_score: float
    collapsed: bool
    ssim_per_lead: tuple[float, ...]
    mse_per_lead: tuple[float, ...]
    bubble_f1: float  # mean over leads of the bubble F1 (bubbles.evaluation.bubbles)


# The target windows' bubbles, detected at the first validation of a dataset and reused every epoch after.
_TARGET_BUBBLES: weakref.WeakKeyDictionary[WindowDataset, dict[tuple[int, int], tuple[np.ndarray, float]]] = weakref.WeakKeyDictionary()


def persistence_mse(dataset: WindowDataset, max_windows: int = 0) -> tuple[float, ...]:
    """Per-lead MSE of repeating the last input frame (model-free: computed once per trial)."""
    rows = []
    for i in subset(len(dataset), max_windows):
        x, y = dataset[i]
        rows.append(((y[:, 0] - x[-1, 0]) ** 2).mean(dim=(1, 2)).numpy())
    return tuple(float(v) for v in np.mean(rows, axis=0))


def validate(model: nn.Module, dataset: WindowDataset, device: torch.device, batch_size: int, max_windows: int = 0) -> Validation:
    """The model's own metrics only (no baselines): what is computed after every epoch."""
    frames = FrameMetrics()
    collapse = metrics.CollapseMeter()
    bubble_meter = BubbleMeter(dataset.window.output_len)
    targets = _TARGET_BUBBLES.setdefault(dataset, {})
    for idx, _, y, pred in predict_batches(model, dataset, subset(len(dataset), max_windows), device, batch_size):
        frames.add(pred, y)
        collapse.update(pred, y)
        bubble_meter.add(pred, y, detectors(dataset, idx), targets, idx)
    leads = frames.leads()
    score = collapse.score()
    return Validation(
        mse=leads.mean("mse"), ssim=leads.mean("ssim"), psnr=leads.mean("psnr"),
        collapse_score=float(score), collapsed=bool(score < metrics.COLLAPSE_THRESHOLD), ssim_per_lead=leads.ssim,
        mse_per_lead=leads.mse, bubble_f1=float(np.mean(bubble_meter.leads(dataset.cache.size)["bubble_f1"])),
    )
