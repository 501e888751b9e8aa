"""A trial's checkpoints: where they live in its directory, written atomically, read back safely
(weights_only=True), and checked before a resume starts anything."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from bubbles.config import TrialConfig
from bubbles.errors import UserError
from bubbles.models import check_state_shapes

CHECKPOINT = "checkpoint/checkpoint.pt"  # the directory is what a Ray trial hands to Tune each epoch
BEST = "checkpoint/best.pt"


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary file, then rename: a crash never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, device: torch.device) -> dict:
    """Load with weights_only=True: tensors and plain containers only, never arbitrary objects."""
    try:
        with warnings.catch_warnings():  # a refused pickle is the one line below, not torch's warning with its path
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such checkpoint") from None
    except Exception as exc:
        raise UserError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None


RESUME_KEYS = ("model", "optimizer", "scaler", "torch_rng", "epoch", "history")


def check_resume(path: Path, cfg: TrialConfig) -> dict:
    """A checkpoint.pt this config can continue from, loaded on the CPU; anything else is one line (run before any
    tracking starts, so a wrong --resume leaves no failed run behind)."""
    state = load_checkpoint(path, torch.device("cpu"))
    missing = [k for k in RESUME_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(f"{path}: not a resumable checkpoint (no {', '.join(missing)}); resume from checkpoint.pt, not best.pt")
    check_state_shapes(cfg.model_name, cfg.model, state["model"], str(path))
    return state
