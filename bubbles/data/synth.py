"""Synthetic bubble-flow stores: `synth` sequences of the bubble flow (bubbles/data/bubble_flow.py), each from its
own initial condition and seed, byte-identical for any worker count, written atomically with their ground truth."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bubbles.data.bubble_flow import (
    FlowCondition, SURFACE_MARGIN, crop_window, generate_sequence, sample_condition,
)
from bubbles.data.geometry import PLATE_TOP
from bubbles.data.store import SequenceMeta, write_store
from bubbles.errors import UserError

@dataclass(frozen=True)
class SynthConfig:
    """What `synth` makes: sequences × frames at size (S for S x S, or (H, W)), `conditions` distinct initial
    conditions."""

    sequences: int = 8
    frames: int = 200
    size: int | tuple[int, int] = 128
    seed: int = 0
    conditions: int | None = None  # None: one condition per sequence
    fps: float = 30.0

    def validate(self) -> None:
        if self.sequences < 1 or self.frames < 2:
            raise UserError(f"synth: --sequences must be >= 1 and --frames >= 2 (got {self.sequences}, {self.frames})")
        if not 0 <= self.seed < 2**63:
            raise UserError(f"synth: --seed must be in [0, 2**63) (got {self.seed})")
        sides = (self.size,) if isinstance(self.size, int) else self.size
        if min(sides) < 16 or max(sides) > 2048:
            raise UserError(f"synth: --size sides must be in [16, 2048] (got {self.size})")
        if self.conditions is not None and not 1 <= self.conditions <= self.sequences:
            raise UserError(f"synth: --conditions must be in [1, {self.sequences}] (got {self.conditions})")


def detector_hints(cond: FlowCondition, size: int | tuple[int, int] = 1) -> dict[str, str | float]:
    """What the bubble detector should look at in this flow's frames: dark-rimmed bubbles in the liquid between
    the free surface (with room for its ripples) and the heated plate, whose nucleation cavities are no bubbles
    (fractions of the height of a frame of `size`, cropped as crop_window says)."""
    side, top, _, h, _ = crop_window(size)

    def row(fraction: float) -> float:
        return round(min(1.0, max(0.0, (fraction * side - top) / h)), 4)

    return {"polarity": "dark", "roi_top": row(PLATE_TOP - cond.liquid_level + SURFACE_MARGIN), "roi_bottom": row(PLATE_TOP)}


def _one(args: tuple[SynthConfig, int, FlowCondition, np.random.SeedSequence]) -> tuple[str, np.ndarray, SequenceMeta]:
    cfg, k, cond, seed = args
    frames, style, truth = generate_sequence(cond, cfg.frames, cfg.size, seed)
    meta = SequenceMeta(
        source=f"synth:seed={cfg.seed}:index={k}",
        fps=cfg.fps,
        condition=cond.as_dict(),
        extra={"render": asdict(style), "generator": "bubbles.synth v1", "detector": detector_hints(cond, cfg.size)},
        truth=truth,
    )
    return f"seq{k:03d}", frames, meta


def plan(cfg: SynthConfig) -> list[tuple[SynthConfig, int, FlowCondition, np.random.SeedSequence]]:
    """The per-sequence work: conditions drawn from one stream, a child seed per sequence."""
    cfg.validate()
    root = np.random.SeedSequence(cfg.seed)
    cond_seed, seq_seed = root.spawn(2)
    cond_rng = np.random.default_rng(cond_seed)
    n_cond = cfg.conditions or cfg.sequences
    conditions = [sample_condition(cond_rng) for _ in range(n_cond)]
    seeds = seq_seed.spawn(cfg.sequences)
    return [(cfg, k, conditions[k % n_cond], seeds[k]) for k in range(cfg.sequences)]


def generate(cfg: SynthConfig, workers: int = 1) -> Iterator[tuple[str, np.ndarray, SequenceMeta]]:
    """Yield (name, frames, meta) for every sequence, in order; identical bytes for any worker count."""
    jobs = plan(cfg)
    if workers <= 1:
        yield from map(_one, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(_one, jobs)


def synth_store(path: str, cfg: SynthConfig, workers: int = 1, progress: Callable[[int], object] | None = None) -> None:
    """Generate a whole synthetic store at `path` (atomically); `progress(1)` after each sequence."""

    def counted() -> Iterator[tuple[str, np.ndarray, SequenceMeta]]:
        for item in generate(cfg, workers):
            yield item
            if progress is not None:
                progress(1)

    write_store(path, counted())


def new_synthetic_store(store: Path, cfg: SynthConfig, workers: int, progress: Callable[[int], object] | None = None) -> str:
    """`synth`: generate a store where nothing is yet (an existing path is refused, never replaced); the line
    that says what was written."""
    cfg.validate()
    if store.exists():
        raise UserError(f"{store}: already exists (remove it or choose another path)")
    synth_store(str(store.resolve()), cfg, workers, progress=progress)
    h, w = (cfg.size, cfg.size) if isinstance(cfg.size, int) else cfg.size
    return f"wrote {cfg.sequences} sequences x {cfg.frames} frames at {h}x{w} to {store}"
