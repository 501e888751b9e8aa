"""What a trial reports: one EpochResult per epoch (the line `train` prints, the metrics MLflow gets) and the
TrialResult at its end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from bubbles.evaluation.cost import ModelCost, median_rate
from bubbles.evaluation.evaluate import Evaluation
from bubbles.evaluation.yardstick import YardstickScore
from bubbles.training.checkpoint import BEST

Status = Literal["completed", "collapsed", "nan"]


@dataclass(frozen=True)
class EpochResult:
    """What is reported after every epoch (epoch counts from 1). val_mse is per pixel."""

    epoch: int
    train_loss: float
    val_mse: float
    val_ssim: float
    val_psnr: float
    val_ssim_lead1: float
    val_ssim_last: float
    val_skill_vs_persistence: float
    collapse_score: float
    collapsed: bool
    seconds: float
    samples_per_s: float
    val_bubble_f1: float = float("nan")  # absent from histories saved before bubble metrics existed
    val_iou: float = float("nan")  # IoU of vapour thresholded at 0.5, the mask metric (absent from older histories)
    # The study's yardstick on its per-epoch subset of protocol windows (bubbles.evaluation.yardstick): means over
    # the protocol's leads, comparable across trials of any window and size. NaN in histories saved before it.
    yardstick_ssim: float = float("nan")
    yardstick_mse: float = float("nan")
    yardstick_psnr: float = float("nan")
    yardstick_bubble_f1: float = float("nan")
    yardstick_iou: float = float("nan")  # IoU of vapour (masks); NaN in histories saved before it
    eval_seconds: float = float("nan")  # the epoch's validation and per-epoch yardstick (seconds is its training)
    yardstick_skill_vs_strongest: float = float("nan")
    yardstick_skill_vs_strongest_min: float = float("nan")  # the worst lead's skill against the strongest baseline
    yardstick_bubble_f1_margin_min: float = float("nan")  # the worst lead's bubble F1 minus the best baseline's

    def metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items() if k != "epoch"}

    def line(self, epochs: int, seconds: float, eta: float, objective: str = "val_mse", mask: bool = False) -> str:
        """One human line per epoch (what `train` prints), led by the objective that picks best.pt (best_by, or the
        sweep's objective) when it is not one of the columns already shown; with `mask`, IoU of vapour too."""
        value = getattr(self, objective, float("nan"))
        shown = objective in ("val_mse",)
        lead = "" if shown else f"{objective} {value:.4g}  "
        return (
            f"epoch {self.epoch}/{epochs}  {lead}train loss {self.train_loss:.5g}  val mse {self.val_mse:.5g}  "
            f"ssim {self.val_ssim:.3f}  psnr {self.val_psnr:.2f}  skill_vs_persistence {self.val_skill_vs_persistence:+.3f}  "
            f"bubble F1 {self.val_bubble_f1:.3f}{f'  IoU {self.val_iou:.3f}' if mask else ''}"
            f"{'  COLLAPSED' if self.collapsed else ''}  {seconds:.1f} s  ETA {_duration(eta)}{self._slow_note()}"
        )

    def _slow_note(self) -> str:
        """Where validating costs more than EVAL_SHARE of the epoch's training: how much, and the setting to lower."""
        if not self.eval_seconds > max(EVAL_SHARE * self.seconds, EVAL_FLOOR_S):
            return ""
        return (f"  (validation {self.eval_seconds:.0f} s = {self.eval_seconds / self.seconds:.0%} of training: lower "
                "epoch_val_windows / evaluate.epoch_windows)")


EVAL_SHARE = 0.15  # validation and yardstick beyond this share of an epoch's training: the epoch line says so
EVAL_FLOOR_S = 10.0  # ... when they take longer than this too (a tiny trial's second of validation is no matter)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


@dataclass
class TrialResult:
    status: Status
    parameters: int
    history: list[EpochResult]
    evaluation: Evaluation | None
    out_dir: Path
    strips: list[Path] = field(default_factory=list)
    cost: ModelCost | None = None  # measured where the trial trained (None: evaluated elsewhere, after a stop)
    yardstick: YardstickScore | None = None  # best.pt on every protocol window of the validation split

    @property
    def best_checkpoint(self) -> Path:
        return self.out_dir / BEST

    @property
    def train_samples_per_s(self) -> float:
        """Training windows per second, the median over the epochs run."""
        return median_rate([h.samples_per_s for h in self.history])


# report(epoch_result, checkpoint_file, final): `final` is the TrialResult, given with the last epoch's report
# (after the final evaluation, so that a caller whose report may never return still has everything).
Reporter = Callable[[EpochResult, Path, "TrialResult | None"], None]
