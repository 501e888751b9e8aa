"""Which windows each sequence gives in each split, and the held-out conditions that give none (a short recording
silently dropping out of validation is the failure this catches)."""

from __future__ import annotations

from collections import Counter

from bubbles.data.windows import WindowDataset, WindowSplits

SHOWN = 8  # sequences listed per split before "... (N more)"


def window_counts(data: WindowDataset, segments: tuple[tuple[str, int, int], ...]) -> dict[str, int]:
    """Windows per sequence of one split, sequences that give none included."""
    counts = Counter(name for name, _ in data.starts)
    return {name: counts.get(name, 0) for name, _, _ in segments}


def coverage_lines(splits: WindowSplits) -> list[str]:
    """'val windows: seq001 12, seq004 0' per split that has segments."""
    lines = []
    for split in ("train", "val", "test"):
        segments = getattr(splits.segments, split)
        if not segments:
            continue
        counts = window_counts(getattr(splits, split), segments)
        shown = ", ".join(f"{n} {c}" for n, c in list(counts.items())[:SHOWN])
        more = f", ... ({len(counts) - SHOWN} more)" if len(counts) > SHOWN else ""
        lines.append(f"{split} windows per sequence: {shown}{more}{_overlap(getattr(splits, split), segments, split)}")
    return lines


def _overlap(data: WindowDataset, segments: tuple[tuple[str, int, int], ...], split: str) -> str:
    """For a held-out split whose windows overlap (stride shorter than a window): how few share no frame."""
    w = data.window
    if split == "train" or w.stride >= w.span or not data.starts:
        return ""
    independent = sum(max(0, (b - a) // w.span) for _, a, b in segments)
    apart = f"{w.stride} frame{'s' if w.stride > 1 else ''} apart"
    return (f" (these {len(data.starts)} windows, {apart}, overlap: about {independent} of them share no frame, so "
            f"they are fewer independent samples than they look)")


def coverage_warnings(splits: WindowSplits) -> list[str]:
    """One line per held-out (val / test) condition whose sequences give no window at all."""
    out = []
    for split in ("val", "test"):
        data: WindowDataset = getattr(splits, split)
        segments = getattr(splits.segments, split)
        counts = window_counts(data, segments)
        lengths = {name: b - a for name, a, b in segments}
        by_condition: dict[str, list[str]] = {}
        for name in counts:
            by_condition.setdefault(data.cache.store.sequences[name].condition_id, []).append(name)
        for cid, names in sorted(by_condition.items()):
            if not any(counts[n] for n in names):
                frames = ", ".join(f"{n}: {lengths[n]} frames" for n in names)
                out.append(
                    f"{split} condition {cid} gives no windows ({frames}; window "
                    f"{data.window.input_len}->{data.window.output_len} needs {data.window.span})"
                )
    return out
