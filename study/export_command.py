"""`bubbles-study export` from its options: choose the trial (a sweep's winner, a run, a `train` directory), write
the self-contained export, and register it (the 'champion' alias only when it beats the champion like for like)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bubbles.errors import UserError

Say = Callable[[str], object]


@dataclass(frozen=True)
class ExportOptions:
    """The `export` command's options, as given: exactly one of sweep_name, run_id, checkpoint."""

    out: Path
    sweep_name: str | None = None
    run_id: str | None = None
    checkpoint: Path | None = None
    onnx: bool = False
    register: str | None = None  # a model name in the MLflow registry
    storage: Path = Path("runs/sweeps")  # where the sweep named by sweep_name lives


def _check(o: ExportOptions) -> None:
    if sum(v is not None for v in (o.sweep_name, o.run_id, o.checkpoint)) != 1:
        raise UserError("export: give exactly one of --sweep, --run-id, --checkpoint")
    if o.register is not None and not o.register.strip():
        raise UserError("export: --register needs a model name (e.g. --register bubbles-convlstm)")


def export_command(o: ExportOptions, echo: Say, err: Say) -> None:
    """Export as the options say, saying what was exported (objective, test line, warnings) and where it is
    registered; a leaderboard score the exported weights do not reproduce is a warning."""
    from bubbles.outputs import check_output_dir
    from study import export as ex
    from study.tracking import check_tracking, model_version_link, tracking_uri

    _check(o)
    check_output_dir(o.out.resolve(), "export")  # before any download or evaluation
    uri = tracking_uri(Path.cwd())
    if o.checkpoint is not None:
        chosen = ex.from_checkpoint_dir(o.checkpoint.resolve())
    else:
        check_tracking(uri)
        objective, board, run_id = None, None, o.run_id
        if o.sweep_name is not None:
            from study.sweep_dir import finished_sweep_dir
            from study.tracking import sweep_dirs_named

            sweep_dir = finished_sweep_dir(o.storage.resolve(), o.sweep_name, sweep_dirs_named(uri, o.sweep_name))
            run_id, objective, board = ex.best_run_of_sweep(sweep_dir)
        chosen = ex.from_run(uri, str(run_id), objective)
        if board is not None and not math.isclose(board, chosen.objective, rel_tol=1e-4, abs_tol=1e-6):
            err(f"warning: the leaderboard says {objective} {board:.5f}, the exported weights measure "
                f"{chosen.objective:.5f} (a trial trained before best.pt was picked by the objective?)")
    echo(f"building the export: weights, TorchScript{', ONNX (checked with onnxruntime)' if o.onnx else ''}, the "
         "climatology frame from the training windows, the metrics card ...")
    path = ex.export(chosen, o.out, o.onnx, note=err)
    selected = f", {ex.VALIDATION}" if chosen.yardstick else ""
    echo(f"exported {chosen.source} ({chosen.objective_name} {chosen.objective:.4f}{selected}) to {path}")
    if chosen.test_line:
        echo(chosen.test_line)
    for line in chosen.warnings():
        err(line)
    if o.register is None:
        return
    check_tracking(uri)
    try:
        version, champion, why = ex.register(uri, o.register, path, chosen)
    except UserError as exc:  # the registry kept nothing; the export directory itself is complete
        raise UserError(f"{exc} in the registry; the export in {path} is complete and kept (export again with "
                        "--register to retry)") from None
    echo(f"registered {o.register} version {version}" + (" as 'champion'" if champion else f" (champion unchanged: {why})")
         + f"; load it with mlflow.pyfunc.load_model('models:/{o.register}/{version}'); see {model_version_link(uri, o.register, version)}")
