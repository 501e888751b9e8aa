"""Many trials writing at once to sqlite and to a real server lose no metric; a server killed mid-trial costs the
trial nothing: its writes wait on disk and are replayed, in order, when the server is back."""

from __future__ import annotations

import math
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from bubbles.config import trial_config
from bubbles.training.train import EpochResult
from study.mlflow_writer import replay_dir
from study.tracking import TrialRun
from tests.mlflow_server import free_port, start, stop

ROOT = Path(__file__).resolve().parents[1]
EPOCHS, LEADS, WRITERS = 12, 10, 8
CFG = {"store": "unused.zarr", "image_size": 16, "window": "4->1", "hidden": 4, "layers": 1}


def _epoch(epoch: int) -> EpochResult:
    return EpochResult(epoch, 0.1 / epoch, 0.01, 0.5, 20.0, 0.6, 0.4, 0.1, 0.0, False, 1.0, 10.0, val_bubble_f1=0.7)


def _log_trial(args: tuple[str, int, str | None]) -> str:
    """What a trial logs: params, every epoch, a per-lead curve per metric; returns the run id."""
    from mlflow.entities import Metric

    uri, index, spool = args
    run = TrialRun(uri, "writers", trial_config(CFG), tags={"writer": str(index)}, spool=Path(spool) if spool else None)
    for epoch in range(1, EPOCHS + 1):
        run.log_epoch(_epoch(epoch))
    leads = [Metric(f"lead/{k}", 1.0 / lead, 0, lead) for k in ("ssim", "psnr", "mse") for lead in range(1, LEADS + 1)]
    run.writer.log_batch(run.run_id, metrics=leads)
    run.end("completed")
    return run.run_id


def _count(uri: str, run_id: str) -> dict[str, list[int]]:
    client = mlflow.MlflowClient(uri)
    # Only finite numbers are logged (the yardstick's epoch metrics are NaN in this epoch): those are counted.
    keys = [*(f"epoch/{k}" for k, v in _epoch(1).metrics().items() if math.isfinite(v)), "lead/ssim", "lead/psnr", "lead/mse"]
    return {k: sorted(m.step for m in client.get_metric_history(run_id, k)) for k in keys}


def _check_all_steps(uri: str, run_ids: list[str]) -> None:
    for run_id in run_ids:
        steps = _count(uri, run_id)
        for key, got in steps.items():
            assert got == list(range(1, (LEADS if key.startswith("lead/") else EPOCHS) + 1)), (run_id, key, got)
        assert mlflow.MlflowClient(uri).get_run(run_id).info.status == "FINISHED"


def _many_writers(uri: str, tmp_path: Path) -> None:
    # The sweep's driver creates the store and the experiment before any trial; here in another process, so that
    # the forked writers (each with its own client, as a Ray trial has) inherit no sqlite connection.
    code = f"from study.tracking import experiment_id; experiment_id('writers', {uri!r})"
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    with multiprocessing.get_context("fork").Pool(WRITERS) as pool:
        run_ids = pool.map(_log_trial, [(uri, i, str(tmp_path / "spool")) for i in range(WRITERS)])
    assert len(set(run_ids)) == WRITERS and not any(r.startswith("pending-") for r in run_ids)
    assert not (tmp_path / "spool").exists()  # nothing had to wait: no "database is locked", nothing deferred
    _check_all_steps(uri, run_ids)


@pytest.mark.slow
def test_many_writers_sqlite(tmp_path: Path) -> None:
    _many_writers(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path)


@pytest.mark.slow
def test_many_writers_server_then_outage_and_replay(tmp_path: Path) -> None:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start(tmp_path, port)
    try:
        _many_writers(uri, tmp_path)
        spool = tmp_path / "outage-spool"
        run = TrialRun(uri, "writers", trial_config(CFG), spool=spool)
        run.log_epoch(_epoch(1))
        stop(server)  # the server dies mid-trial
        began = time.monotonic()
        for epoch in range(2, EPOCHS + 1):
            run.log_epoch(_epoch(epoch))
        artifact = tmp_path / "note.txt"
        artifact.write_text("written while the server was down")
        run.writer.log_artifact(run.run_id, artifact)
        artifact.unlink()  # the trial's temporary files may be gone by the time the server is back
        run.end("completed")
        # A trial that starts during the outage: its run is created on replay.
        late = TrialRun(uri, "writers", trial_config(CFG), tags={"writer": "late"}, spool=spool)
        late.log_epoch(_epoch(1))
        assert time.monotonic() - began < 60  # bounded: MLflow's default retries take minutes per call
        assert late.run_id.startswith("pending-") and len(list(spool.glob("*.jsonl"))) == 2
        server = start(tmp_path, port)  # back, with the same database
        mlflow.set_tracking_uri(uri)
        late.writer._next_try.clear()  # as if its 20 s back-off had passed: its next write replays, then goes on
        late.log_epoch(_epoch(2))
        late.end("completed")
        assert not late.writer.pending(late.run_id)
        assert replay_dir(spool) == []
        assert not spool.exists()  # everything replayed, nothing left behind
        logged = _count(uri, run.run_id)
        assert all(steps == list(range(1, EPOCHS + 1)) for k, steps in logged.items() if k.startswith("epoch/"))
        client = mlflow.MlflowClient(uri)
        assert client.get_run(run.run_id).info.status == "FINISHED"
        assert [a.path for a in client.list_artifacts(run.run_id)] == ["note.txt"]
        exp = client.get_experiment_by_name("writers").experiment_id
        (replayed,) = client.search_runs([exp], filter_string="tags.writer = 'late'")
        assert replayed.data.params["hidden"] == "4" and replayed.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(replayed.info.run_id, "epoch/val_mse")] == [1, 2]
    finally:
        stop(server)


@pytest.mark.slow
def test_an_unwritable_or_corrupt_spool_never_ends_a_trial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: with `mlflow_spool` replaced by a file and the server killed, every trial errored (FileExistsError
    from the spool's mkdir); one corrupt line in one spool file made the replay stop at once and log none of the
    runs. Now lost writes are counted (the trial goes on) and the readable lines are replayed, the others named."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a refused connection fails at once
    port = free_port()
    uri = f"http://127.0.0.1:{port}"  # the server is down until the end
    not_a_dir = tmp_path / "mlflow_spool"
    not_a_dir.write_text("a file where the spool should be\n")
    blocked = TrialRun(uri, "writers", trial_config(CFG), spool=not_a_dir)
    spool = tmp_path / "spool"
    runs = [TrialRun(uri, "writers", trial_config(CFG), tags={"writer": str(i)}, spool=spool) for i in range(3)]
    for epoch in range(1, 4):
        for run in (blocked, *runs):
            run.log_epoch(_epoch(epoch))
    for run in (blocked, *runs):
        run.end("completed")
    assert blocked.run_id.startswith("pending-") and blocked.writer.lost == 6  # creation, params, 3 epochs, end
    assert "cannot take it" in blocked.writer.lost_why and "mlflow_spool" in blocked.writer.lost_why
    assert blocked.writer.lost_metrics() == {"mlflow_lost_writes": 6, "mlflow_lost_why": blocked.writer.lost_why}
    assert not any(run.writer.lost for run in runs) and len(list(spool.glob("pending-*.jsonl"))) == 3
    damaged = spool / f"{runs[1].run_id}.jsonl"
    lines = damaged.read_text().splitlines(keepends=True)
    damaged.write_text("".join([*lines[:2], '{"op": "log_batch", "metr\n', *lines[2:]]))  # a torn line after the params
    server = start(tmp_path, port)
    try:
        mlflow.set_tracking_uri(uri)
        errors: list[str] = []
        unreadable: list[str] = []
        assert replay_dir(spool, errors, unreadable) == [] and errors == []
        assert unreadable == [f"{damaged.name}: 1 unreadable line(s) (3) skipped and kept in {runs[1].run_id}.corrupt"]
        assert (spool / f"{runs[1].run_id}.corrupt").read_text() == '{"op": "log_batch", "metr\n'
        client = mlflow.MlflowClient(uri)
        exp = client.get_experiment_by_name("writers").experiment_id
        for i in range(3):
            (replayed,) = client.search_runs([exp], filter_string=f"tags.writer = '{i}'")
            assert [m.step for m in client.get_metric_history(replayed.info.run_id, "epoch/val_mse")] == [1, 2, 3]
            assert replayed.info.status == "FINISHED"
    finally:
        stop(server)


def test_a_creation_whose_answer_was_lost_is_adopted_not_made_twice(tmp_path: Path) -> None:
    """The server committed a run but died before answering: the spool's replay finds it by its creation key, and
    the next driver does not close it as an orphan before the replay."""
    import json

    from study.mlflow_writer import RUN_KEY, pending_run_keys, replay_file
    from study.tracking import experiment_id

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    tags = {RUN_KEY: "k1", "sweep": "lost"}
    ghost = client.create_run(experiment_id("lost-answer", uri), run_name="r", tags=tags).info.run_id
    spool = tmp_path / "spool"
    spool.mkdir()
    path = spool / "pending-abc.jsonl"
    records = [{"op": "create_run", "experiment": "lost-answer", "uri": uri, "run_name": "r", "tags": tags},
               {"op": "set_terminated", "status": "FINISHED", "end_time": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert pending_run_keys(spool) == {"k1"}
    assert replay_file(client, path)
    assert (spool / "pending-abc.run").read_text() == ghost
    runs = client.search_runs([experiment_id("lost-answer", uri)])
    assert [r.info.run_id for r in runs] == [ghost] and runs[0].info.status == "FINISHED"


def test_a_copied_run_with_a_known_creation_key_is_named_never_merged(tmp_path: Path) -> None:
    """Before: the replay adopted one of two runs carrying the key (a user's script copies tags too) and merged two
    attempts' histories into it. Now it names both runs and keeps the writes in the spool."""
    import json

    from study.mlflow_writer import RUN_KEY, replay_file
    from study.tracking import experiment_id

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    tags = {RUN_KEY: "k2", "sweep": "copied"}
    exp = experiment_id("copied-key", uri)
    made = [client.create_run(exp, run_name="r", tags=tags).info.run_id for _ in range(2)]
    for run in made:  # a copy holds the history it was copied with
        client.log_metric(run, "copied", 1.0, step=1)
    ghost = [client.create_run(exp, run_name="r", tags=tags | {RUN_KEY: "k3"}).info.run_id for _ in range(2)]
    spool = tmp_path / "spool"
    spool.mkdir()
    path = spool / "pending-def.jsonl"
    records = [{"op": "create_run", "experiment": "copied-key", "uri": uri, "run_name": "r", "tags": tags},
               {"op": "log_batch", "metrics": [{"key": "m", "value": 1.0, "timestamp": 0, "step": 1}], "params": {}, "tags": {}},
               {"op": "set_terminated", "status": "FINISHED", "end_time": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    errors: list[str] = []
    assert not replay_file(client, path, errors)
    assert len(errors) == 1 and all(run in errors[0] for run in made) and "delete the copies" in errors[0]
    assert len(path.read_text().splitlines()) == 3 and not (spool / "pending-def.run").exists()  # nothing merged
    assert all(not client.get_metric_history(run, "m") for run in made)
    # Twins with nothing but their tags are a late-committed creation of the writer's own: one is kept, no refusal.
    twin = spool / "pending-ghi.jsonl"
    twin.write_text("".join(json.dumps(r) + "\n" for r in [records[0] | {"tags": tags | {RUN_KEY: "k3"}}, *records[1:]]))
    assert replay_file(client, twin, errors)
    kept = (spool / "pending-ghi.run").read_text()
    assert kept in ghost and client.get_metric_history(kept, "m")
    assert [client.get_run(r).info.lifecycle_stage for r in ghost if r != kept] == ["deleted"]


def test_a_twin_committed_after_the_replay_is_deleted_by_the_driver(tmp_path: Path) -> None:
    """A creation that timed out, committed by a busy server after the replay had already adopted or made its run,
    was never met by a replay: an empty RUNNING twin beside the trial's run, then closed KILLED as an orphan (two runs
    for one trial). The driver's orphan sweep deletes it first; a run holding data, and one whose creation still
    waits in the spool, are kept."""
    from study.mlflow_writer import RUN_KEY
    from study.tracking import close_orphaned_runs, experiment_id

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    exp = experiment_id("late-twin", uri)
    parent = client.create_run(exp, run_name="sweep").info.run_id
    child = {"mlflow.parentRunId": parent}
    real = client.create_run(exp, run_name="t", tags=child | {RUN_KEY: "a"}).info.run_id
    client.log_param(real, "lr", "0.01")
    client.set_terminated(real, "FINISHED")
    twin = client.create_run(exp, run_name="t", tags=child | {RUN_KEY: "a"}).info.run_id  # committed late: tags only
    waiting = [client.create_run(exp, run_name="w", tags=child | {RUN_KEY: "b"}).info.run_id for _ in range(2)]
    assert close_orphaned_runs(parent, {"b"}) == 0  # nothing orphaned once the twin is gone; 'b' is left to its replay
    assert client.get_run(twin).info.lifecycle_stage == "deleted"
    assert client.get_run(real).info.status == "FINISHED" and client.get_run(real).info.lifecycle_stage == "active"
    assert all(client.get_run(r).info.lifecycle_stage == "active" for r in waiting)


def test_a_resent_parameter_batch_the_server_committed_is_not_a_refusal(tmp_path: Path) -> None:
    """bench/writers.py at 32 writers on sqlite: MLflow's client re-sent a log_batch that timed out; both copies
    raced on the server and the second was refused ("UNIQUE constraint failed: params…", BAD_REQUEST), which ended
    that writer (150 values lost). The same parameters with the same values already in the run are that write's own:
    the rest of the batch is logged; a parameter with another value is still refused."""
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    from study.mlflow_writer import _log_batch

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    real = mlflow.MlflowClient(uri)
    run = real.create_run(real.create_experiment("resent")).info.run_id

    class RacedServer:
        """The real store behind it; the first call is committed by the first copy and refused for the second."""

        def __init__(self, commit: bool = True) -> None:
            self.calls = 0
            self.commit = commit

        def log_batch(self, run_id: str, metrics: list, params: list, tags: list) -> None:  # type: ignore[type-arg]
            self.calls += 1
            if self.calls == 1:
                if self.commit:
                    real.log_batch(run_id, params=params)  # the first copy's commit
                raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: params.key, params.run_uuid",
                                      error_code="BAD_REQUEST")
            real.log_batch(run_id, metrics=metrics, params=params, tags=tags)

        def get_run(self, run_id: str):  # type: ignore[no-untyped-def]
            return real.get_run(run_id)

    _log_batch(RacedServer(), run, [Metric("m", 1.0, 0, 1)], [Param("p", "1")], [])
    assert real.get_run(run).data.params == {"p": "1"} and [m.step for m in real.get_metric_history(run, "m")] == [1]
    with pytest.raises(MlflowException, match="UNIQUE"):  # the run holds p=1: a value of another write, refused
        _log_batch(RacedServer(commit=False), run, [], [Param("p", "2")], [])
