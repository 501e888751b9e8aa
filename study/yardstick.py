"""A study's yardstick: the space file's `evaluate:` section, the protocol it gives (bubbles.evaluation.yardstick),
the baselines scored once per study and cached beside the sweep, and the test-split pass after the sweep.

Schema (every key optional)::

    evaluate:
      leads: 4             # lead times scored: N means 1..N, or a list [1, 2, 4]; default 1..the longest output
      size: 32             # scored at: a short side, HxW or native; default the largest image_size the space samples
      stride: 4            # frames between protocol windows (default: the largest lead, so targets do not overlap)
      windows: 64          # at most this many protocol windows, evenly spaced (0: all)
      epoch_windows: 8     # the per-epoch objective's fixed subset of them
      test_top_k: 3        # after the sweep, the best k by validation are scored once on the test split
      baselines: [persistence, median, climatology, flow]
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bubbles.data.fields import resolve_fields
from bubbles.data.framesize import frame_size, scaled_frame_size
from bubbles.data.store import FrameStore
from bubbles.data.windows import split_segments
from bubbles.errors import UserError
from bubbles.evaluation.verdict import Verdict
from bubbles.evaluation.yardstick import METRICS, BaselineScores, Protocol, Yardstick, YardstickScore
from study.evaluate_section import KEYS, EvaluateSettings, parse_evaluate  # noqa: F401 (the section's schema)

if TYPE_CHECKING:
    from study.space import SweepSpace

YARDSTICK_DIR = "yardstick"  # in the sweep directory: protocol.json, baselines_<split>.json, test_scores.json
NO_TEST = "no test split: this study holds out no test sequences (set data.test or data.test_fraction), so no unbiased score"
VALIDATION = "validation (selection)"
TEST = "test (unbiased)"


def protocol_of(space: SweepSpace, store: FrameStore) -> Protocol:
    """The study's protocol: what `evaluate:` says, the rest derived from every corner of the search space (the
    longest context and output, the largest frame size, the first target field)."""
    from study.space import corner_configs

    configs = [cfg for _, cfg in corner_configs(space)]
    ev = space.evaluate
    context = max(c.window.input_len for c in configs)
    leads = ev.leads or tuple(range(1, max(c.window.output_len for c in configs) + 1))
    scale = 0
    if ev.size == "native":
        natives = {info.native_size for info in store.sequences.values()}
        if len(natives) != 1:
            raise UserError(f"{space.path}: evaluate.size native: the sequences have several native sizes; give HxW")
        size = natives.pop()
    elif ev.size is not None:
        size = frame_size(store, ev.size)
    elif any(c.data.tile is not None for c in configs):
        # Tiles: each sequence scored whole at its own size (short side `scale`, aspect kept), the same for every trial.
        scale = max(c.data.image_size for c in configs if isinstance(c.data.image_size, int))
        sizes = [scaled_frame_size(i.native_size, min(scale, *i.native_size)) for i in store.sequences.values()]
        size = max(sizes, key=lambda s: (s[0] * s[1], s))
    else:
        size = max((frame_size(store, c.data.image_size, c.data.size_multiple) for c in configs), key=lambda s: (s[0] * s[1], s))
    predicted = set()
    for c in configs:
        channels, targets = resolve_fields(store, c.data.channels, c.data.targets, c.data.feedback)
        predicted.add(targets)
        if c.window.output_len < max(leads) and channels != targets:
            raise UserError(f"{space.path}: evaluate.leads: a trial predicting [{', '.join(targets)}] from "
                            f"[{', '.join(channels)}] in {c.window.output_len} frame(s) cannot roll out to lead "
                            f"{max(leads)}; lower evaluate.leads or predict the fields read")
    if len(predicted) > 1:  # load_space refuses such a space first; a protocol must never pick one of them
        raise UserError(f"{space.path}: trials of this space predict different fields "
                        f"({'; '.join('[' + ', '.join(t) + ']' for t in sorted(predicted))}); the yardstick scores one")
    target = predicted.pop()
    step = study_frame_step(space, configs)
    return Protocol(leads, size, context, ev.stride or max(leads) * step, ev.windows, ev.epoch_windows, ev.baselines,
                    target[0] if target else "", step, scale)


def reach_notes(space: SweepSpace, store: FrameStore, protocol: Protocol) -> list[str]:
    """Why some trials of this space cannot reach the baselines on this protocol, one line each (issue 27): a trial
    smaller than the protocol's size is scored on its forecasts upsampled, against baselines made from the
    full-size frames, so it starts below them whatever it learns; a baseline-start trial predicting fewer frames
    than the leads blends the baselines only over its own frames and rolls out on its own predictions after."""
    from study.space import corner_configs

    configs = [cfg for _, cfg in corner_configs(space)]
    h, w = protocol.size
    # Tiled trials are scored per sequence at their own sizes (protocol.scale): not upsampled to one size.
    smaller = sorted({frame_size(store, c.data.image_size, c.data.size_multiple) for c in configs if c.data.tile is None} - {protocol.size})
    smaller = [s for s in smaller if s[0] * s[1] < h * w]
    out = []
    if smaller:
        sizes = ", ".join(f"{a}x{b}" for a, b in smaller)
        out.append(f"note: trials at {sizes} px are scored at {h}x{w} px on their upsampled forecasts, against baselines made "
                   f"from {h}x{w} px frames: they start below every baseline and rarely catch up (search {h}x{w} px only, "
                   "or lower evaluate.size, to compare like with like)")
    can_start = space.base.get("baseline_start") is True or any(
        d.name == "baseline_start" and True in (d.choices or ()) for d in space.dimensions)
    short = sorted({c.window.output_len for c in configs if c.window.output_len < protocol.horizon}) if can_start else []
    if short:
        out.append(f"note: baseline-start trials predicting {', '.join(map(str, short))} frame(s) blend the baselines up to "
                   f"that lead only and roll out on their own predictions to lead {protocol.horizon}: by construction they "
                   "start from the strongest baseline at their own leads, not at every scored lead")
    return out


def study_frame_step(space: SweepSpace, configs: list[Any]) -> int:
    """The yardstick's spacing: the least common multiple of every frame_step the space can pick, so that each
    trial's forecasts (its own frame_step apart) land on the scored frames."""
    steps = {c.window.frame_step for c in configs}
    for dim in space.dimensions:
        if dim.name == "frame_step":
            steps |= set(dim.choices) if dim.kind == "categorical" else set(range(int(dim.low), int(dim.high) + 1, int(dim.step or 1)))
    step = math.lcm(*(int(s) for s in steps))
    if step > 1000:
        raise UserError(f"{space.path}: frame_step values {sorted(steps)} have no common multiple up to 1000 frames; "
                        "search values that divide one another (e.g. [1, 2, 4, 8])")
    return step


def open_store(space: SweepSpace) -> FrameStore:
    from study.space import corner_configs

    return FrameStore.open(corner_configs(space)[0][1].data.store)


def check_recorded(protocol: Protocol, sweep_dir: Path) -> None:
    """A continued sweep must keep the protocol its trials were scored on."""
    record = sweep_dir / YARDSTICK_DIR / "protocol.json"
    if record.is_file() and Protocol.from_dict(json.loads(record.read_text())) != protocol:
        raise UserError(f"{record}: this sweep's trials were scored on another protocol than the space file's `evaluate:` "
                        "now gives; start a new sweep (--name) to score on the new one")


def column_notes(has_test: bool, top_k: int, strongest_val: str = "", strongest_test: str = "",
                 interrupted: bool = False) -> list[tuple[str, str]]:
    """The lines under a leaderboard, each with the column it explains: (key, line). A key names a column, a
    prefix ending in '_' (yardstick_, test_) or a suffix starting with '_' (_skill_vs_strongest); `notes_for` keeps
    the lines of the columns a table shows. strongest_*: the strongest baseline per lead in words
    (bubbles.evaluation.scoring.strongest_named) on each split's protocol windows."""
    named = "; ".join(f"on {split}: {b}" for split, b in (("validation", strongest_val), ("test", strongest_test)) if b)
    notes = [
        ("objective", "objective: the sweep's objective (a yardstick objective: best.pt on every protocol window; "
                      "otherwise the best epoch on the trial's own validation windows)"),
        ("yardstick_", "yardstick_*: the yardstick on the validation split, the same windows for every trial, what "
                       "trials were chosen on (optimistic for the winner)"),
        ("test_", f"test_*: the same protocol on the test split, read once after the sweep, for the best {top_k} by "
                  "validation (the unbiased score)"),
        ("_skill_vs_strongest", "skill_vs_strongest: 1 - MSE / MSE of the strongest baseline at each lead, mean over "
                                f"leads{f' ({named})' if named else ''}; below 0 loses to a forecast that costs nothing"),
        ("skill_vs_persistence", "skill_vs_persistence: 1 - MSE / MSE of persistence, on the trial's own validation "
                                 "windows and leads (not comparable across trials of other windows or sizes)"),
        ("beats_all_baselines", "beats_all_baselines: on the test split, lower MSE than every baseline at every lead "
                                "(yes / no)"),
        ("loses_from_lead", "loses_from_lead: on the test split, the first lead where a baseline has the lower MSE "
                            "(empty: none)"),
        ("bubble_f1", "bubble_f1: best.pt's final evaluation on every validation window of its own leads (TP/FP/FN "
                      "pooled over frames and leads; a forecast without bubbles scores 0)"),
    ]
    if not has_test:
        notes.append(("", NO_TEST))
    elif interrupted:
        notes.append(("", "no test scores yet: the sweep was interrupted, and the test split is read once, after every "
                          "trial has finished"))
    return notes


def notes_for(columns: list[str], notes: list[tuple[str, str]]) -> str:
    """The note lines of the columns shown (and the lines that explain an absence: key '')."""
    def shown(key: str) -> bool:
        if not key:
            return True
        if key.startswith("_"):
            return any(c.endswith(key) for c in columns)
        if key.endswith("_"):
            return any(c.startswith(key) for c in columns)
        return key in columns

    return "\n".join(line for key, line in notes if shown(key))


def study_yardstick(space: SweepSpace, protocol: Protocol, split: str, sweep_dir: Path,
                    echo: Any = None, store: FrameStore | None = None) -> Yardstick:
    """The protocol on one split of the study's store, its baselines scored once and cached in the sweep directory
    (a resumed sweep, and the test pass, read them back); `echo` is told before the baselines are scored."""
    from study.space import corner_configs

    cfg = corner_configs(space)[0][1]
    store = store or FrameStore.open(cfg.data.store)
    segments = split_segments(store, cfg.data.split)
    cache = sweep_dir / YARDSTICK_DIR / f"baselines_{split}.json"
    cached = None
    if cache.is_file():
        cached = BaselineScores.from_dict(json.loads(cache.read_text()), len(protocol.leads))
    yardstick = Yardstick(protocol, store, getattr(segments, split), split, segments.train, cached,
                          detector_overrides=dict(cfg.data.detector))  # the space's `detector:` settings, if any
    if cached is None:
        if echo is not None:
            echo(f"scoring the baselines ({', '.join(protocol.baselines)}) once on the {len(yardstick.windows)} "
                 f"{'validation' if split == 'val' else split} windows of the yardstick ...")
        _write(cache, yardstick.baselines().to_dict())
        _write(sweep_dir / YARDSTICK_DIR / "protocol.json", protocol.to_dict())
    return yardstick


def strongest_recorded(sweep_dir: Path) -> str:
    """The strongest baseline at each lead, in words, on each split whose baselines the sweep scored (from its
    cached scores): 'on validation: flow; on test: flow at leads 1-2, persistence at lead 4' ('' before any)."""
    from bubbles.evaluation.scoring import strongest_named

    record = sweep_dir / YARDSTICK_DIR / "protocol.json"
    if not record.is_file():
        return ""
    protocol = Protocol.from_dict(json.loads(record.read_text()))
    said = []
    for split, label in (("val", "validation"), ("test", "test")):
        cache = sweep_dir / YARDSTICK_DIR / f"baselines_{split}.json"
        if not cache.is_file():
            continue
        frames = BaselineScores.from_dict(json.loads(cache.read_text()), len(protocol.leads)).scores.frames
        mse = {b: f.leads().mse for b, f in frames.items()}
        per_lead = tuple(min(mse, key=lambda b: mse[b][k]) for k in range(len(protocol.leads)))
        said.append(f"on {label}: {strongest_named(per_lead, protocol.leads)}")
    return "; ".join(said)


def has_test_split(space: SweepSpace, store: FrameStore | None = None) -> bool:
    from study.space import corner_configs

    cfg = corner_configs(space)[0][1]
    return bool(split_segments(store or FrameStore.open(cfg.data.store), cfg.data.split).test)


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def test_pass(space: SweepSpace, protocol: Protocol, sweep_dir: Path, rows: list[dict[str, Any]],
              checkpoints: dict[str, Path], echo: Any = print, device: Any = None) -> tuple[dict[str, YardstickScore], set[str]]:
    """Score the best `test_top_k` trials by validation (rows ranked, best first) once on the test split with the
    same protocol: (trial id -> score, the trials scored now). A trial scored before (a resumed sweep) is read
    back, never scored again. The models run on `device` (default: CUDA when present, else the CPU)."""
    import torch

    from bubbles.config import from_json
    from bubbles.data.splits import make_splits
    from bubbles.models import build_model
    from bubbles.training.train import load_checkpoint

    record = sweep_dir / YARDSTICK_DIR / "test_scores.json"
    done = {k: YardstickScore.from_dict(v) for k, v in json.loads(record.read_text()).items()} if record.is_file() else {}
    chosen = [r for r in rows if r["trial"] in checkpoints and math.isfinite(r["objective"])][: space.evaluate.test_top_k]
    todo = [r for r in chosen if r["trial"] not in done]
    if not todo:
        return {r["trial"]: done[r["trial"]] for r in chosen if r["trial"] in done}, set()
    echo(f"test split: scoring the best {len(todo)} trial(s) by validation once on the held-out test sequences ...")
    yardstick = study_yardstick(space, protocol, "test", sweep_dir, echo)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    for r in todo:
        state = load_checkpoint(checkpoints[r["trial"]], device)
        cfg = from_json(state["config"])
        model = build_model(cfg.model_name, cfg.model).to(device)  # the yardstick runs where the model is
        model.load_state_dict(state["model"])
        splits = make_splits(cfg.data, cfg.window)
        done[r["trial"]] = yardstick.score(model, splits.test, cfg.train.batch_size)
        echo(f"test split: trial {r['trial']} scored on {len(yardstick.windows)} protocol windows")
    _write(record, {k: v.to_dict() for k, v in done.items()})
    return {r["trial"]: done[r["trial"]] for r in chosen if r["trial"] in done}, {r["trial"] for r in todo}


SHOWN = ("ssim", "mse", "bubble_f1", "skill_vs_strongest", "skill_vs_strongest_min", "bubble_f1_margin_min")  # the yardstick's columns on the leaderboard


def columns(validation: dict[str, float] | None, test: dict[str, float] | None) -> dict[str, Any]:
    """A leaderboard row's yardstick columns, side by side: yardstick_<metric> (on the validation split: what the
    trial was chosen on) and test_<metric> (the test split; NaN outside the top k, or with no test split)."""
    out: dict[str, Any] = {}
    for k in SHOWN:
        out[f"yardstick_{k}"] = (validation or {}).get(k, math.nan)
        out[f"test_{k}"] = (test or {}).get(k, math.nan)
    return out


def test_verdict(sweep_dir: Path, trial: str) -> Verdict | None:
    """Which baselines a trial beats per lead on the test split, from the sweep's test record (None: not scored)."""
    record = sweep_dir / YARDSTICK_DIR / "test_scores.json"
    scores = json.loads(record.read_text()) if record.is_file() else {}
    return Verdict.of(scores[trial]) if trial in scores else None


def champion_line(champion: dict[str, Any], sweep_dir: Path) -> str:
    """The sweep's closing word on its champion: which baselines it beats on the test split, lead by lead."""
    verdict = test_verdict(sweep_dir, str(champion["trial"]))
    who = f"champion {str(champion['trial'])[:8]}{' (' + str(champion['model']) + ')' if champion.get('model') else ''}"
    if verdict is None:
        return f"{who} was not scored on the test split (no checkpoint or no finite objective)"
    return f"{who} on the test split: {verdict.sentence()}"
