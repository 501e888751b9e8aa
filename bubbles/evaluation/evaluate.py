"""Honest evaluation of a model on a window dataset: per-lead metrics of the model and of every baseline, skill
against the strongest baseline at each lead, per condition, collapse, VMAF.

With several predicted fields, all of this is about the first target field (the one the tables, the lead curves,
the epoch metrics and the objectives report); each target field also gets its mean SSIM, PSNR, MSE, MAE and skill
against persistence (`per_field`, `final_<metric>_<field>` in the summary)."""

from __future__ import annotations

import weakref
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from bubbles.data.windows import WindowDataset, WindowSplits
from bubbles.evaluation import baselines, metrics, tables
from bubbles.evaluation.bubbles import BubbleMeter, DetectorConfig, sequence_detector
from bubbles.evaluation.scoring import MASK_METRICS, PIXEL_METRICS, FrameMetrics, LeadMetrics, skill, strongest_skill  # noqa: F401
from bubbles.evaluation.vmaf import vmaf_frames
from bubbles.models.device import model_device

@dataclass(frozen=True)
class Evaluation:
    """Everything `evaluate` measured. baselines: name -> LeadMetrics (see bubbles.evaluation.baselines); skill:
    name -> per-lead 1 - MSE_model / MSE_baseline; strongest: per lead, the baseline of lowest MSE, and
    skill_vs_strongest the skill against it (the headline). vmaf: 'model' and each baseline -> per-lead VMAF.
    per_condition maps a condition id to its mean metrics over its windows."""

    windows: int
    model: LeadMetrics
    baselines: dict[str, LeadMetrics]
    skill: dict[str, tuple[float, ...]]
    strongest: tuple[str, ...]
    skill_vs_strongest: tuple[float, ...]
    per_condition: dict[str, dict[str, float]]
    collapse_score: float
    collapsed: bool
    vmaf: dict[str, tuple[float, ...]] | None = None
    vmaf_note: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    bubbles: dict[str, tuple[float, ...]] = field(default_factory=dict)  # BubbleMeter.leads() of the model
    baseline_bubble_f1: dict[str, tuple[float, ...]] = field(default_factory=dict)  # per baseline, per lead
    per_field: dict[str, dict[str, float]] = field(default_factory=dict)  # several target fields: means per field
    bubble_f1: float = float("nan")  # the model's F1 from matches summed over every lead and window (BubbleMeter.f1)
    mask: bool = False  # the frames are masks (segmented recordings): IoU and vapour-fraction error are shown

    @property
    def persistence(self) -> LeadMetrics:
        return self.baselines["persistence"]

    @property
    def skill_vs_persistence(self) -> tuple[float, ...]:
        return self.skill["persistence"]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Evaluation:
        """Inverse of to_dict (evaluation.json); also reads evaluations written before the four baselines, and before
        `skill_strongest` was renamed `skill_vs_strongest`."""
        fields = dict(data)
        if "skill_strongest" in fields:  # written before the columns said what they compare against
            fields["skill_vs_strongest"] = fields.pop("skill_strongest")
            renamed = {"skill_persistence": "skill_vs_persistence", "skill_strongest": "skill_vs_strongest"}
            for table in ("per_condition", "per_field"):
                fields[table] = {k: {renamed.get(m, m): v for m, v in row.items()} for k, row in fields.get(table, {}).items()}

        def leads(d: dict) -> LeadMetrics:
            return LeadMetrics(**{k: tuple(v) for k, v in d.items()})

        if "baselines" not in data:  # the two-baseline layout
            fields["baselines"] = {k: data[k] for k in ("persistence", "median")}
            fields["skill"] = {"persistence": data["skill_persistence"], "median": data["skill_median"]}
            for key in ("persistence", "median", "skill_persistence", "skill_median"):
                fields.pop(key)
            mse = {k: v["mse"] for k, v in fields["baselines"].items()}
            _, fields["strongest"], fields["skill_vs_strongest"] = strongest_skill(data["model"]["mse"], mse)
            vmaf = data.get("vmaf")
            fields["vmaf"] = {"model": vmaf} if vmaf is not None else None
        fields["model"] = leads(data["model"])
        fields["baselines"] = {k: leads(v) for k, v in fields["baselines"].items()}
        fields["skill"] = {k: tuple(v) for k, v in fields["skill"].items()}
        fields["strongest"], fields["skill_vs_strongest"] = tuple(fields["strongest"]), tuple(fields["skill_vs_strongest"])
        fields["bubbles"] = {k: tuple(v) for k, v in data.get("bubbles", {}).items()}
        fields["baseline_bubble_f1"] = {k: tuple(v) for k, v in data.get("baseline_bubble_f1", {}).items()}
        if fields.get("vmaf") is not None:
            fields["vmaf"] = {k: tuple(v) for k, v in fields["vmaf"].items()}
        return cls(**fields)

    def pooled_bubble_f1(self) -> float:
        """F1 over all leads from summed matches, as validation's val_bubble_f1 (evaluations saved before it was
        recorded: the mean of the per-lead F1s that are defined)."""
        if not np.isnan(self.bubble_f1) or not self.bubbles:
            return self.bubble_f1
        defined = [v for v in self.bubbles["bubble_f1"] if not np.isnan(v)]
        return float(np.mean(defined)) if defined else float("nan")

    def summary(self) -> dict[str, float]:
        """One number each: means over lead times (what a trial is compared by at its end)."""
        return {
            "final_ssim": self.model.mean("ssim"),
            "final_psnr": self.model.mean("psnr"),
            "final_mse": self.model.mean("mse"),
            "final_sharpness": self.model.mean("sharpness"),
            "final_persistence_ssim": self.persistence.mean("ssim"),
            "final_skill_vs_persistence": float(np.mean(self.skill_vs_persistence)),
            "final_skill_vs_strongest": float(np.mean(self.skill_vs_strongest)),
            "final_collapse_score": self.collapse_score,
            "final_collapsed": float(self.collapsed),
        } | ({"final_bubble_f1": self.pooled_bubble_f1()} if self.bubbles else {}) | (
            {f"final_{k}": self.model.mean(k) for k in MASK_METRICS} if self.mask else {}) | {
            f"final_{metric}_{name}": value for name, row in self.per_field.items() for metric, value in row.items()
        }

    def lead_curves(self) -> dict[str, tuple[float, ...]]:
        """Every per-lead series by a flat name: the model's metrics (ssim, …), each baseline's (persistence_ssim,
        …), skill against each baseline (skill_vs_flow, …) and against the strongest, VMAF (vmaf, flow_vmaf, …), bubble
        metrics (bubble_f1, …, persistence_bubble_f1, …)."""
        shown = lambda k, v: len(v) and (self.mask or k not in MASK_METRICS)  # noqa: E731
        curves: dict[str, tuple[float, ...]] = {k: v for k, v in asdict(self.model).items() if shown(k, v)}
        for b, m in self.baselines.items():
            curves |= {f"{b}_{k}": v for k, v in asdict(m).items() if shown(k, v)}
        curves |= {f"skill_vs_{b}": v for b, v in self.skill.items()} | {"skill_vs_strongest": self.skill_vs_strongest}
        for key, values in (self.vmaf or {}).items():
            curves["vmaf" if key == "model" else f"{key}_vmaf"] = values
        curves |= self.bubbles | {f"{b}_bubble_f1": v for b, v in self.baseline_bubble_f1.items()}
        return curves

    def lead_table(self) -> str:
        """The per-lead tables a researcher keeps by hand (markdown): the headline, then each metric for the model
        and every baseline."""
        return tables.lead_tables(self) + tables.field_lines(self.per_field)

    def condition_table(self) -> str:
        """Per held-out condition (CSV)."""
        return tables.condition_csv(self.per_condition)


def subset(n: int, limit: int) -> list[int]:
    """At most `limit` indices spread evenly over range(n) (all of them when limit is 0)."""
    if limit <= 0 or limit >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, limit).round().astype(int).tolist()))


def detectors(dataset: WindowDataset, indices: list[int]) -> list[DetectorConfig]:
    """The bubble detector for each window: defaults, with what its sequence's `extra.detector` sets."""
    by_sequence: dict[str, DetectorConfig] = {}
    out = []
    for i in indices:
        name = dataset.starts[i][0]
        if name not in by_sequence:
            extra = dataset.cache.store.sequences[name].meta.extra
            by_sequence[name] = sequence_detector(extra, getattr(dataset, "detector_overrides", {}))
        out.append(by_sequence[name])
    return out


def frame_size_of(dataset: WindowDataset, i: int) -> tuple[int, int] | None:
    """The frame size of window i where a dataset's sequences have sizes of their own (tiles: each held-out sequence
    whole at the trained scale); None where every window has one size."""
    sizes = getattr(dataset.cache, "sizes", None)
    return sizes[dataset.starts[i][0]] if sizes else None


def same_size_batches(dataset: WindowDataset, indices: list[int], batch_size: int) -> list[list[int]]:
    """The indices in order, in batches of at most batch_size windows of one frame size (a batch is one tensor)."""
    batches: list[list[int]] = []
    for i in indices:
        if not batches or len(batches[-1]) == batch_size or frame_size_of(dataset, i) != frame_size_of(dataset, batches[-1][-1]):
            batches.append([])
        batches[-1].append(i)
    return batches


@torch.no_grad()
def predict_batches(model: nn.Module, dataset: WindowDataset, indices: list[int], batch_size: int,  # type: ignore[no-untyped-def]
                    target: int | None = 0):
    """Yield (index list, inputs, targets, predictions) as numpy arrays: of one target field, (N, T, H, W), the
    inputs being that field's own past; with target None every field, (N, T, C, H, W). Runs where the model is."""
    model.eval()
    device = model_device(model)
    horizon = dataset.window.output_len
    for idx in same_size_batches(dataset, indices, batch_size):
        xs, ys = zip(*(dataset[i] for i in idx))
        x = torch.stack(xs).to(device)
        pred = model(x, future=horizon).float()
        x, y, pred = x.cpu().numpy(), torch.stack(ys).numpy(), pred.cpu().numpy()
        if target is None:
            yield idx, x, y, pred
        else:
            yield idx, x[:, :, dataset.target_inputs[target]], y[:, :, target], pred[:, :, target]


def training_mean_frame(splits: WindowSplits) -> np.ndarray | None:
    """The climatology: per-pixel mean of every training frame (of the first target field) at the splits' size."""
    return training_mean_frames(splits).get(tuple(splits.frame_size))  # type: ignore[arg-type]


def training_mean_frames(splits: WindowSplits) -> dict[tuple[int, int], np.ndarray]:
    """The climatology of each evaluated frame size: the per-pixel mean of the training frames of that size (the
    first target field). Tiles: a held-out sequence is evaluated at its own size, and its climatology is the mean
    of the training frames at that size (with a time split, its own training part); a size no training sequence
    has gets none (evaluate() then leaves climatology out, as without a mean frame)."""
    wanted = {tuple(s) for s in (*splits.sizes.values(), splits.frame_size)}
    blocks: dict[tuple[int, int], list[np.ndarray]] = {}
    for name, a, b in splits.segments.train:
        if name in splits.sizes:  # read at its held-out size, as its validation frames are
            frames = splits.val.field_frames(name, a, b)
        else:
            frames = splits.train.field_frames(name, a, b)
        if tuple(frames.shape[-2:]) in wanted:
            blocks.setdefault(tuple(frames.shape[-2:]), []).append(frames)  # type: ignore[arg-type]
    return {s: baselines.mean_frame(b) for s, b in blocks.items()}


def evaluate(
    model: nn.Module,
    dataset: WindowDataset,
    batch_size: int = 8,
    max_windows: int = 0,
    with_vmaf: bool = False,
    mean_frame: np.ndarray | dict[tuple[int, int], np.ndarray] | None = None,
    flow_radius_px: int | None = None,
) -> Evaluation:
    """Metrics of the model and of the baselines on the same windows (climatology only when the training mean frame
    is given; flow with its radius measured on training frames when given, bubbles.evaluation.baselines); VMAF per
    lead for all of them when asked for (see bubbles.evaluation.vmaf)."""
    indices = subset(len(dataset), max_windows)
    horizon = dataset.window.output_len
    # One climatology per frame size (tiles: held-out sequences of several sizes); climatology is scored only where
    # every evaluated window has one.
    means = mean_frame if isinstance(mean_frame, dict) else ({} if mean_frame is None else {tuple(mean_frame.shape[-2:]): mean_frame})
    shapes = {frame_size_of(dataset, i) or tuple(dataset.cache.size) for i in indices}  # type: ignore[attr-defined]
    names = [b for b in baselines.BASELINES if b != "climatology" or (means and shapes <= set(means))]
    frames = {k: FrameMetrics() for k in ("model", *names)}
    collapse = metrics.CollapseMeter()
    bubble_meters = {k: BubbleMeter(horizon) for k in frames}
    targets: dict[tuple[int, int], np.ndarray] = {}  # each target frame's bubbles, found once
    conditions: list[str] = []
    vmaf_rows: dict[str, list[np.ndarray]] = {k: [] for k in frames}
    vmaf_note = "" if with_vmaf else "not computed"
    fields = FieldMeter(dataset) if len(dataset.targets) > 1 else None
    for idx, xs, ys, preds in predict_batches(model, dataset, indices, batch_size, target=None):
        if fields is not None:
            fields.add(xs, ys, preds)
        x, y, pred = xs[:, :, dataset.target_inputs[0]], ys[:, :, 0], preds[:, :, 0]
        found = detectors(dataset, idx)
        scale = np.array([c.typical_diameter * x.shape[-2] for c in found])  # bubble px: the flow's window
        mean = means.get(tuple(y.shape[-2:]))
        forecasts = {"model": pred} | {b: baselines.forecast(b, x, horizon, mean, scale, flow_radius_px) for b in names}
        for key, forecast in forecasts.items():
            frames[key].add(forecast, y)
            if with_vmaf and not vmaf_note:
                scores, vmaf_note = vmaf_frames(forecast.reshape(-1, *y.shape[2:]), y.reshape(-1, *y.shape[2:]))
                if scores is not None:
                    vmaf_rows[key].append(scores.reshape(y.shape[:2]))
        collapse.update(pred, y)
        for key, forecast in forecasts.items():
            bubble_meters[key].add(forecast, y, found, targets, idx)
        conditions.extend(dataset.condition_of(i) for i in idx)
        height = y.shape[-2]  # bubble diameters in % of the frame height (tiles: one short side, any width)
    leads = {k: f.leads() for k, f in frames.items()}
    skill, strongest, skill_vs_strongest = strongest_skill(leads["model"].mse, {b: leads[b].mse for b in names})
    score = collapse.score()
    vmaf = {k: tuple(float(v) for v in np.concatenate(r).mean(axis=0)) for k, r in vmaf_rows.items()} if with_vmaf and not vmaf_note else None
    return Evaluation(
        windows=len(indices),
        model=leads["model"],
        baselines={b: leads[b] for b in names},
        skill=skill,
        strongest=strongest,
        skill_vs_strongest=skill_vs_strongest,
        per_condition=_per_condition(frames, names, np.array(conditions)),
        collapse_score=float(score),
        collapsed=bool(score < metrics.COLLAPSE_THRESHOLD),
        vmaf=vmaf,
        vmaf_note=vmaf_note,
        bubbles=bubble_meters["model"].leads(height),
        baseline_bubble_f1={b: bubble_meters[b].leads(height)["bubble_f1"] for b in names},
        per_field=fields.means() if fields is not None else {},
        bubble_f1=bubble_meters["model"].f1(),
        mask=is_mask(dataset),
    )


def is_mask(dataset: WindowDataset) -> bool:
    """Every sequence the dataset reads is a mask (ingest recorded `extra.mask`)."""
    names = {name for name, _ in dataset.starts}
    return bool(names) and all("mask" in dataset.cache.store.sequences[n].meta.extra for n in names)


class FieldMeter:
    """Each target field's model and persistence metrics, for the per-field means of a multi-field evaluation."""

    def __init__(self, dataset: WindowDataset) -> None:
        self.dataset = dataset
        self.frames = {f: (FrameMetrics(), FrameMetrics()) for f in dataset.targets}

    def add(self, xs: np.ndarray, ys: np.ndarray, preds: np.ndarray) -> None:
        """A batch of every field: inputs (N, T, C_in, H, W), targets and predictions (N, M, C_out, H, W)."""
        for k, (model, persist) in enumerate(self.frames.values()):
            model.add(preds[:, :, k], ys[:, :, k])
            persist.add(baselines.persistence(xs[:, :, self.dataset.target_inputs[k]], ys.shape[1]), ys[:, :, k])

    def means(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, (model, persist) in self.frames.items():
            leads, base = model.leads(), persist.leads()
            out[name] = {k: leads.mean(k) for k in ("ssim", "psnr", "mse", "mae")}
            out[name]["skill_vs_persistence"] = float(np.mean(skill(leads.mse, base.mse)))
        return out


def _per_condition(frames: dict[str, FrameMetrics], names: list[str], conditions: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean metrics of each condition's windows: the model's, each baseline's MSE, skill against the strongest."""
    model = {k: frames["model"].array(k) for k in ("ssim", "psnr", "mse")}
    base_mse = {b: frames[b].array("mse") for b in names}
    out = {}
    for cid in sorted(set(conditions.tolist())):
        rows = conditions == cid
        m_mse = model["mse"][rows].mean()
        b_mse = {b: float(v[rows].mean()) for b, v in base_mse.items()}
        out[cid] = {
            "windows": float(rows.sum()),
            "ssim": float(model["ssim"][rows].mean()),
            "psnr": float(model["psnr"][rows].mean()),
            "mse": float(m_mse),
            "persistence_ssim": float(frames["persistence"].array("ssim")[rows].mean()),
            **{f"{b}_mse": v for b, v in b_mse.items()},
            "skill_vs_persistence": float(metrics.skill(m_mse, b_mse["persistence"])),
            # The one definition (scoring.strongest_skill), on the condition's pooled MSEs as one lead.
            "skill_vs_strongest": strongest_skill([m_mse], {b: [v] for b, v in b_mse.items()})[2][0],
        }
    return out


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
    bubble_f1: float  # bubble F1 from the matches summed over every lead and window (BubbleMeter.f1; NaN: no bubble)
    iou: float = float("nan")  # IoU of vapour (prediction and target thresholded at 0.5): the mask metric


# The target windows' bubbles, detected at the first validation of a dataset and reused every epoch after.
_TARGET_BUBBLES: weakref.WeakKeyDictionary[WindowDataset, dict[tuple[int, int], np.ndarray]] = weakref.WeakKeyDictionary()


def persistence_mse(dataset: WindowDataset, max_windows: int = 0) -> tuple[float, ...]:
    """Per-lead MSE of repeating the last input frame of the first target field (model-free: computed once per trial)."""
    rows, c = [], dataset.target_inputs[0]
    for i in subset(len(dataset), max_windows):
        x, y = dataset[i]
        rows.append(((y[:, 0] - x[-1, c]) ** 2).mean(dim=(1, 2)).numpy())
    return tuple(float(v) for v in np.mean(rows, axis=0))


def validate(model: nn.Module, dataset: WindowDataset, batch_size: int, max_windows: int = 0) -> Validation:
    """The model's own metrics only (no baselines): what is computed after every epoch."""
    frames = FrameMetrics()
    collapse = metrics.CollapseMeter()
    bubble_meter = BubbleMeter(dataset.window.output_len)
    targets = _TARGET_BUBBLES.setdefault(dataset, {})
    for idx, _, y, pred in predict_batches(model, dataset, subset(len(dataset), max_windows), batch_size):
        frames.add(pred, y)
        collapse.update(pred, y)
        bubble_meter.add(pred, y, detectors(dataset, idx), targets, idx)
    leads = frames.leads()
    score = collapse.score()
    return Validation(
        mse=leads.mean("mse"), ssim=leads.mean("ssim"), psnr=leads.mean("psnr"),
        collapse_score=float(score), collapsed=bool(score < metrics.COLLAPSE_THRESHOLD), ssim_per_lead=leads.ssim,
        mse_per_lead=leads.mse, bubble_f1=bubble_meter.f1(), iou=leads.mean("iou"),
    )
