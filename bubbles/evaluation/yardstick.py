"""The study's yardstick: every trial scored on the same target frames, at the same resolution, on the same leads.

A Protocol names the lead times scored, the frame size they are scored at, the target frames and the spacing
`frame_step` (P) of the frames: lead k is k·P stored frames after the last context frame, and the context frames are
P apart. For every held-out segment, the first target frame of the first window lies `context`·P frames after the
segment's start (the longest input any trial of the study may read), the next one `stride` frames later, at most
`windows` of them, evenly spaced. A trial whose own frame_step s divides P reads its context s frames apart ending
at the same last frame and rolls out to lead k·P/s of its own (a study's P is the least common multiple of the
frame_step values its space can pick, so every trial is scored on the same frames at the same spacing). A trial with a shorter input reads only the frames just before the same targets; one predicting
fewer frames than the largest lead rolls out on its own predictions; one predicting more is scored on the
protocol's leads only; a smaller trial's predictions are resized (bilinear) to the protocol's size before any
metric, and bubbles are detected at that size. The baselines are scored once per study on the same frames
(`baseline_scores`), and a per-epoch objective uses a fixed, evenly spaced subset of the windows (`epoch_rows`).
All numbers come from bubbles.evaluation.scoring.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bubbles.data.store import FrameStore
from bubbles.data.framesize import scaled_frame_size
from bubbles.data.tiles import ScaledCaches
from bubbles.data.windows import FrameCache, Segment, WindowDataset
from bubbles.errors import UserError
from bubbles.evaluation import baselines as baseline_table
from bubbles.evaluation.bubbles import DetectorConfig, sequence_detector
from bubbles.evaluation.scoring import MASK_METRICS, PIXEL_METRICS, Scores, strongest_skill
from bubbles.models.device import model_device

# The yardstick's objectives: means over the protocol's leads. skill is against the strongest baseline per lead.
METRICS = ("ssim", "mse", "psnr", "bubble_f1", "iou", "skill_vs_strongest")  # iou: of vapour, for masks
Target = tuple[str, int]  # a protocol window: sequence, index of its first target frame


@dataclass(frozen=True)
class Protocol:
    """How every trial of a study is scored (see the module docstring). field: the stored field scored (a
    multi-field store's first target field)."""

    leads: tuple[int, ...]
    size: tuple[int, int]
    context: int
    stride: int
    windows: int = 64
    epoch_windows: int = 8
    baselines: tuple[str, ...] = baseline_table.BASELINES
    field: str = ""
    frame_step: int = 1
    # Tiles: every sequence scored whole at its own size, short side `scale` and its aspect kept (then `size` is
    # the largest of them, for the record); 0: every sequence at `size`.
    scale: int = 0

    @property
    def horizon(self) -> int:
        return max(self.leads)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Protocol:
        return cls(**{**data, "leads": tuple(data["leads"]), "size": tuple(data["size"]), "baselines": tuple(data["baselines"])})


def targets(protocol: Protocol, segments: tuple[Segment, ...]) -> list[Target]:
    """The protocol's windows in these segments: the same for every trial, whatever its own window."""
    p = protocol.frame_step
    found = [(name, t) for name, a, b in segments
             for t in range(a + protocol.context * p, b - (protocol.horizon - 1) * p, protocol.stride)]
    return [found[i] for i in spread(len(found), protocol.windows)]


def spread(n: int, limit: int) -> list[int]:
    """At most `limit` indices spread evenly over range(n) (all of them when limit is 0)."""
    if limit <= 0 or limit >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, limit).round().astype(int).tolist()))


def epoch_rows(protocol: Protocol, n: int) -> np.ndarray:
    """The per-epoch subset of the n protocol windows: evenly spaced, the same every epoch and every trial."""
    return np.array(spread(n, protocol.epoch_windows), dtype=int)


@dataclass(frozen=True)
class YardstickScore:
    """A model (and the baselines) on the protocol's windows of one split. per_lead: metric -> one value per
    protocol lead (ssim, psnr, mse, mae, sharpness, bubble_f1, skill_vs_strongest against the strongest baseline,
    skill_vs_<b> against each); baselines: name -> metric -> per lead; strongest: the strongest baseline per lead."""

    split: str
    protocol: Protocol
    windows: tuple[Target, ...]
    per_lead: dict[str, tuple[float, ...]]
    baselines: dict[str, dict[str, tuple[float, ...]]]
    strongest: tuple[str, ...]
    flow_radius: dict[str, Any] = field(default_factory=dict)  # the flow baseline's measured ILK radius (baselines)

    def means(self) -> dict[str, float]:
        """The objectives: each metric's mean over the protocol's leads."""
        def mean(values: tuple[float, ...]) -> float:
            finite = [v for v in values if np.isfinite(v)]  # bubble F1 is NaN at a lead where no frame has a bubble
            return float(np.mean(finite)) if finite else float("nan")

        out = {k: mean(self.per_lead.get(k, ())) for k in METRICS}  # iou: absent from scores saved before it
        # The worst lead's skill against the strongest baseline: >= 0 means never worse than a free forecast at any
        # lead (a champion rule's condition, issue 27).
        skills = [v for v in self.per_lead.get("skill_vs_strongest", ()) if np.isfinite(v)]
        out["skill_vs_strongest_min"] = float(min(skills)) if skills else float("nan")
        out["bubble_f1_margin_min"] = self.bubble_f1_margin_min()
        return out

    def bubble_f1_margin_min(self) -> float:
        """The worst lead's bubble F1 minus the best baseline's bubble F1 at that lead: >= 0 means as good at
        placing bubbles as every baseline at every lead (the other half of issue 27's goal for a champion). NaN
        without a lead where both are defined."""
        mine = self.per_lead.get("bubble_f1", ())
        margins = []
        for k, value in enumerate(mine):
            theirs = [m["bubble_f1"][k] for m in self.baselines.values() if "bubble_f1" in m and np.isfinite(m["bubble_f1"][k])]
            if np.isfinite(value) and theirs:
                margins.append(value - max(theirs))
        return float(min(margins)) if margins else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "protocol": self.protocol.to_dict(), "windows": [list(w) for w in self.windows],
                "per_lead": self.per_lead, "baselines": self.baselines, "strongest": self.strongest, "means": self.means(),
                "flow_radius": self.flow_radius}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> YardstickScore:
        return cls(data["split"], Protocol.from_dict(data["protocol"]), tuple((str(n), int(t)) for n, t in data["windows"]),
                   {_renamed(k): tuple(v) for k, v in data["per_lead"].items()},
                   {b: {k: tuple(v) for k, v in m.items()} for b, m in data["baselines"].items()}, tuple(data["strongest"]),
                   data.get("flow_radius", {}))


def _renamed(key: str) -> str:
    """A per-lead key as written before the skill keys said what they compare against (skill, skill_flow)."""
    if key == "skill":
        return "skill_vs_strongest"
    return f"skill_vs_{key.removeprefix('skill_')}" if key.startswith("skill_") and not key.startswith("skill_vs_") else key


@dataclass
class BaselineScores:
    """The baselines' per-window scores on a split's protocol windows (computed once per study, then cached)."""

    split: str
    windows: tuple[Target, ...]
    scores: Scores
    flow_radius: dict[str, Any] = field(default_factory=dict)  # {"radius_px": r, "lead1_mse": {r: mse}, "windows": n}

    def to_dict(self) -> dict[str, Any]:
        s = self.scores
        return {"split": self.split, "windows": [list(w) for w in self.windows], "flow_radius": self.flow_radius,
                "pixels": {b: {k: f.array(k).tolist() for k in PIXEL_METRICS} for b, f in s.frames.items()},
                "bubbles": {b: np.stack(c.rows).tolist() for b, c in s.bubbles.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], leads: int) -> BaselineScores:
        scores = Scores(list(data["pixels"]), leads)
        for b, table in data["pixels"].items():
            scores.frames[b].values = {k: [np.asarray(v, dtype=float)] for k, v in table.items()}
            scores.bubbles[b].rows = list(np.asarray(data["bubbles"][b], dtype=float))
        return cls(data["split"], tuple((str(n), int(t)) for n, t in data["windows"]), scores, data.get("flow_radius", {}))


class Yardstick:
    """The protocol on one split of one store: its target frames at the protocol's size, its windows, the
    baselines' scores on them, and the target bubbles (detected once)."""

    def __init__(self, protocol: Protocol, store: FrameStore, segments: tuple[Segment, ...], split: str,
                 train_segments: tuple[Segment, ...] = (), baselines: BaselineScores | None = None,
                 detector_overrides: dict[str, Any] | None = None) -> None:
        self.protocol = protocol
        self.split = split
        self.store = store
        if protocol.scale:
            names = {n for n, _, _ in (*segments, *train_segments)}
            self.sizes = {n: scaled_frame_size(store.sequences[n].native_size, min(protocol.scale, *store.sequences[n].native_size))
                          for n in names}
            self.cache: FrameCache | ScaledCaches = ScaledCaches(store, self.sizes)
        else:
            self.sizes = {}
            self.cache = FrameCache(store, protocol.size)
        self.windows = tuple(targets(protocol, segments))
        if not self.windows:
            raise UserError(f"evaluate: the {split} split has no window of {protocol.context} context frames and "
                            f"{protocol.horizon} leads (lower evaluate.leads, or hold out longer sequences)")
        self.train_segments = train_segments
        self._target_bubbles: dict[tuple[int, int], np.ndarray] = {}
        self._detectors = [detector(store, name, detector_overrides) for name, _ in self.windows]
        if baselines is not None and baselines.windows != self.windows:
            raise UserError(f"evaluate: the cached baseline scores of the {split} split are of other windows; delete the cache")
        self._baselines = baselines

    def field_frames(self, name: str, start: int, stop: int, step: int = 1) -> np.ndarray:
        """Frames start, start + step, ... < stop as (N, H, W) floats in [0, 1] of the scored field at the
        protocol's size."""
        frames = self.cache.frames(name, start, stop)[::step]
        if frames.ndim == 4:
            fields = self.store.sequences[name].fields
            if self.protocol.field not in fields:
                raise UserError(f"evaluate: sequence {name} has no field {self.protocol.field!r} (it has "
                                f"{', '.join(fields)}): the yardstick scores that field")
            frames = frames[:, fields.index(self.protocol.field)]
        return frames.astype(np.float32) / 255.0

    def size_of(self, name: str) -> tuple[int, int]:
        """The size a sequence is scored at."""
        return self.sizes.get(name, self.protocol.size)

    def groups(self, rows: list[int], size: int) -> list[list[int]]:
        """The rows in order, in batches of at most `size` windows of one scored frame size."""
        out: list[list[int]] = []
        for r in rows:
            if not out or len(out[-1]) == size or self.size_of(self.windows[r][0]) != self.size_of(self.windows[out[-1][-1]][0]):
                out.append([])
            out[-1].append(r)
        return out

    @property
    def height(self) -> int:
        """The frame height bubble sizes are given in % of (tiles: the short side every sequence shares)."""
        return self.protocol.scale or self.protocol.size[0]

    def target_frames(self, rows: list[int]) -> np.ndarray:
        """(N, L, H, W): the protocol's leads of the chosen windows."""
        out = []
        for r in rows:
            name, t0 = self.windows[r]
            p = self.protocol.frame_step
            block = self.field_frames(name, t0, t0 + (self.protocol.horizon - 1) * p + 1, p)
            out.append(block[[k - 1 for k in self.protocol.leads]])
        return np.stack(out)

    def strongest(self) -> tuple[str, ...]:
        """The strongest baseline (lowest MSE over every protocol window) at each protocol lead."""
        frames = self.baselines().scores.frames
        mse = {b: f.leads().mse for b, f in frames.items()}
        return tuple(min(mse, key=lambda b: mse[b][k]) for k in range(len(self.protocol.leads)))

    def baselines(self) -> BaselineScores:
        """The baselines on every window, from protocol.context frames at the protocol's size (once)."""
        if self._baselines is None:
            p = self.protocol
            means = self._training_means() if "climatology" in p.baselines and self.train_segments else {}
            scored = {self.size_of(n) for n, _ in self.windows}
            names = [b for b in p.baselines if b != "climatology" or (means and scored <= set(means))]
            measured = self._flow_radius() if "flow" in names else {}
            scores = Scores(names, len(p.leads))
            for rows in self.groups(list(range(len(self.windows))), 16):
                context = np.stack([self.field_frames(n, t - p.context * p.frame_step, t, p.frame_step)
                                    for n, t in (self.windows[r] for r in rows)])
                picks = [k - 1 for k in p.leads]
                scale = np.array([self._detectors[r].typical_diameter * context.shape[-2] for r in rows])  # flow's window
                mean = means.get(tuple(context.shape[-2:]))
                forecasts = {b: baseline_table.forecast(b, context, p.horizon, mean, scale, measured.get("radius_px"))[:, picks]
                             for b in names}
                scores.add(forecasts, self.target_frames(rows), [self._detectors[r] for r in rows], self._target_bubbles, rows)
            self._baselines = BaselineScores(self.split, self.windows, scores, measured)
        return self._baselines

    def _flow_radius(self) -> dict[str, Any]:
        """The flow baseline's ILK radius measured on training frames at the protocol's spacing and size (the lowest
        lead-1 MSE; baselines.measure_flow_radius); empty without training frames (the rule of thumb then)."""
        p = self.protocol.frame_step
        found = [(name, t) for name, a, b in self.train_segments for t in range(a + 2 * p, b)]
        if not found:
            return {}
        picks = [found[i] for i in spread(len(found), baseline_table.FLOW_RADIUS_WINDOWS)]
        # Tiles: sequences of several sizes share one short side; the radius is measured on the commonest size.
        sizes = [self.size_of(name) for name, _ in picks]
        common = max(set(sizes), key=sizes.count)
        picks = [w for w, s in zip(picks, sizes) if s == common]
        triples = np.stack([self.field_frames(name, t - 2 * p, t + 1, p) for name, t in picks])
        scale = float(np.median([d.typical_diameter for d in self._detectors])) * self.height
        radius, errors = baseline_table.measure_flow_radius(triples, scale or None)
        return {"radius_px": radius, "lead1_mse": {str(r): e for r, e in errors.items()}, "windows": len(picks)}

    def _training_means(self) -> dict[tuple[int, int], np.ndarray]:
        """The climatology of each scored size: the per-pixel mean of every training frame of the scored field at
        that size (one size without tiles)."""
        totals: dict[tuple[int, int], tuple[np.ndarray, int]] = {}
        for name, a, b in self.train_segments:
            size = self.size_of(name)
            total, count = totals.get(size, (np.zeros(size), 0))
            for start in range(a, b, 256):
                block = self.field_frames(name, start, min(b, start + 256))
                total = total + block.sum(axis=0, dtype=np.float64)
                count += len(block)
            totals[size] = (total, count)
        return {s: (t / max(c, 1)).astype(np.float32) for s, (t, c) in totals.items()}

    @torch.no_grad()
    def score(self, model: nn.Module, dataset: WindowDataset, batch_size: int = 8, epoch: bool = False) -> YardstickScore:
        """Score a trained model: all the protocol's windows, or (epoch) the per-epoch subset. `dataset` is the
        trial's own window dataset of the same split: its frames at the trial's size, its fields and window. Runs
        where the model is (bubbles.models.device)."""
        p = self.protocol
        device = model_device(model)
        rows = epoch_rows(p, len(self.windows)).tolist() if epoch else list(range(len(self.windows)))
        n_in = dataset.window.input_len
        own = dataset.window.frame_step
        if p.frame_step % own:
            raise UserError(f"evaluate: this trial's frame_step {own} does not divide the protocol's {p.frame_step}; "
                            "its forecasts never land on the scored frames")
        ratio = p.frame_step // own  # own leads per protocol lead
        target = self.scored_target(dataset)
        model.eval()
        scores = Scores(["model"], len(p.leads))
        for chosen in self.groups(rows, batch_size):
            x = torch.stack([self._context(dataset, self.windows[r], n_in) for r in chosen]).to(device)
            pred = rollout(model, x, dataset.window.output_len, p.horizon * ratio, dataset.channels == dataset.targets)
            pred = pred[:, [k * ratio - 1 for k in p.leads], target].float()
            size = self.size_of(self.windows[chosen[0]][0])
            if tuple(pred.shape[-2:]) != size:
                pred = F.interpolate(pred, size=size, mode="bilinear", align_corners=False, antialias=True)
            scores.add({"model": pred.clamp(0, 1).cpu().numpy()}, self.target_frames(chosen),
                       [self._detectors[r] for r in chosen], self._target_bubbles, chosen)
        return self._summary(scores, np.array(rows))

    def scored_target(self, dataset: WindowDataset) -> int:
        """The index of the protocol's field among the trial's predicted fields; a trial that does not predict it
        cannot be scored on it (one line), never silently on its first field instead."""
        field = self.protocol.field
        if not field and len(dataset.targets) <= 1:
            return 0  # a protocol of a one-field store made before fields were named
        if field not in dataset.targets:
            raise UserError(f"evaluate: the yardstick scores field {field!r}, this trial predicts "
                            f"[{', '.join(dataset.targets)}]")
        return dataset.targets.index(field)

    def _context(self, dataset: WindowDataset, window: Target, n_in: int) -> torch.Tensor:
        """The trial's own input frames (its size, its fields, its frame_step apart), the last one the protocol's
        last context frame (one protocol step before the first target)."""
        name, t0 = window
        own, last = dataset.window.frame_step, t0 - self.protocol.frame_step
        frames = dataset.cache.frames(name, last - (n_in - 1) * own, last + 1)[::own]
        if frames.ndim == 3:
            frames = frames[:, None]
        fields = self.store.sequences[name].fields
        inputs = [fields.index(f) for f in dataset.channels] if frames.shape[1] > 1 else [0]
        return torch.from_numpy(frames[:, inputs].astype(np.float32) / 255.0)

    def _summary(self, model: Scores, rows: np.ndarray) -> YardstickScore:
        base = self.baselines().scores
        height = self.height
        leads = {b: f.leads(rows) for b, f in base.frames.items()}
        mine = model.frames["model"].leads()
        each, strongest, skill = strongest_skill(mine.mse, {b: m.mse for b, m in leads.items()})
        per_lead = {k: getattr(mine, k) for k in PIXEL_METRICS} | {
            "bubble_f1": model.bubbles["model"].leads(height)["bubble_f1"], "skill_vs_strongest": skill,
        } | {f"skill_vs_{b}": v for b, v in each.items()}
        table = {b: {k: getattr(m, k) for k in ("ssim", "psnr", "mse", *MASK_METRICS)} | {"bubble_f1": base.bubbles[b].leads(height, rows)["bubble_f1"]}
                 for b, m in leads.items()}
        return YardstickScore(self.split, self.protocol, tuple(self.windows[r] for r in rows), per_lead, table, strongest,
                              self.baselines().flow_radius)


@torch.no_grad()
def rollout(model: nn.Module, window: torch.Tensor, horizon: int, steps: int, feedback: bool = True) -> torch.Tensor:
    """Predict `steps` frames after the context window (B, T, C_in, H, W) -> (B, steps, C_out, H, W): in chunks of
    the trained horizon, each chunk's predictions becoming the newest context frames of the next (which needs the
    predicted fields to be the input fields: `feedback`)."""
    if steps > horizon and not feedback:
        raise UserError(f"this model predicts other fields than it reads, so it cannot roll out past its {horizon} "
                        f"frame(s) to lead {steps}")
    n_in = window.shape[1]
    out: list[torch.Tensor] = []
    done = 0
    while done < steps:
        pred = model(window, future=horizon)
        out.append(pred)
        done += pred.shape[1]
        if done < steps:
            window = torch.cat([window, pred.to(window.dtype)], dim=1)[:, -n_in:]
    return torch.cat(out, dim=1)[:, :steps]


def detector(store: FrameStore, name: str, overrides: dict | None = None) -> DetectorConfig:
    """The bubble detector of one sequence: defaults, its `extra.detector` calibration, the user's overrides."""
    return sequence_detector(store.sequences[name].meta.extra, overrides)
