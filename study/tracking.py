"""Every MLflow call: where runs go, experiments, one run per trial with params, curves and artifacts."""

from __future__ import annotations

import json
import logging
import os
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
from bubbles.training.train import EpochResult, TrialResult
from study.mlflow_writer import Writer, bound_http, is_refusal

RUNS_DIR = "runs"
# MLflow 3 opens an experiment without this tag in its GenAI view (traces, assistant); this value opens the runs table.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


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
    mlflow.set_tracking_uri(uri)


def experiment_id(name: str, uri: str) -> str:
    """The experiment's id, creating it (with artifacts beside a local sqlite file) if needed."""
    import mlflow

    configure(uri)
    client = mlflow.MlflowClient()
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.tags.get("mlflow.experimentKind") is None:  # made by an earlier version, or by hand
            client.set_experiment_tag(found.experiment_id, *next(iter(EXPERIMENT_KIND.items())))
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
        for name in ("evaluation.json", "yardstick.json"):
            if (result.out_dir / name).exists():
                self.writer.log_artifact(self.run_id, result.out_dir / name)
        for strip in result.strips:
            self.writer.log_artifact(self.run_id, strip, "strips")
        if result.best_checkpoint.exists():
            self.writer.log_artifact(self.run_id, result.best_checkpoint, "checkpoints")

    def set_tag(self, key: str, value: str) -> None:
        self.writer.set_tag(self.run_id, key, value)

    def finish(self, status: str = "FINISHED") -> None:
        self.writer.set_terminated(self.run_id, status)


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
    """The test-split pass of one trial: test_yardstick_<metric> (unbiased), its per-lead curves, its record."""
    import mlflow

    client = mlflow.MlflowClient()
    client.log_batch(run_id, metrics=yardstick_metrics(score, "test_yardstick", "yardstick_test_lead"),
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


def mark_interrupted(run_id: str) -> None:
    """A trial the sweep's interrupt left unfinished: KILLED now, RUNNING again when `--resume` continues it."""
    import mlflow

    client = mlflow.MlflowClient()
    client.set_tag(run_id, "trial_status", "unfinished")
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, "KILLED")


def close_orphaned_runs(parent_run_id: str) -> int:
    """Trials left RUNNING by a driver that died without its interrupt handler (SIGKILL, power loss): KILLED and
    tagged unfinished, as an interrupt would have left them; a trial that --resume continues is RUNNING again."""
    import mlflow

    client = mlflow.MlflowClient()
    parent = client.get_run(parent_run_id)
    orphans = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'",
    )
    for run in orphans:
        mark_interrupted(run.info.run_id)
    return len(orphans)


def close_trial_run(run_id: str, outcome: str) -> None:
    """Record how Tune ended a trial (the trainable cannot when ASHA stops it inside a report). A run still open
    ends when its last epoch was logged, not when the sweep closes it."""
    import mlflow

    client = mlflow.MlflowClient()
    client.set_tag(run_id, "trial_status", outcome)
    if client.get_run(run_id).info.status == "RUNNING":
        history = client.get_metric_history(run_id, "epoch/val_mse")
        end = max((m.timestamp for m in history), default=None)
        client.set_terminated(run_id, "FINISHED" if outcome in ("completed", "stopped_early") else "FAILED", end_time=end)


class SweepRun:
    """The parent MLflow run of a sweep; its id is kept in the sweep directory so a resumed sweep reuses it."""

    def __init__(self, run_id: str) -> None:
        import mlflow

        self.run_id = run_id
        self.client = mlflow.MlflowClient()

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
        for name in ("leaderboard.csv", "leaderboard.md"):
            if (sweep_dir / name).exists():
                self.client.log_artifact(self.run_id, str(sweep_dir / name))
        if rows:
            self.client.set_tag(self.run_id, "best_trial_id", rows[0]["trial"])
            self.client.set_tag(self.run_id, "best_run_id", rows[0]["mlflow_run"])
            if _finite(rows[0]["objective"]):
                self.client.log_metric(self.run_id, "best_objective", rows[0]["objective"])
            # The winner's yardstick: validation (what it was chosen on) and test (unbiased), side by side.
            for key, value in rows[0].items():
                if key.endswith(("_selection", "_unbiased")) and isinstance(value, float) and _finite(value):
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
