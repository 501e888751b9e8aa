"""Every MLflow call and every run-state change: where runs go, experiments, one run per trial with params, curves
and artifacts, the sweep's parent run, how a trial's outcome ends its run, the registry, and what the report reads.

Nothing else in the project imports mlflow; study.mlflow_writer is this module's transport (batched writes, spool).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bubbles.config import TrialConfig
from bubbles.data.framesize import format_image_size
from bubbles.errors import UserError
from bubbles.evaluation.cost import ModelCost
from bubbles.evaluation.evaluate import Evaluation
from bubbles.evaluation.lead_figure import lead_curves_png
from bubbles.training.train import EpochResult, TrialResult
from study.mlflow_writer import RUN_KEY, SPOOL_DIR, Writer, bound_http, is_refusal, pending_run_keys

RUNS_DIR = "runs"
# MLflow 3 opens an experiment without this tag in its GenAI view (traces, assistant); this value opens the runs table.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# How a trial's outcome (study.sweep.trial_outcome, or a train's status) ends its MLflow run: the only such table.
RUN_STATUS = {"completed": "FINISHED", "stopped_early": "FINISHED", "collapsed": "FAILED", "nan": "FAILED",
              "errored": "FAILED", "failed": "FAILED", "unfinished": "KILLED"}


def default_uri(root: Path) -> str:
    """A local sqlite file under runs/ (created on first use)."""
    return f"sqlite:///{(root / RUNS_DIR / 'mlflow.db').resolve()}"


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI when set, else the local default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or default_uri(root)


def check_tracking(uri: str) -> None:
    """Fail fast, in one line, if a tracking server is unreachable (before any training or Ray start)."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as resp:
                if resp.status != 200:
                    raise UserError(f"MLflow tracking server {uri} answered {resp.status} on /health")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(f"MLflow tracking server {uri} is unreachable ({reason}); start it or set MLFLOW_TRACKING_URI") from None
    elif uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def configure(uri: str) -> None:
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    bound_http()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow prints "View run … / View experiment at …" for every run it ends on a server, and that experiment link
    # opens its GenAI view: the sweep prints the one link that opens the runs table (runs_table_link) instead.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    mlflow.set_tracking_uri(uri)


def experiment_id(name: str, uri: str) -> str:
    """The experiment's id, creating it (with artifacts beside a local sqlite file) if needed."""
    import mlflow

    configure(uri)
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.tags.get("mlflow.experimentKind") is None:  # made by an earlier version, or by hand
            try:
                client.set_experiment_tag(found.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
            except Exception as exc:  # trials starting together race to tag it (PostgreSQL: a duplicate key)
                if getattr(exc, "error_code", None) not in ("BAD_REQUEST", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE") and "UNIQUE" not in str(exc).upper():
                    raise
        return found.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_KIND)
    except Exception:
        # Another process created it between our look-up and create: use theirs.
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


MAX_EXPERIMENT_NAME = 500  # MLflow's own limit (characters)
MAX_FILE_NAME = 255  # bytes: a local store keeps artifacts in a directory named after the experiment


def check_experiment_name(name: str, uri: str, what: str = "--experiment") -> None:
    """Refuse, before anything starts, a name MLflow or the local artifact directory would refuse later (a
    traceback, or a whole run trained and then left RUNNING)."""
    if not name.strip():
        raise UserError(f"{what}: give a non-empty MLflow experiment name")
    if len(name) > MAX_EXPERIMENT_NAME:
        raise UserError(f"{what}: the name has {len(name)} characters; MLflow takes at most {MAX_EXPERIMENT_NAME}")
    longest = max(len(part.encode()) for part in name.split("/"))
    if uri.startswith("sqlite:///") and longest > MAX_FILE_NAME:
        raise UserError(f"{what}: the name is {longest} bytes long; its artifact directory under "
                        f"{Path(uri.removeprefix('sqlite:///')).parent / 'mlartifacts'} can be at most {MAX_FILE_NAME}")


def runs_table_link(uri: str, experiment: str) -> str:
    """Where a user sees the experiment's runs table. workflowType is in the link because MLflow 3.17's UI opens
    in its GenAI mode in a fresh browser, whatever the experiment's kind."""
    path = f"#/experiments/{experiment_id(experiment, uri)}/runs?workflowType=machine_learning"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{path}"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1, then http://127.0.0.1:5000/{path}"


def model_version_link(uri: str, name: str, version: str) -> str:
    """Where a user sees a registered model version (its source run, signature, aliases)."""
    from urllib.parse import quote

    path = f"#/models/{quote(name, safe='')}/versions/{version}"
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/{path}"
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1, then http://127.0.0.1:5000/{path}"


def _param_value(value: Any) -> str:
    """One line per parameter in the runs table: lists as 'a,b,c' (per-layer widths as '64,64,64')."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return json.dumps(value) if isinstance(value, dict) else str(value)


def run_name(cfg: TrialConfig, trial_id: str | None = None) -> str:
    """A short readable run name: the model family and its key parameters, e.g. 'convlstm-L3-h64-128px-20to1-lr1e-03';
    a sweep's trials end with their trial id ('…-4eac4238') so that names are unique."""
    name = f"{cfg.model_name}-{cfg.model.label()}-{format_image_size(cfg.data.image_size)}px-{cfg.window.input_len}to{cfg.window.output_len}-lr{cfg.train.lr:.0e}"
    return f"{name}-{trial_id.rsplit('_', 1)[-1]}" if trial_id else name


class TrialRun:
    """One MLflow run for one trial; `finish(status)` ends it. Writes are batched, and with a `spool` directory
    a write the store cannot take now waits there for the store to come back (study.mlflow_writer)."""

    def __init__(self, uri: str, experiment: str, cfg: TrialConfig, tags: dict[str, str] | None = None,
                 run_id: str | None = None, spool: Path | None = None) -> None:
        import mlflow

        self.cfg = cfg
        configure(uri)
        self.client = mlflow.MlflowClient()
        self.writer = Writer(spool)
        self.resumed = run_id is not None
        if run_id is None:
            name = run_name(cfg, (tags or {}).get("tune_trial_id"))
            self.run_id = self.writer.create_run(experiment, uri, name, tags or {})
            flat = cfg.flat()
            if "hidden" in flat and len(set(flat["hidden"])) == 1:  # ConvLSTM's; the other families have none
                flat["hidden"] = flat["hidden"][0]  # one width for every layer: a number, comparable across runs
            self.writer.log_batch(self.run_id, params={k: _param_value(v) for k, v in flat.items()})
            self.logged_epochs = 0
        else:
            # A resumed or restarted trial: its Tune checkpoint can be older than the last epoch it logged, and
            # MLflow cannot take a metric back, so the epochs already logged are not logged again.
            self.run_id = run_id
            self.logged_epochs = max((m.step for m in readable(lambda: self.client.get_metric_history(run_id, "epoch/val_mse"), [])), default=0)
            self.writer.update_run(run_id, "RUNNING")

    def log_epoch(self, result: EpochResult) -> None:
        """Per-epoch metrics, named epoch/… (step = epoch); an epoch already logged is skipped."""
        from mlflow.entities import Metric

        if result.epoch <= self.logged_epochs:
            return
        self.logged_epochs = result.epoch
        ts = _now_ms()
        metrics = [Metric(f"epoch/{k}", v, ts, result.epoch) for k, v in result.metrics().items() if _finite(v)]
        self.writer.log_batch(self.run_id, metrics=metrics)

    def log_cost(self, cost: ModelCost) -> None:
        """What the model costs, measured where the trial runs: parameters, forward GFLOPs per window, inference
        frames/s (metrics, so MLflow can plot the objective against them) and the device (a tag)."""
        from mlflow.entities import Metric

        if self.resumed and readable(lambda: "gflops_per_window" in self.client.get_run(self.run_id).data.metrics, False):
            return  # a resumed trial measured its cost when it started: once per run, never a second step 0
        ts = _now_ms()
        numbers = {k: v for k, v in cost.metrics().items() if k != "parameters" and _finite(v)}
        self.writer.log_batch(self.run_id, metrics=[Metric(k, v, ts, 0) for k, v in numbers.items()],
                              tags={"cost_device": cost.device})

    def log_evaluation(self, evaluation: Evaluation) -> None:
        """Per-lead curves, named lead/… (step = lead time), and the summary numbers."""
        from mlflow.entities import Metric

        ts = _now_ms()
        rows: list[Metric] = []
        curves = evaluation.lead_curves()
        for name, values in curves.items():
            rows += [Metric(f"lead/{name}", float(v), ts, lead + 1) for lead, v in enumerate(values) if _finite(v)]
        rows += [Metric(k, float(v), ts, 0) for k, v in evaluation.summary().items() if _finite(v)]
        self.writer.log_batch(self.run_id, metrics=rows)

    def log_result(self, result: TrialResult) -> None:
        """Final metrics and the artifacts: config, evaluation, tables, strips, best checkpoint. Once per run: a
        trial interrupted after logging its result re-runs its last epoch on resume, and is not logged again."""
        from mlflow.entities import Metric

        known = self.writer.resolve(self.run_id)
        if not known.startswith("pending-") and not self.writer.pending(known) and readable(lambda: has_result(known), False):
            return
        finals = [Metric("parameters", result.parameters, _now_ms(), 0)]
        if _finite(result.train_samples_per_s):
            finals.append(Metric("train_samples_per_s", result.train_samples_per_s, _now_ms(), 0))
        self.writer.log_batch(self.run_id, metrics=finals, tags={"trial_status": result.status})
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "config.json"
            config.write_text(json.dumps(self.cfg.flat(), indent=1))
            self.writer.log_artifact(self.run_id, config)
            if result.yardstick is not None:
                self.writer.log_batch(self.run_id, metrics=yardstick_metrics(result.yardstick, "final_yardstick", "yardstick_lead"))
            if result.evaluation is not None:
                self.log_evaluation(result.evaluation)
                (Path(tmp) / "per_condition.csv").write_text(result.evaluation.condition_table())
                (Path(tmp) / "lead_table.md").write_text(result.evaluation.lead_table() + "\n")
                for name in ("per_condition.csv", "lead_table.md"):
                    self.writer.log_artifact(self.run_id, Path(tmp) / name)
                # The model's per-lead curves beside every baseline's, in one picture (MLflow charts one metric each).
                picture = lead_curves_png(result.evaluation, f"{run_name(self.cfg)}: model against each baseline, per lead",
                                          Path(tmp) / "lead_curves.png")
                self.writer.log_artifact(self.run_id, picture)
        for name in ("evaluation.json", "yardstick.json"):
            if (result.out_dir / name).exists():
                self.writer.log_artifact(self.run_id, result.out_dir / name)
        for strip in result.strips:
            self.writer.log_artifact(self.run_id, strip, "strips")
        if result.best_checkpoint.exists():
            self.writer.log_artifact(self.run_id, result.best_checkpoint, "checkpoints")

    def set_tag(self, key: str, value: str) -> None:
        self.writer.set_tag(self.run_id, key, value)

    def record_node(self, node: str) -> str:
        """Add the node this attempt runs on to the run's `ray_nodes` tag (a trial restarted after a node loss
        keeps every node it ran on, in order); returns the list as logged, comma-separated."""
        seen = readable(lambda: self.client.get_run(self.run_id).data.tags.get("ray_nodes", ""), "") if self.resumed else ""
        nodes = [n for n in seen.split(",") if n]
        if node not in nodes:
            nodes.append(node)
        joined = ",".join(nodes)
        self.writer.set_tag(self.run_id, "ray_nodes", joined)
        return joined

    def end(self, outcome: str) -> None:
        """End the run as the trial ended: `outcome` is a trial status (completed, stopped_early, collapsed, nan,
        errored, failed, unfinished), mapped to MLflow's run status here and nowhere else."""
        self.writer.set_terminated(self.run_id, RUN_STATUS[outcome])


def yardstick_metrics(score: Any, prefix: str, lead_prefix: str) -> list[Any]:
    """A yardstick score as MLflow metrics: its means (<prefix>_ssim, …) and per-lead curves of the model and the
    baselines on the protocol's frames (<lead_prefix>/ssim, <lead_prefix>/flow_ssim, …; step = the lead time)."""
    from mlflow.entities import Metric

    ts, leads = _now_ms(), score.protocol.leads
    rows = [Metric(f"{prefix}_{k}", v, ts, 0) for k, v in score.means().items() if _finite(v)]
    curves = dict(score.per_lead) | {f"{b}_{k}": v for b, m in score.baselines.items() for k, v in m.items()}
    for name, values in curves.items():
        rows += [Metric(f"{lead_prefix}/{name}", float(v), ts, lead) for lead, v in zip(leads, values) if _finite(v)]
    return rows


def final_yardstick_of(run_id: str) -> dict[str, float]:
    """The trial-end yardstick means an MLflow trial run holds (final_yardstick_<metric>)."""
    import mlflow

    metrics = mlflow.MlflowClient().get_run(run_id).data.metrics
    return {k.removeprefix("final_yardstick_"): v for k, v in metrics.items() if k.startswith("final_yardstick_")}


def log_test_score(run_id: str, score: Any) -> None:
    """The test-split pass of one trial: test_<metric> (unbiased; the leaderboard's names), its per-lead curves, its
    record."""
    import mlflow

    client = mlflow.MlflowClient()
    client.log_batch(run_id, metrics=yardstick_metrics(score, "test", "yardstick_test_lead"),
                     tags=[mlflow.entities.RunTag("test_scored", "true")])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "yardstick_test.json"
        path.write_text(json.dumps(score.to_dict(), indent=1))
        client.log_artifact(run_id, str(path))


def find_trial_run(uri: str, experiment: str, parent_run_id: str, trial_id: str) -> str | None:
    """The MLflow run already made for this Tune trial (a restarted or resumed trial keeps its run)."""
    import mlflow

    configure(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.tune_trial_id = '{trial_id}' and tags.`mlflow.parentRunId` = '{parent_run_id}'",
    )
    return runs[0].info.run_id if runs else None


def has_result(run_id: str) -> bool:
    """Whether the run's end-of-trial result (`parameters` is logged first) is already in MLflow."""
    import mlflow

    return "parameters" in mlflow.MlflowClient().get_run(run_id).data.metrics


def close_orphaned_runs(parent_run_id: str, expected: set[str] = frozenset()) -> int:  # type: ignore[assignment]
    """Trials left RUNNING by a driver that died without its interrupt handler (SIGKILL, power loss): KILLED and
    tagged unfinished, as an interrupt would have left them; a trial that --resume continues is RUNNING again.
    Runs in `expected` (by id, or by the creation key of a run still waiting in the spool) are the ones an outage
    kept the last driver from settling: left for the replay and settle_trial."""
    import mlflow

    client = mlflow.MlflowClient()
    parent = client.get_run(parent_run_id)
    orphans = [r for r in client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'",
    ) if r.info.run_id not in expected and r.data.tags.get(RUN_KEY) not in expected]
    for run in orphans:
        settle_trial(run.info.run_id, "unfinished")
    return len(orphans)


def settle_trial(run_id: str, outcome: str) -> None:
    """Record how Tune ended a trial (the trainable cannot when ASHA stops it inside a report) and end its run if it
    is still open: at its last logged epoch, not when the sweep closes it. An unfinished trial (interrupted) is
    KILLED now and RUNNING again when `--resume` continues it."""
    import mlflow

    client = mlflow.MlflowClient()
    client.set_tag(run_id, "trial_status", outcome)
    if client.get_run(run_id).info.status not in ("RUNNING", "KILLED"):  # KILLED: marked unfinished before
        return
    end = None
    if outcome != "unfinished":
        history = client.get_metric_history(run_id, "epoch/val_mse")
        end = max((m.timestamp for m in history), default=None)
    client.set_terminated(run_id, RUN_STATUS[outcome], end_time=end)


def pending_creations(spool: Path) -> set[str]:
    """Creation keys of the runs waiting in the spool (see close_orphaned_runs)."""
    return pending_run_keys(spool)


def replay_spool(spool: Path, errors: list[str], unreadable: list[str] | None = None) -> list[str]:
    """Log what the trials could not (study.mlflow_writer); returns the runs whose writes are still waiting."""
    from study.mlflow_writer import replay_dir

    return replay_dir(spool, errors, unreadable)


class SweepRun:
    """The parent MLflow run of a sweep; its id is kept in the sweep directory so a resumed sweep reuses it."""

    def __init__(self, run_id: str) -> None:
        import mlflow

        self.run_id = run_id
        self.client = mlflow.MlflowClient()

    def log_report(self, directory: Path) -> None:
        """The HTML report and its pictures, under report/ in the parent run."""
        self.client.log_artifacts(self.run_id, str(directory), "report")

    @classmethod
    def open_or_create(cls, uri: str, space: Any, name: str, marker: Path) -> SweepRun:
        import mlflow

        exp_id = experiment_id(space.experiment, uri)
        client = mlflow.MlflowClient()
        if marker.exists():
            run = cls(json.loads(marker.read_text())["run_id"])
            client.update_run(run.run_id, status="RUNNING")
            return run
        created = client.create_run(exp_id, run_name=name, tags={"sweep": name, "bubbles.role": "sweep"})
        run = cls(created.info.run_id)
        with tempfile.TemporaryDirectory() as tmp:
            resolved = Path(tmp) / "resolved_space.json"
            resolved.write_text(json.dumps(_space_summary(space), indent=1, default=str))
            client.log_artifact(run.run_id, str(resolved))
            copy = Path(tmp) / Path(space.path).name
            copy.write_text(space.text)
            client.log_artifact(run.run_id, str(copy))
        tmp_marker = marker.with_suffix(".tmp")
        tmp_marker.write_text(json.dumps({"run_id": run.run_id, "uri": uri, "experiment": space.experiment,
                                          "objective": space.tune.objective, "mode": space.tune.mode}))
        tmp_marker.replace(marker)
        return run

    def finish(self, sweep_dir: Path, rows: list[dict[str, Any]], interrupted: bool) -> None:
        """The leaderboard, the best trial and the trial count; KILLED if the sweep was interrupted."""
        for name in ("leaderboard.csv", "leaderboard.md"):
            if (sweep_dir / name).exists():
                self.client.log_artifact(self.run_id, str(sweep_dir / name))
        if rows:
            self.client.set_tag(self.run_id, "best_trial_id", rows[0]["trial"])
            self.client.set_tag(self.run_id, "best_run_id", rows[0]["mlflow_run"])
            if _finite(rows[0]["objective"]):
                self.client.log_metric(self.run_id, "best_objective", rows[0]["objective"])
            # The winner's yardstick: validation (what it was chosen on) and test (unbiased), side by side, by the
            # leaderboard's names (best_yardstick_ssim, best_test_skill_vs_strongest, ...).
            for key, value in rows[0].items():
                if key.startswith(("yardstick_", "test_")) and isinstance(value, float) and _finite(value):
                    self.client.log_metric(self.run_id, f"best_{key}", value)
        self.client.log_metric(self.run_id, "trials", len(rows))
        self.client.set_terminated(self.run_id, "KILLED" if interrupted else "FINISHED")


def _space_summary(space: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return {
        "base": space.base,
        "dimensions": [asdict(d) for d in space.dimensions],
        "seed_points": list(space.seed_points),
        "tune": asdict(space.tune),
        "experiment": space.experiment,
    }


def readable(read: Any, fallback: Any) -> Any:
    """A read that an unavailable store answers with `fallback` (the trial goes on; its writes are spooled)."""
    try:
        return read()
    except Exception as exc:
        if is_refusal(exc):
            raise
        logging.getLogger(__name__).warning("MLflow unavailable (%s); going on", str(exc).splitlines()[0][:200])
        return fallback


def _finite(v: float) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


def _now_ms() -> int:
    return int(time.time() * 1000)


# -- what export and the report read --------------------------------------------------------------------------------
def trial_files(uri: str, run_id: str, into: Path) -> tuple[str, dict[str, float], dict[str, str], Path, Path]:
    """A finished trial run's name, metrics, tags and, downloaded into `into`, its checkpoints/ folder and
    evaluation.json; one line if the run or its files are missing."""
    import mlflow

    configure(uri)
    client = mlflow.MlflowClient()
    try:
        run = client.get_run(run_id)
    except Exception as exc:
        if not _missing(exc):
            raise UserError(f"MLflow at {uri}: cannot read run {run_id} ({_first_line(exc)})") from None
        raise UserError(f"MLflow run {run_id!r} not found in {uri}") from None
    try:
        checkpoints = Path(client.download_artifacts(run_id, "checkpoints", str(into)))
        evaluation = Path(client.download_artifacts(run_id, "evaluation.json", str(into)))
    except Exception:
        raise UserError(f"MLflow run {run_id}: no checkpoints/best.pt + evaluation.json (a finished trial has them)") from None
    return run.info.run_name, dict(run.data.metrics), dict(run.data.tags), checkpoints, evaluation


def metric_history(run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of one metric of a run, by step."""
    import mlflow

    return sorted((m.step, m.value) for m in mlflow.MlflowClient().get_metric_history(run_id, key))


def run_params(run_id: str) -> dict[str, str]:
    """A run's logged parameters."""
    import mlflow

    return dict(mlflow.MlflowClient().get_run(run_id).data.params)


def download_file(run_id: str, path: str, into: Path) -> Path | None:
    """One artifact file of a run, downloaded into `into`; None if the run has no such file."""
    import mlflow

    try:
        return Path(mlflow.MlflowClient().download_artifacts(run_id, path, str(into)))
    except Exception as exc:
        if not _missing(exc) and "No such file" not in str(exc) and "not found" not in str(exc).lower():
            raise
        return None


def download_folder(run_id: str, folder: str, into: Path) -> list[Path]:
    """The files of one artifact folder of a run (none if it has no such folder)."""
    import mlflow

    try:
        local = Path(mlflow.MlflowClient().download_artifacts(run_id, folder, str(into)))
    except Exception as exc:
        if not _missing(exc) and "No such file" not in str(exc):
            raise
        return []
    return sorted(p for p in local.iterdir() if p.is_file())


# -- the model registry -----------------------------------------------------------------------------------------------
EXPORTS_EXPERIMENT = "bubbles-exports"  # where an export of a `train` checkpoint (no trial run) is logged
CHAMPION = "champion"


def register_export(uri: str, name: str, bundle: Path, source: str, run_id: str | None, score: tuple[str, float, str],
                    example: tuple[Any, Any], tags: dict[str, str] | None = None) -> tuple[str, bool]:
    """Log the export directory as an MLflow model of the trial run it came from (a python_function model:
    `mlflow.pyfunc.load_model("models:/NAME/VERSION").predict(frames)`), register it as a new version of `name`,
    and move the `champion` alias to it if it beats the current champion on the objective (or there is none).
    score = (objective, value, mode); example = (input, output) arrays for the signature; `tags` go on the version
    besides the score's. Any failure undoes what this call made (model, version, a registered model it created)
    and is one line. Returns (version, became champion)."""
    import mlflow
    from mlflow.models import Model, infer_signature
    from mlflow.pyfunc import add_to_model

    configure(uri)
    client = mlflow.MlflowClient()
    objective, value, mode = score
    made: list[Any] = []  # undo steps, last first
    try:
        exp_id = client.get_run(run_id).info.experiment_id if run_id else experiment_id(EXPORTS_EXPERIMENT, uri)
        # A logged model of the trial run: the version's source then belongs to the run it names (a server checks).
        logged = client.create_logged_model(exp_id, name="bundle", source_run_id=run_id, tags={"source": source, "registered_as": name})
        made.append(lambda: client.delete_logged_model(logged.model_id))
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = Path(tmp) / "model"
            shutil.copytree(bundle, model_dir)
            (model_dir / "code").mkdir()
            shutil.copy(Path(__file__).with_name("pyfunc_model.py"), model_dir / "code" / "bubbles_pyfunc.py")
            model = Model(run_id=run_id, model_id=logged.model_id, signature=infer_signature(*example))
            add_to_model(model, loader_module="bubbles_pyfunc", data="model.ts", code="code")
            model.save(str(model_dir / "MLmodel"))
            client.log_model_artifacts(logged.model_id, str(model_dir))
        client.finalize_logged_model(logged.model_id, "READY")
        try:
            client.get_registered_model(name)
        except Exception as exc:
            if not _missing(exc):
                raise
            client.create_registered_model(name)
            made.append(lambda: client.delete_registered_model(name))
        rounded = round(value, 6)
        version = client.create_model_version(
            name, f"models:/{logged.model_id}", run_id=run_id, model_id=logged.model_id,
            tags={"objective": objective, "value": f"{rounded:.6g}", "mode": mode, "source": source} | (tags or {}))
        made.append(lambda: client.delete_model_version(name, version.version))
        better = True
        try:
            old = float(client.get_model_version_by_alias(name, CHAMPION).tags.get("value", "nan"))
            sign = 1.0 if mode == "max" else -1.0
            better = not math.isfinite(old) or sign * (rounded - old) > 0
        except Exception as exc:
            if not _no_alias(exc):
                raise  # a server error must not make any new version the champion
        if better:
            client.set_registered_model_alias(name, CHAMPION, version.version)
    except Exception as exc:
        stuck = 0
        for undo in reversed(made):
            try:
                undo()
            except Exception:
                stuck += 1  # the store stopped answering: said below
        left = f"; {stuck} part(s) could not be removed, look for them under `{name}`" if stuck else "; nothing was kept"
        raise UserError(f"--register {name}: MLflow at {uri} refused the registration ({_first_line(exc)}){left}") from None
    return str(version.version), better


def _missing(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"


def _no_alias(exc: BaseException) -> bool:
    """'No champion yet': over HTTP an unknown alias is INVALID_PARAMETER_VALUE '… alias X not found'."""
    text = str(exc)
    return _missing(exc) or (getattr(exc, "error_code", None) == "INVALID_PARAMETER_VALUE" and "alias" in text and "not found" in text)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
