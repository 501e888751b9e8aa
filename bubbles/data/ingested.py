"""`ingest` as a user sees it: add a recording to a store, then say what was stored (netCDF variable, colour bar,
mask, detector calibration) so a surprising conversion shows at once, not at the first bad forecast."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bubbles.data.ingest import IngestRequest, ingest


def add_recording(request: IngestRequest, shown_as: Path, progress: Callable[[int], object] | None = None,
                  warn: Callable[[str], object] | None = None) -> list[str]:
    """Ingest the request's recording (atomically); the lines that say what was added, naming the store as
    `shown_as` (the path the user gave)."""
    name = ingest(request, progress=progress, warn=warn)
    return [f"added sequence {name!r} to {shown_as}", *stored_lines(request.store, name)]


def stored_lines(store: Path, name: str) -> list[str]:
    """What ingest made of sequence `name`: the source's conversion (netCDF, colour bar, a binary mask) and the
    detector calibration of a one-field recording."""
    from bubbles.data.calibrate import describe
    from bubbles.data.store import FrameStore

    info = FrameStore.open(store).sequences[name]
    extra = info.meta.extra
    lines = []
    if "netcdf" in extra:
        nc = extra["netcdf"]
        rate = f"{info.meta.fps:g} fps from its time coordinate" if nc.get("fps_from") else f"{info.meta.fps:g} fps (no time coordinate; --fps sets it)"
        unpacked = f", unpacked from bits along {nc['unpacked']}" if nc.get("unpacked") else ""
        lines.append(f"netCDF variable {nc['variable']!r} ({' x '.join(nc['dims'])}{unpacked}): {info.frames} frames of "
                     f"{info.native_size[0]}x{info.native_size[1]}, {rate}")
    if "colorbar" in extra:
        bar = extra["colorbar"]
        named = (f" (with {bar['named_map']}: {100 * bar['named_map_off_fraction']:.1f}%)" if "named_map" in bar else "")
        lines.append(f"colour bar: {bar['orientation']}, read from the figure; "
                     f"{100 * extra['off_colormap_fraction']:.1f}% of the pixels are no colour of it{named}")
    if "mask" in extra:
        lines.append(f"binary recording: stored as a mask (vapour {extra['mask']['source_values'][1]} -> 255, liquid "
                     f"{extra['mask']['source_values'][0]} -> 0); bubbles are its connected components, mask "
                     "losses (bce, dice, bce+dice) and mask metrics (IoU, vapour fraction, bubble F1) apply")
    elif info.frames and len(info.fields) == 1:
        lines.append(f"detector calibration: {describe(name, extra.get('detector_calibration'))}")
    return lines
