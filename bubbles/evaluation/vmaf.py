"""VMAF through a real libvmaf: the static ffmpeg that the imageio-ffmpeg wheel ships is built with it.

VMAF's default model (vmaf_v0.6.1) was trained on 1080p TV content viewed at three picture heights. On small
grayscale shadowgraph frames its scores are only loosely interpretable: use them to rank models against each other
and against the baselines, not as absolute quality. Frames are upscaled to even sizes >= 64 px (nearest neighbour)
because libvmaf's feature pyramid needs a minimum size.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

MIN_SIDE = 64


def ffmpeg_with_vmaf() -> tuple[str | None, str]:
    """The ffmpeg executable if it has the libvmaf filter, else (None, why not)."""
    try:
        import imageio_ffmpeg

        exe = imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # not installed, or no binary for this platform
        return None, f"VMAF unavailable: no ffmpeg from imageio-ffmpeg ({type(exc).__name__})"
    filters = subprocess.run([exe, "-hide_banner", "-filters"], capture_output=True, text=True).stdout
    if "libvmaf" not in filters:
        return None, f"VMAF unavailable: {exe} was built without libvmaf"
    return exe, ""


def vmaf_frames(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Per-frame VMAF of predictions (N, H, W) against targets, floats in [0, 1]. Returns (scores or None, note)."""
    exe, note = ffmpeg_with_vmaf()
    if exe is None:
        return None, note
    scale = max(1, -(-MIN_SIDE // min(pred.shape[1:])))
    def raw(frames: np.ndarray) -> bytes:
        big = np.kron(frames, np.ones((1, scale, scale))) if scale > 1 else frames
        return np.clip(np.rint(big * 255), 0, 255).astype(np.uint8).tobytes()

    h, w = pred.shape[1] * scale, pred.shape[2] * scale
    with tempfile.TemporaryDirectory() as tmp:
        d, r, log = Path(tmp) / "dist.raw", Path(tmp) / "ref.raw", Path(tmp) / "vmaf.json"
        d.write_bytes(raw(pred))
        r.write_bytes(raw(target))
        src = ["-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}", "-i"]
        graph = f"[0:v]format=yuv420p[d];[1:v]format=yuv420p[r];[d][r]libvmaf=log_fmt=json:log_path={log}"
        proc = subprocess.run([exe, "-hide_banner", "-loglevel", "error", *src, str(d), *src, str(r), "-lavfi", graph, "-f", "null", "-"],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not log.exists():
            return None, f"VMAF failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no output'}"
        frames = json.loads(log.read_text())["frames"]
    return np.array([f["metrics"]["vmaf"] for f in frames]), ""
