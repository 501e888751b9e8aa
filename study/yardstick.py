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
from bubbles.data.framesize import frame_size
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
    if ev.size == "native":
        natives = {info.native_size for info in store.sequences.values()}
        if len(natives) != 1:
            raise UserError(f"{space.path}: evaluate.size native: the sequences have several native sizes; give HxW")
        size = natives.pop()
    elif ev.size is not None:
        size = frame_size(store, ev.size)
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
                    target[0] if target else "", step)


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


def leaderboard_note(has_test: bool, top_k: int) -> str:
    """The line under the leaderboard that says what its two kinds of score are."""
    if not has_test:
        return NO_TEST
    return (f"val_*_selection: the yardstick on the validation split, what trials were chosen on (optimistic for the "
            f"winner); test_*_unbiased: the same protocol on the test split, read once after the sweep, for the best "
            f"{top_k} by validation")


def study_yardstick(space: SweepSpace, protocol: Protocol, split: str, sweep_dir: Path, store: FrameStore | None = None) -> Yardstick:
    """The protocol on one split of the study's store, its baselines scored once and cached in the sweep directory
    (a resumed sweep, and the test pass, read them back)."""
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
        _write(cache, yardstick.baselines().to_dict())
        _write(sweep_dir / YARDSTICK_DIR / "protocol.json", protocol.to_dict())
    return yardstick


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
    from bubbles.data.windows import make_splits
    from bubbles.models import build_model
    from bubbles.training.train import load_checkpoint

    record = sweep_dir / YARDSTICK_DIR / "test_scores.json"
    done = {k: YardstickScore.from_dict(v) for k, v in json.loads(record.read_text()).items()} if record.is_file() else {}
    chosen = [r for r in rows if r["trial"] in checkpoints and math.isfinite(r["objective"])][: space.evaluate.test_top_k]
    todo = [r for r in chosen if r["trial"] not in done]
    if not todo:
        return {r["trial"]: done[r["trial"]] for r in chosen if r["trial"] in done}, set()
    yardstick = study_yardstick(space, protocol, "test", sweep_dir)
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


SHOWN = ("ssim", "mse", "bubble_f1", "skill", "skill_min")  # the yardstick's columns on the leaderboard


def columns(validation: dict[str, float] | None, test: dict[str, float] | None) -> dict[str, Any]:
    """A leaderboard row's yardstick columns, side by side: val_<metric>_selection (what the trial was chosen on)
    and test_<metric>_unbiased (NaN outside the top k, or with no test split)."""
    out: dict[str, Any] = {}
    for k in SHOWN:
        out[f"val_{k}_selection"] = (validation or {}).get(k, math.nan)
        out[f"test_{k}_unbiased"] = (test or {}).get(k, math.nan)
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
