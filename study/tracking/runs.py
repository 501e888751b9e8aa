"""One MLflow run per trial: its name and params, per-epoch and per-lead metrics, artifacts, cost, the node it ran
on, and how the trial's outcome ends it (the driver's settling, orphan closing, the spool's replay)."""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path
from typing import Any

from bubbles.config import TrialConfig
from bubbles.data.framesize import FrameSize, format_image_size, frame_size
from bubbles.data.store import FrameStore
from bubbles.evaluation.cost import ModelCost
from bubbles.evaluation.evaluate import Evaluation
from bubbles.evaluation.lead_figure import lead_curves_png
from bubbles.training.train import EpochResult, TrialResult
from study.mlflow_writer import RUN_KEY, Writer, drop_creation_twins, is_refusal, pending_run_keys
from study.tracking.store import _finite, _now_ms, configure, readable

# How a trial's outcome (study.sweep.trial_outcome, or a train's status) ends its MLflow run: the only such table.
RUN_STATUS = {"completed": "FINISHED", "stopped_early": "FINISHED", "collapsed": "FAILED", "nan": "FAILED",
              "errored": "FAILED", "failed": "FAILED", "unfinished": "KILLED"}



def _param_value(value: Any) -> str:
    """One line per parameter in the runs table: lists as 'a,b,c' (per-layer widths as '64,64,64')."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return json.dumps(value) if isinstance(value, dict) else str(value)


@functools.lru_cache(maxsize=32)
def _store_frame(store: str, short_side: int, multiple: int) -> FrameSize | None:
    """The HxW a short side resolves to on this store (what make_splits will give the model), or None where this
    process cannot tell (a store it cannot read, sequences of several aspects): read once per process."""
    try:
        return frame_size(FrameStore.open(store), short_side, multiple)
    except Exception:  # the trial reports the store's problem itself; a name is only a label
        return None


def name_size(cfg: TrialConfig) -> str:
    """The frames' size as a run name shows it: '128px' for square frames, 'HxWpx' otherwise ('150x200px' for
    frames 150 high and 200 wide), with a short side resolved against the store first, so that a model trained on
    200-wide, 150-high frames is not named '150px'. Tile-trained models keep the short side their tiles are cut at."""
    size = cfg.data.image_size
    if isinstance(size, int) and cfg.data.tile is None:
        size = _store_frame(str(cfg.data.store), size, cfg.data.size_multiple) or size
    if isinstance(size, tuple) and size[0] == size[1]:
        size = size[0]
    return f"{format_image_size(size)}px"


def run_name(cfg: TrialConfig, trial_id: str | None = None) -> str:
    """A short readable run name: the model family and its key parameters, e.g. 'convlstm-L3-h64-128px-20to1-lr1e-03'
    (frames that are not square: '…-150x200px-…', height x width); a sweep's trials end with their trial id
    ('…-4eac4238') so that names are unique."""
    start = "-bs" if getattr(cfg.model, "baseline_start", False) else ""  # started from the baselines' blend
    name = f"{cfg.model_name}-{cfg.model.label()}{start}-{name_size(cfg)}-{cfg.window.input_len}to{cfg.window.output_len}-lr{cfg.train.lr:.0e}"
    return f"{name}-{trial_id.rsplit('_', 1)[-1]}" if trial_id else name


class TrialRun:
    """One MLflow run for one trial; `finish(status)` ends it. Writes are batched, and with a `spool` directory
    a write the store cannot take now waits there for the store to come back (study.mlflow_writer)."""

    def __init__(self, uri: str, experiment: str, cfg: TrialConfig, tags: dict[str, str] | None = None,
                 run_id: str | None = None, spool: Path | None = None, writer: Writer | None = None) -> None:
        import mlflow

        self.cfg = cfg
        configure(uri)
        self.client = mlflow.MlflowClient()
        self.writer = writer or Writer(spool)  # the driver's one writer at a sweep's end (see driver_writer)
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
            # MLflow cannot take a metric back, so the epochs already logged are not logged again (and the writer
            # logs each metric step of a run it did not make once: study.mlflow_writer). A run whose writes wait in
            # the spool (its creation too, if the store was down) gets them first.
            self.run_id = run_id
            self.writer.update_run(run_id, "RUNNING")
            known = self._known()
            self.logged_epochs = max((m.step for m in readable(lambda: self.client.get_metric_history(known, "epoch/val_mse"), [])), default=0) if known else 0

    def _known(self) -> str | None:
        """The run's id in MLflow for reads; None while its creation waits in the spool."""
        known = self.writer.resolve(self.run_id)
        return None if known.startswith("pending-") else known

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

        known = self._known()
        if self.resumed and known and readable(lambda: "gflops_per_window" in self.client.get_run(known).data.metrics, False):
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
        known = self._known()
        seen = readable(lambda: self.client.get_run(known).data.tags.get("ray_nodes", ""), "") if self.resumed and known else ""
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


def driver_writer(spool: Path) -> Writer:
    """The writer of a sweep's driver at the sweep's end: every write it makes (stopped trials' results, test
    scores, trials settled, orphans closed, the parent finished) waits in `spool` when the store cannot take it,
    and after the first such write the others go straight there (one timeout, not one per run)."""
    return Writer(spool)


def spooled_runs(spool: Path) -> list[str]:
    """The runs (ids; a creation still waiting: its local 'pending-…' id) whose writes wait in the spool."""
    return sorted(p.stem for p in spool.glob("*.jsonl")) if spool.is_dir() else []


def log_test_score(run_id: str, score: Any, spool: Path | None = None, writer: Writer | None = None) -> None:
    """The test-split pass of one trial: test_<metric> (unbiased; the leaderboard's names), its per-lead curves, its
    record; through the writer, so with a `spool` an outage keeps them for the next driver instead of raising."""
    writer = writer or Writer(spool)
    writer.log_batch(run_id, metrics=yardstick_metrics(score, "test", "yardstick_test_lead"), tags={"test_scored": "true"})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "yardstick_test.json"
        path.write_text(json.dumps(score.to_dict(), indent=1))
        writer.log_artifact(run_id, path)


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


def close_orphaned_runs(parent_run_id: str, expected: set[str] = frozenset(), writer: Writer | None = None) -> int:  # type: ignore[assignment]
    """Trials left RUNNING by a driver that died without its interrupt handler (SIGKILL, power loss): KILLED and
    tagged unfinished, as an interrupt would have left them; a trial that --resume continues is RUNNING again.
    Runs in `expected` (by id, or by the creation key of a run still waiting in the spool) are the ones an outage
    kept the last driver from settling: left for the replay and settle_trial. With a spooling `writer`, a store
    that does not answer the search finds none (the next driver looks again when it starts) and the closings
    wait in the spool."""
    import mlflow

    client = mlflow.MlflowClient()
    try:
        parent = client.get_run(parent_run_id)
        # First the empty twins of a creation a busy server committed late (never a trial's second run to close).
        drop_creation_twins(client, [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'", set(expected))
        orphans = [r for r in client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'",
        ) if r.info.run_id not in expected and r.data.tags.get(RUN_KEY) not in expected]
    except Exception as exc:
        if writer is None or writer.spool is None or is_refusal(exc):
            raise
        return 0  # the store does not answer: the next driver looks again when it starts
    for run in orphans:
        settle_trial(run.info.run_id, "unfinished", writer)
    return len(orphans)


def settle_trial(run_id: str, outcome: str, writer: Writer | None = None) -> None:
    """Record how Tune ended a trial (the trainable cannot when ASHA stops it inside a report) and end its run if it
    is still open (KILLED: marked unfinished before): at its last logged epoch, not when the sweep closes it. An
    unfinished trial (interrupted) is KILLED now and RUNNING again when `--resume` continues it. Through `writer`
    (a spooling one waits out an outage in its spool; none: written now, or raised)."""
    (writer or Writer(None)).end_if_open(run_id, RUN_STATUS[outcome], {"trial_status": outcome},
                                         None if outcome == "unfinished" else "epoch/val_mse")


def pending_creations(spool: Path) -> set[str]:
    """Creation keys of the runs waiting in the spool (see close_orphaned_runs)."""
    return pending_run_keys(spool)


def replay_spool(spool: Path, errors: list[str], unreadable: list[str] | None = None) -> list[str]:
    """Log what the trials could not (study.mlflow_writer); returns the runs whose writes are still waiting."""
    from study.mlflow_writer import replay_dir

    return replay_dir(spool, errors, unreadable)


def live_run(uri: str, run_id: str) -> bool:
    """Whether the run exists in this tracking store and is not deleted (a resumed `train` continues it then)."""
    import mlflow

    configure(uri)
    try:
        return mlflow.MlflowClient().get_run(run_id).info.lifecycle_stage == "active"
    except Exception:  # gone, or the store cannot say: the caller starts a new run
        return False


def delete_run(uri: str, run_id: str) -> None:
    """Delete (MLflow's soft delete) a run this process made and left empty: a sweep's parent run when the sweep
    was stopped during start-up, before any trial."""
    import mlflow

    configure(uri)
    mlflow.MlflowClient().delete_run(run_id)
