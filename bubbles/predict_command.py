"""`bubbles-study predict` from its options: refuse what does not go together in one line (before anything is
written), predict, then say the lead-1 scores beside persistence and the strongest baseline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bubbles.errors import UserError

Say = Callable[[str], object]
MAX_PREDICT_STEPS = 1000  # an autoregressive rollout keeps every frame in memory


@dataclass(frozen=True)
class PredictOptions:
    """The `predict` command's options, as given (paths unresolved, crop/frames/detector unparsed)."""

    model_dir: Path
    out: Path
    store: Path | None = None
    sequence: str | None = None
    raw_input: Path | None = None
    crop: str | None = None
    colormap: str | None = None
    frame_range: str | None = None
    detector_sets: tuple[str, ...] = ()
    start: int = 0
    steps: int | None = None
    autoregressive: bool = False


def detector_sets(pairs: tuple[str, ...]) -> tuple[tuple[str, object], ...]:
    """--detector KEY=VALUE pairs, checked as the `detector` parameter is."""
    import yaml

    from bubbles.data.windows import parse_detector

    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UserError(f"--detector {pair!r}: expected KEY=VALUE, e.g. roi_bottom=0.92")
        values[key.strip()] = yaml.safe_load(value)
    return parse_detector("predict", "--detector", values)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def predict_request(o: PredictOptions) -> Any:
    """The checked PredictRequest of these options; the output directory is refused here if it is not ours."""
    from bubbles.data.frame_rules import parse_crop, parse_frames
    from bubbles.outputs import check_output_dir
    from bubbles.predict import PredictRequest

    if (o.store is None) == (o.raw_input is None):
        raise UserError("predict: give either --store (with --sequence) or --input, not both")
    if o.steps is not None and not 1 <= o.steps <= MAX_PREDICT_STEPS:
        raise UserError(f"--steps {o.steps}: must be in [1, {MAX_PREDICT_STEPS}]")
    check_output_dir(o.out.resolve(), "prediction")
    if o.crop and o.raw_input is None:
        raise UserError("predict: --crop applies to --input (a store's frames were cropped at ingest)")
    if (o.colormap or o.frame_range) and o.raw_input is None:
        raise UserError("predict: --colormap and --frames apply to --input (a store's frames were converted at ingest)")
    return PredictRequest(o.model_dir.resolve(), o.out, o.start, o.steps, o.autoregressive,
                          o.store.resolve() if o.store else None, o.sequence, o.raw_input,
                          parse_crop(o.crop) if o.crop else None, o.colormap,
                          parse_frames(o.frame_range) if o.frame_range else None, detector_sets(o.detector_sets))


def predict_command(options: PredictOptions, echo: Say, err: Say) -> None:
    """Predict as the options say and report it: the sequence chosen, warnings, the lead-1 scores (model,
    persistence, the strongest baseline, bubble F1, collapse), the verdict against the baselines per lead, and
    each field's scores."""
    from bubbles.evaluation.metrics import COLLAPSE_THRESHOLD
    from bubbles.predict import predict

    summary: dict[str, Any] = predict(predict_request(options))
    out = options.out
    if summary.get("chosen"):
        echo(str(summary["chosen"]))
    for warning in summary.get("warnings", []):
        err(f"warning: {warning}")
    line = f"predicted {summary['steps']} frames of {summary['sequence']!r} from frame {options.start} into {out}"
    if "metrics" in summary:
        m = summary["metrics"]
        line += (f"; lead 1: SSIM {m['ssim'][0]:.3f} (persistence {m['persistence_ssim'][0]:.3f}), skill vs the strongest "
                 f"baseline ({m['strongest'][0]}{'' if 'climatology_mse' in m else '; not climatology: the export has no climatology.npy'}) "
                 f"{m['skill_vs_strongest'][0]:+.3f}, bubble F1 {_fmt(m['bubble_f1'][0])} (persistence "
                 f"{_fmt(m['persistence_bubble_f1'][0])}); collapse score "
                 + (_fmt(summary["collapse_score"]) if summary["collapse_score"] is not None else "n/a (one predicted frame)")
                 + (" — COLLAPSED: the prediction barely changes from lead to lead while the target does (below "
                    f"{COLLAPSE_THRESHOLD}); this model predicts blur" if summary.get("collapsed") else ""))
    echo(line)
    if "against_baselines" in summary:
        echo(f"on this window, by MSE per lead: the model {summary['against_baselines']}")
    if "test_against_baselines" in summary:
        echo(f"on the study's test split: the model {summary['test_against_baselines']}")
    for field, f in summary.get("fields", {}).items():
        if f:
            echo(f"  {field}: lead 1 SSIM {f['ssim'][0]:.3f} (persistence {f['persistence_ssim'][0]:.3f}), MSE {f['mse'][0]:.5f}, "
                 f"skill vs persistence {f['skill_vs_persistence'][0]:+.3f}; files in {out / 'fields' / field}")
