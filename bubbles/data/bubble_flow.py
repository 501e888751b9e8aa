"""The synthetic bubble flow's physics: a Lagrangian bubble-particle model (nucleation at a nozzle or a heated plate,
growth, rise at terminal velocity, merging, breakup, bursting at the free surface), drawn frame by frame and rendered
like a backlit shadowgraph (bubbles/data/shadowgraph.py). bubbles/data/synth.py turns it into stores.

Physics lives in resolution-free units (lengths in frame heights, time in frames) and draws only from its own
random stream; rendering draws from another. So the same condition and seed give the same flow at 64² and 256²,
and changing the sensor noise does not change where the bubbles go.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from bubbles.data.geometry import NOZZLE_TIP, NOZZLE_X, PLATE_TOP
from bubbles.data.shadowgraph import RenderStyle, background, render
from bubbles.data.store import TRUTH_COLUMNS

Regime = Literal["nozzle", "boiling", "mixed"]

MAX_BUBBLES = 96
WARMUP_FRAMES = 80  # simulated before recording so the column is already developed
MERGE_FRAMES = 3  # a coalescence is animated over this many frames
SPLIT_GUARD_FRAMES = 6  # daughters of a breakup do not re-merge at once
SURFACE_MARGIN = 0.03  # frame heights below the mean free surface that its ripples and resting bubbles reach

# States of a bubble.
ATTACHED, RISING, RESTING, MERGING = 0, 1, 2, 3


@dataclass(frozen=True)
class FlowCondition:
    """The physical initial condition of one sequence (what a split by condition holds out).

    regime: which sources are active; gas_flow: nozzle gas volume per frame (relative units, 0 = off);
    superheat: wall superheat in K, sets how often nucleation sites fire; n_sites: nucleation sites on the
    plate; liquid_level: free surface height above the plate (frame heights); radius_mean / radius_spread:
    lognormal departure radius of site bubbles (frame heights / log-std); coalescence: probability per frame
    that two touching bubbles merge; breakup_radius: bubbles larger than this may split; wobble: zig-zag
    amplitude of large bubbles (relative).
    """

    regime: Regime = "mixed"
    gas_flow: float = 0.8
    superheat: float = 12.0
    n_sites: int = 4
    liquid_level: float = 0.7
    radius_mean: float = 0.018
    radius_spread: float = 0.25
    coalescence: float = 0.6
    breakup_radius: float = 0.05
    wobble: float = 0.5

    def as_dict(self) -> dict[str, str | float | int]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


CONDITION_RANGES: dict[str, tuple[float, float]] = {
    "gas_flow": (0.3, 1.6),
    "superheat": (4.0, 20.0),
    "n_sites": (2, 6),
    "liquid_level": (0.62, 0.8),
    "radius_mean": (0.016, 0.032),
    "radius_spread": (0.1, 0.35),
    "coalescence": (0.2, 0.9),
    "breakup_radius": (0.04, 0.06),
    "wobble": (0.0, 1.0),
}


def sample_condition(rng: np.random.Generator) -> FlowCondition:
    """Draw one initial condition uniformly from CONDITION_RANGES (a documented, frozen set of parameters)."""
    regime: Regime = rng.choice(["nozzle", "boiling", "mixed"]).item()
    v = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in CONDITION_RANGES.items()}
    return FlowCondition(
        regime=regime,
        gas_flow=0.0 if regime == "boiling" else v["gas_flow"],
        superheat=0.0 if regime == "nozzle" else v["superheat"],
        n_sites=int(round(v["n_sites"])),
        liquid_level=v["liquid_level"],
        radius_mean=v["radius_mean"],
        radius_spread=v["radius_spread"],
        coalescence=v["coalescence"],
        breakup_radius=v["breakup_radius"],
        wobble=v["wobble"],
    )


def terminal_velocity(r: np.ndarray) -> np.ndarray:
    """Rise speed (frame heights per frame): Stokes-like ∝ r² for small bubbles, ∝ √r for large ones."""
    return np.minimum(45.0 * r**2, 0.11 * np.sqrt(r))


class BubbleFlow:
    """The Lagrangian state of one flow: bubbles as arrays of position, radius, velocity, depth and state."""

    def __init__(self, cond: FlowCondition, rng: np.random.Generator) -> None:
        self.cond = cond
        self.rng = rng
        n = MAX_BUBBLES
        self.alive = np.zeros(n, bool)
        self.x, self.z, self.r = np.zeros(n), np.zeros(n), np.zeros(n)
        self.vx, self.vz = np.zeros(n), np.zeros(n)
        self.depth, self.phase = np.zeros(n), np.zeros(n)
        self.state = np.zeros(n, np.int8)
        self.timer = np.zeros(n, np.int32)
        self.target = np.zeros(n)  # departure radius while attached
        self.partner = np.full(n, -1)
        self.guard = np.zeros(n, np.int32)
        self.sites = np.sort(
            (np.arange(cond.n_sites) + 0.5 + rng.uniform(-0.2, 0.2, cond.n_sites)) / cond.n_sites * 0.84 + 0.08
        )
        self.sites = self.sites[np.abs(self.sites - NOZZLE_X) > 0.05]
        self.site_wait = rng.exponential(self._mean_wait(), len(self.sites)).astype(int)
        self.site_bubble = np.full(len(self.sites), -1)
        self.nozzle_bubble = -1
        self.ripples: list[tuple[float, float, float]] = []  # (x0, age, amplitude)

    def _mean_wait(self) -> float:
        return 200.0 / max(self.cond.superheat, 1e-3)

    def _spawn(self, x: float, z: float, r: float) -> int:
        free = np.flatnonzero(~self.alive)
        if len(free) == 0:
            return -1
        i = int(free[0])
        self.alive[i] = True
        self.x[i], self.z[i], self.r[i] = x, z, r
        self.vx[i] = self.vz[i] = 0.0
        self.depth[i] = self.rng.uniform(0.0, 1.0)
        self.phase[i] = self.rng.uniform(0, 2 * math.pi)
        self.state[i], self.timer[i], self.partner[i], self.guard[i] = ATTACHED, 0, -1, 0
        return i

    def step(self) -> None:
        """Advance the flow by one frame."""
        self._sources()
        self._rise()
        self._coalesce()
        self._breakup()
        self._surface()
        self.ripples = [(x0, age + 1, a) for x0, age, a in self.ripples if age < 40]

    def _sources(self) -> None:
        c = self.cond
        if c.superheat > 0:
            for s, x in enumerate(self.sites):
                b = self.site_bubble[s]
                if b >= 0:
                    # Diffusion-controlled growth r ∝ √t until the departure radius, then detach.
                    self.timer[b] += 1
                    self.r[b] = self.target[b] * min(1.0, math.sqrt(self.timer[b] / 6.0))
                    self.z[b] = self.r[b] * 0.8
                    if self.timer[b] >= 6:
                        self.state[b], self.vz[b] = RISING, 0.002
                        self.site_bubble[s] = -1
                        self.site_wait[s] = int(self.rng.exponential(self._mean_wait())) + 2
                elif self.site_wait[s] <= 0:
                    r0 = c.radius_mean * math.exp(self.rng.normal(0.0, c.radius_spread))
                    b = self._spawn(float(x), 0.0, r0 * 0.3)
                    if b >= 0:
                        self.target[b] = r0
                        self.depth[b] = 0.3 * self.depth[b]
                        self.site_bubble[s] = b
                else:
                    self.site_wait[s] -= 1
        if c.gas_flow > 0:
            b = self.nozzle_bubble
            if b < 0:
                b = self._spawn(NOZZLE_X, NOZZLE_TIP, 0.004)
                if b >= 0:
                    self.depth[b] = 0.2
                    # Detachment radius grows weakly with flow (Davidson–Schüler: r ∝ q^0.4).
                    self.target[b] = 0.03 * (c.gas_flow**0.4) * math.exp(self.rng.normal(0, 0.08))
                    self.nozzle_bubble = b
                return
            volume = self.r[b] ** 3 + 2.5e-6 * c.gas_flow
            self.r[b] = volume ** (1 / 3)
            self.z[b] = NOZZLE_TIP + self.r[b] * 0.9
            if self.r[b] >= self.target[b]:
                self.state[b], self.vz[b] = RISING, 0.004
                self.nozzle_bubble = -1

    def _rise(self) -> None:
        c = self.cond
        rising = self.alive & (self.state == RISING)
        idx = np.flatnonzero(rising)
        if len(idx) == 0:
            return
        vt = terminal_velocity(self.r[idx])
        # Wake acceleration: a follower in the wake of a bubble above it rises faster (chain coalescence).
        dx = self.x[idx][None, :] - self.x[idx][:, None]
        dz = self.z[idx][None, :] - self.z[idx][:, None]
        leader_r = self.r[idx][None, :]
        in_wake = (dz > 0) & (np.abs(dx) < 1.5 * leader_r) & (dz < 8 * leader_r)
        boost = np.where(in_wake, np.exp(-dz / (4 * leader_r)), 0.0).max(axis=1, initial=0.0)
        vt = vt * (1.0 + 0.8 * boost)
        self.vz[idx] += (vt - self.vz[idx]) * 0.35
        large = np.clip((self.r[idx] - 0.015) / 0.02, 0.0, 1.0)
        self.phase[idx] += 0.45
        wobble = c.wobble * large * 0.006 * np.cos(self.phase[idx])
        self.vx[idx] = 0.85 * self.vx[idx] + self.rng.normal(0.0, 0.0006, len(idx))
        self.x[idx] = np.clip(self.x[idx] + self.vx[idx] + wobble, self.r[idx], 1 - self.r[idx])
        self.z[idx] += self.vz[idx]
        self.guard[idx] = np.maximum(self.guard[idx] - 1, 0)

    def _coalesce(self) -> None:
        merging = np.flatnonzero(self.alive & (self.state == MERGING))
        for i in merging:
            j = self.partner[i]
            k = self.timer[i]
            # Move the small bubble into the big one and hand over its volume in equal steps (conserved).
            self.x[i] += (self.x[j] - self.x[i]) / k
            self.z[i] += (self.z[j] - self.z[i]) / k
            dv = self.r[i] ** 3 / k
            self.r[i] = max(self.r[i] ** 3 - dv, 0.0) ** (1 / 3)
            self.r[j] = (self.r[j] ** 3 + dv) ** (1 / 3)
            self.timer[i] -= 1
            if self.timer[i] <= 0:
                self.alive[i] = False
        idx = np.flatnonzero(self.alive & (self.state == RISING) & (self.guard == 0))
        if len(idx) < 2:
            return
        d = np.hypot(self.x[idx][:, None] - self.x[idx][None, :], self.z[idx][:, None] - self.z[idx][None, :])
        touch = d < 0.95 * (self.r[idx][:, None] + self.r[idx][None, :])
        pairs = np.argwhere(np.triu(touch, 1))
        taken: set[int] = set()
        for a, b in pairs:
            i, j = int(idx[a]), int(idx[b])
            if i in taken or j in taken:
                continue
            taken.update((i, j))
            if self.rng.uniform() < self.cond.coalescence:
                small, big = (i, j) if self.r[i] < self.r[j] else (j, i)
                self.state[small], self.partner[small], self.timer[small] = MERGING, big, MERGE_FRAMES
            else:
                push = 0.003 if self.x[i] < self.x[j] else -0.003
                self.vx[i] -= push
                self.vx[j] += push

    def _breakup(self) -> None:
        big = np.flatnonzero(self.alive & (self.state == RISING) & (self.r > self.cond.breakup_radius))
        for i in big:
            if self.rng.uniform() > 0.12:
                continue
            u = self.rng.uniform(0.35, 0.65)
            r0 = self.r[i]
            j = self._spawn(self.x[i], self.z[i], r0 * (1 - u) ** (1 / 3))
            if j < 0:
                return
            self.r[i] = r0 * u ** (1 / 3)
            # Daughters start overlapping and drift apart over a few frames (the split is seen, not a jump).
            self.state[j], self.vz[j], self.depth[j] = RISING, self.vz[i], self.depth[i]
            self.vx[i], self.vx[j] = -0.25 * r0, 0.25 * r0
            self.guard[i] = self.guard[j] = SPLIT_GUARD_FRAMES

    def _surface(self) -> None:
        level = self.cond.liquid_level
        arriving = self.alive & (self.state == RISING) & (self.z + 0.8 * self.r >= level)
        for i in np.flatnonzero(arriving):
            self.state[i], self.timer[i], self.vz[i] = RESTING, int(self.rng.integers(3, 10)), 0.0
            self.z[i] = level - 0.8 * self.r[i]
        resting = np.flatnonzero(self.alive & (self.state == RESTING))
        for i in resting:
            self.timer[i] -= 1
            if self.timer[i] <= 0:
                self.alive[i] = False
                self.ripples.append((float(self.x[i]), 0.0, float(self.r[i]) * 0.5))

    def truth(self, frame: int, size: int) -> np.ndarray:
        """The bubbles drawn in this frame as rows of TRUTH_COLUMNS (positions in image coordinates, fractions of
        the frame; radius in frame heights): the ground truth a bubble detector is checked against."""
        idx = np.flatnonzero(self.alive & (self.r * size >= 0.4))  # the renderer skips sub-pixel bubbles
        rows = np.empty((len(idx), len(TRUTH_COLUMNS)), np.float32)
        rows[:, 0], rows[:, 1] = frame, idx
        rows[:, 2], rows[:, 3], rows[:, 4] = self.x[idx], PLATE_TOP - self.z[idx], self.r[idx]
        rows[:, 5], rows[:, 6] = self.state[idx], self.depth[idx]
        return rows

    def surface_height(self, x: np.ndarray) -> np.ndarray:
        """Free-surface height over x, with the damped ripples left by bursts."""
        h = np.full_like(x, self.cond.liquid_level)
        for x0, age, amp in self.ripples:
            width = 0.02 + 0.006 * age
            h += amp * math.exp(-age / 12.0) * np.cos(60.0 * (x - x0) - 0.5 * age) * np.exp(-((x - x0) ** 2) / (2 * width**2))
        return h


def crop_window(size: int | tuple[int, int]) -> tuple[int, int, int, int, int]:
    """(side, top, left, h, w): a non-square (H, W) frame is the centred H x W window of the square side x side
    rendering, side = max(H, W) (a camera framing part of the tank, nothing stretched)."""
    h, w = (size, size) if isinstance(size, int) else size
    side = max(h, w)
    return side, (side - h) // 2, (side - w) // 2, h, w


def crop_truth(rows: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Truth rows of the square rendering in the coordinates of the cropped frame; bubbles centred outside dropped."""
    side, top, left, h, w = crop_window(size)
    col = {name: i for i, name in enumerate(TRUTH_COLUMNS)}
    out = rows.copy()
    out[:, col["x"]] = (rows[:, col["x"]] * side - left) / w
    out[:, col["y"]] = (rows[:, col["y"]] * side - top) / h
    out[:, col["r"]] = rows[:, col["r"]] * side / h
    inside = (out[:, col["x"]] >= 0) & (out[:, col["x"]] < 1) & (out[:, col["y"]] >= 0) & (out[:, col["y"]] < 1)
    return out[inside]


def generate_sequence(
    cond: FlowCondition, frames: int, size: int | tuple[int, int], seed: np.random.SeedSequence
) -> tuple[np.ndarray, RenderStyle, np.ndarray]:
    """Simulate and render one sequence: (frames, H, W) uint8, its rendering style and the true bubbles of every
    frame (rows of TRUTH_COLUMNS, in the frame's own coordinates). A non-square size crops (crop_window)."""
    side, top, left, h, w = crop_window(size)
    physics_seed, render_seed = seed.spawn(2)
    physics_rng, render_rng = np.random.default_rng(physics_seed), np.random.default_rng(render_seed)
    flow = BubbleFlow(cond, physics_rng)
    style = RenderStyle.sample(render_rng)
    bg = background(side, style, flow.sites)
    for _ in range(WARMUP_FRAMES):
        flow.step()
    out = np.empty((frames, h, w), np.uint8)
    truth = []
    for t in range(frames):
        flow.step()
        frame = render(flow, side, style, bg, render_rng)[top : top + h, left : left + w]
        out[t] = np.clip(np.rint(frame * 255), 0, 255)
        truth.append(flow.truth(t, side))
    return out, style, crop_truth(np.concatenate(truth), size)
