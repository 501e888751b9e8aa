# Over 400 lines: the batched writer, its spool and the spool's replay share one on-disk record format, kept together (issue 30's).
"""MLflow writes that never cost a trial its training: bounded HTTP timeouts, batched calls, and a spool on disk.

A write the tracking store cannot take now (server down, sqlite busy past its retries) is appended to a JSON-lines
file per run in the spool directory (artifacts are copied beside it) and replayed, in order, by the next write of
that run once the store answers again, or by the sweep's driver at the end. A run whose creation failed gets a
local id ('pending-…') until it is replayed. Writes the store refuses as invalid are not spooled: they raise.

Tracking trouble never ends a trial: a write that can neither be logged nor spooled (the spool is a file, read-only,
full) is counted as lost (`Writer.lost`, reported with the trial's results so the driver can say so), and a spool
line that cannot be read is set aside in `<run>.corrupt` and named while the readable ones are replayed.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

SPOOL_DIR = "mlflow_spool"
RETRY_EVERY_S = 20.0  # while a run has a spool, try the store again at most this often (a failed try can take ~10 s)
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 900, 100, 100  # under MLflow's per-log_batch limits (1000 / 100 / 100)
RUN_KEY = "bubbles.creation_key"  # a tag set at creation: one key, one run, however often the creation is retried
# The tags that make a run a sweep trial's: a trial has one run, so a creation replayed for a trial that already has
# one (made by an attempt whose driver died during an outage) adopts that run instead of making a second.
TRIAL_IDENTITY = ("mlflow.parentRunId", "tune_trial_id")
# A refusal that replaying would only repeat (these are client errors, not outages).
_REFUSALS = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST", "INVALID_STATE"}


def bound_http() -> None:
    """Cap how long one MLflow HTTP call may take when the server is down or hung (its defaults retry for
    minutes): 2 retries with 1 s / 2 s backoff, 10 s per request. Explicit settings in the environment win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "0.5")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def is_refusal(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) in _REFUSALS


def _busy(exc: BaseException) -> bool:
    return "database is locked" in str(exc) or "database table is locked" in str(exc)


class Writer:
    """Writes of one process to one tracking store, spooled to `spool` (if given) when the store is unavailable."""

    def __init__(self, spool: Path | None) -> None:
        import mlflow

        self.client = mlflow.MlflowClient()
        self.spool = spool
        self._next_try: dict[str, float] = {}
        self.lost = 0  # writes neither logged nor spooled
        self.lost_why = ""  # the first reason
        self.spooled_why = ""  # why the first spooled write was not taken (the store's answer, in one line)
        # After a write the store did not take, every run's writes go straight to the spool until then: a driver
        # writing to many runs during an outage waits for one timeout, not one per run.
        self._down_until = 0.0
        # Runs this writer made: every other run (a resumed trial's, one a replay made) may already hold some of the
        # metric steps written to it, so those writes are logged once per (metric, step) (see _apply).
        self._created: set[str] = set()
        self._seen: dict[str, dict[str, set[int]]] = {}

    def lost_metrics(self) -> dict[str, Any]:
        """What a trial reports to its driver about writes it lost (empty when none were)."""
        return {"mlflow_lost_writes": self.lost, "mlflow_lost_why": self.lost_why} if self.lost else {}

    # -- the writes ---------------------------------------------------------------------------------------------
    def create_run(self, experiment: str, uri: str, run_name: str, tags: dict[str, str]) -> str:
        """A new run's id; a 'pending-…' id (resolved on replay) when the store cannot create it now."""
        # A creation whose answer is lost (the server dies after its commit) leaves a run nobody knows of: the key lets
        # the replay adopt that run instead of making a second one, and lets the next driver leave it to the replay.
        tags = {**tags, RUN_KEY: uuid.uuid4().hex}
        try:
            made = self._retry_busy(lambda: _create(self.client, experiment, uri, run_name, tags))
        except Exception as exc:
            if self.spool is None or is_refusal(exc):
                raise
            made = f"pending-{uuid.uuid4().hex}"
            self._append(made, {"op": "create_run", "experiment": experiment, "uri": uri, "run_name": run_name, "tags": tags})
        self._created.add(made)
        return made

    def log_batch(self, run_id: str, metrics: list[Any] = (), params: dict[str, str] | None = None, tags: dict[str, str] | None = None,  # type: ignore[assignment]
                  once: bool | None = None) -> None:
        """Metrics (mlflow.entities.Metric), params and tags in as few calls as MLflow's limits allow. `once`
        (default: for a run this writer did not make) skips the metric steps the run holds already; False logs
        every value again (a sweep's best_* after a resume: the latest is the one shown)."""
        rows = [{"key": m.key, "value": m.value, "timestamp": m.timestamp, "step": m.step} for m in metrics]
        record = {"op": "log_batch", "metrics": rows, "params": params or {}, "tags": tags or {}}
        self._write(run_id, record if once is None else record | {"once": once})

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.log_batch(run_id, tags={key: value})

    def log_artifact(self, run_id: str, local: Path, artifact_path: str | None = None) -> None:
        self._write(run_id, {"op": "log_artifact", "local": str(local), "artifact_path": artifact_path})

    def set_terminated(self, run_id: str, status: str, end_time: int | None = None) -> None:
        self._write(run_id, {"op": "set_terminated", "status": status, "end_time": end_time})

    def update_run(self, run_id: str, status: str) -> None:
        self._write(run_id, {"op": "update_run", "status": status})

    def end_if_open(self, run_id: str, status: str, tags: dict[str, str], end_metric: str | None = None) -> None:
        """Tag the run, then end it with `status` if it is still open (RUNNING, or KILLED by an earlier interrupt),
        at the time of the last step of `end_metric` (None: now). Decided when the write is applied, so a replay
        after an outage ends the run exactly as the driver would have."""
        self._write(run_id, {"op": "end_if_open", "status": status, "tags": tags, "end_metric": end_metric})

    def pending(self, run_id: str) -> bool:
        """Whether some of this run's writes are still waiting in the spool."""
        return self.spool is not None and (self.spool / f"{run_id}.jsonl").is_file()

    # -- plumbing -----------------------------------------------------------------------------------------------
    def _write(self, run_id: str, record: dict[str, Any]) -> None:
        if record["op"] == "log_batch" and run_id not in self._created and "once" not in record:
            record = record | {"once": True}
        run_id = self.resolve(run_id)
        if self.pending(run_id) or (time.monotonic() < self._down_until and not run_id.startswith("pending-")):
            if not self._replay_now(run_id):
                self._append(run_id, record)
                return
            run_id = self.resolve(run_id)  # the replay may just have created a pending run
        if run_id.startswith("pending-"):  # its creation could not be spooled either: nothing can take its writes
            self._lose(record, "the run could not be created or its creation kept")
            return
        try:
            self._retry_busy(lambda: _apply(self.client, run_id, record, self._seen.setdefault(run_id, {})))
        except Exception as exc:
            if self.spool is None or is_refusal(exc):
                raise
            self._append(run_id, record)
            self._next_try[run_id] = self._down_until = time.monotonic() + RETRY_EVERY_S
            self.spooled_why = self.spooled_why or (str(exc).splitlines() or [type(exc).__name__])[0][:160]

    def resolve(self, run_id: str) -> str:
        """The real id of a run created by a replay (its writes so far went to the 'pending-…' spool)."""
        created = self.spool / f"{run_id}.run" if self.spool is not None and run_id.startswith("pending-") else None
        return created.read_text() if created is not None and created.exists() and not self.pending(run_id) else run_id

    def _replay_now(self, run_id: str) -> bool:
        if time.monotonic() < max(self._next_try.get(run_id, 0.0), self._down_until):
            return False
        try:
            done = replay_file(self.client, self.spool / f"{run_id}.jsonl")  # type: ignore[operator]
        except OSError:  # the spool itself refuses (read-only, removed): keep appending, or count the loss
            done = False
        self._next_try[run_id] = 0.0 if done else time.monotonic() + RETRY_EVERY_S
        return done

    def _append(self, run_id: str, record: dict[str, Any]) -> None:
        """Keep a write for later; when the spool cannot take it either, count it as lost (the trial goes on)."""
        assert self.spool is not None
        copy = None
        try:
            self.spool.mkdir(parents=True, exist_ok=True)
            if record["op"] == "log_artifact":  # the file may live in a temporary directory that is about to go
                copy = self.spool / "files" / uuid.uuid4().hex / Path(record["local"]).name
                copy.parent.mkdir(parents=True)
                shutil.copy2(record["local"], copy)
                record = record | {"local": str(copy), "spooled": True}
            with open(self.spool / f"{run_id}.jsonl", "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.write(json.dumps(record) + "\n")
        except OSError as exc:
            if copy is not None:
                shutil.rmtree(copy.parent, ignore_errors=True)
            self._lose(record, f"the spool {self.spool} cannot take it: {exc.strerror or exc}")

    def _lose(self, record: dict[str, Any], why: str) -> None:
        import logging

        if not self.lost:
            self.lost_why = why
            logging.getLogger(__name__).warning("MLflow: a %s write is lost (%s); training goes on", record["op"], why)
        self.lost += 1

    @staticmethod
    def _retry_busy(call: Any, tries: int = 8) -> Any:
        """sqlite allows one writer at a time; a busy database is waited for (jittered), not spooled at once."""
        for attempt in range(tries):
            try:
                return call()
            except Exception as exc:
                if not _busy(exc) or attempt == tries - 1:
                    raise
                time.sleep(0.05 * 2**attempt * (0.5 + random.random()))
        return None


class DuplicateRun(Exception):
    """Several runs carry one creation key: the replay refuses to choose (its writes stay in the spool)."""


def _create(client: Any, experiment: str, uri: str, run_name: str, tags: dict[str, str]) -> str:
    """One creation request, never re-sent by the HTTP layer: a request that timed out may still be committed by a
    busy server, and re-sending it made a second and third run with the same creation key (bench/writers.py at 64
    and 128 writers: 66 and 139 runs). A creation whose answer is lost goes to the spool instead, whose replay
    adopts the run the server made by its key."""
    from study.tracking.experiments import ensure_experiment

    exp = ensure_experiment(client, experiment, uri)
    before = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"  # read per request by MLflow's REST client
    try:
        return client.create_run(exp, run_name=run_name, tags=tags).info.run_id
    finally:
        if before is None:
            os.environ.pop("MLFLOW_HTTP_REQUEST_MAX_RETRIES", None)
        else:
            os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = before


def _adopt(client: Any, experiment: str, uri: str, tags: dict[str, str]) -> tuple[str | None, bool]:
    """The run a replayed creation must not make again: (its id, whether it was made by another attempt of the
    same trial, so that the replayed metrics may repeat its steps), or (None, False). By creation key first (the
    server made it but its answer was lost), then by trial identity (TRIAL_IDENTITY). Several candidates (a run
    copied by someone, tags and all) are refused by name: adopting either would merge two histories."""
    from study.tracking.experiments import ensure_experiment

    exp = ensure_experiment(client, experiment, uri)
    for keys, other_attempt in (((RUN_KEY,), False), (TRIAL_IDENTITY, True)):
        if not all(tags.get(k) for k in keys):
            continue
        where = " and ".join(f"tags.`{k}` = '{tags[k]}'" for k in keys)
        made = client.search_runs([exp], filter_string=where, max_results=10)
        if len(made) > 1 and not other_attempt:
            made = _drop_late_twins(client, made)
        if len(made) > 1:
            what = f"creation key {tags[RUN_KEY]} ({RUN_KEY})" if not other_attempt else f"trial {tags['tune_trial_id']}"
            raise DuplicateRun(f"runs {', '.join(r.info.run_id for r in made)} all carry {what}, which one run only "
                               "should: delete the copies in MLflow, then resume to replay the trial's writes into the one left")
        if made:
            return made[0].info.run_id, other_attempt
    return None, False


def _drop_late_twins(client: Any, made: list[Any], known: set[str] = frozenset()) -> list[Any]:  # type: ignore[assignment]
    """Runs carrying one creation key: a creation that timed out can still be committed by a busy server after a
    replay made the run again, leaving twins with nothing but their tags. Those (no metrics, no parameters) are
    this writer's own and are deleted, keeping the oldest when none holds data; a run with data (or in `known`: a
    run a trial or the spool named as its own) is never deleted,
    so a user's copy (which holds its history) is still refused by name."""
    holding = [r for r in made if r.data.metrics or r.data.params or r.info.run_id in known]
    keep = holding if holding else sorted(made, key=lambda r: r.info.start_time or 0)[:1]
    for run in made:
        if run not in keep:
            try:
                client.delete_run(run.info.run_id)
            except Exception:
                return made  # the store refuses now: leave the choice to a person
    return keep


def drop_creation_twins(client: Any, experiment_ids: list[str], filter_string: str = "", skip: set[str] = frozenset()) -> int:  # type: ignore[assignment]
    """The late twins a busy server left (see _drop_late_twins), looked for among all runs of `experiment_ids`
    matching `filter_string` once the writers are done: a twin committed after the replay had already adopted or
    made its run was never met by a replay and stayed an empty RUNNING run beside the real one (then closed KILLED
    as an orphan: a trial with two runs). Creation keys in `skip` (creations still waiting in a spool) are left to
    their replay; run ids in it are kept. Returns how many runs were deleted."""
    runs, token = [], None
    while True:
        page = client.search_runs(experiment_ids, filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            break
    groups: dict[str, list[Any]] = {}
    for run in runs:
        key = run.data.tags.get(RUN_KEY)
        if key and key not in skip:
            groups.setdefault(key, []).append(run)
    dropped = 0
    for made in groups.values():
        if len(made) > 1:
            kept = _drop_late_twins(client, made, skip)
            dropped += len(made) - len(kept)
    return dropped


def pending_run_keys(spool: Path) -> set[str]:
    """The creation keys of the runs still waiting in the spool (a run the server made before its answer was lost
    carries one of them: the replay adopts it)."""
    keys: set[str] = set()
    for path in spool.glob("pending-*.jsonl") if spool.is_dir() else ():
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("op") == "create_run":
                keys.add(str(record.get("tags", {}).get(RUN_KEY, "")))
    keys.discard("")
    return keys


def spooled_run(spool: Path, tags: dict[str, str]) -> str | None:
    """The run whose creation waits in the spool with these tags (a trial's, whose driver died during an outage):
    its id, real if a replay made it since. A trial attempt continues that run rather than making a second."""
    for path in sorted(spool.glob("pending-*.jsonl")) if spool.is_dir() else ():
        try:
            first = path.open().readline()
            record = json.loads(first) if first.strip() else None
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("op") == "create_run" and isinstance(record.get("tags"), dict) \
                and all(record["tags"].get(k) == v for k, v in tags.items()):
            return _resolved(path)
    return None


def _new_steps(client: Any, run_id: str, rows: list[dict[str, Any]], seen: dict[str, set[int]]) -> list[dict[str, Any]]:
    """The metric rows whose (key, step) the run does not hold yet (its histories read once per key)."""
    fresh = []
    for m in rows:
        if m["key"] not in seen:
            seen[m["key"]] = {h.step for h in client.get_metric_history(run_id, m["key"])}
        if m["step"] not in seen[m["key"]]:
            seen[m["key"]].add(m["step"])
            fresh.append(m)
    return fresh


def _apply(client: Any, run_id: str, record: dict[str, Any], seen: dict[str, set[int]] | None = None) -> None:
    """One write. A log_batch marked `once` (to a run that may hold some of its steps already) skips the metric
    steps the run holds: each (metric, step) is logged once, whatever attempt or replay writes it again."""
    from mlflow.entities import Metric, Param, RunTag

    op = record["op"]
    if op == "log_batch":
        rows = _new_steps(client, run_id, record["metrics"], {} if seen is None else seen) if record.get("once") else record["metrics"]
        metrics = [Metric(m["key"], m["value"], m["timestamp"], m["step"]) for m in rows]
        params = [Param(k, v) for k, v in record["params"].items()]
        tags = [RunTag(k, v) for k, v in record["tags"].items()]
        calls = max(-(-len(metrics) // MAX_METRICS), -(-len(params) // MAX_PARAMS), -(-len(tags) // MAX_TAGS), 1)
        for i in range(calls):  # one call for an epoch's metrics, a trial's params, or a whole per-lead evaluation
            _log_batch(client, run_id, metrics[i * MAX_METRICS : (i + 1) * MAX_METRICS],
                       params[i * MAX_PARAMS : (i + 1) * MAX_PARAMS], tags[i * MAX_TAGS : (i + 1) * MAX_TAGS])
    elif op == "log_artifact":
        client.log_artifact(run_id, record["local"], record["artifact_path"])
    elif op == "set_terminated":
        client.set_terminated(run_id, record["status"], end_time=record["end_time"])
    elif op == "update_run":
        client.update_run(run_id, status=record["status"])
    elif op == "end_if_open":
        for key, value in record["tags"].items():
            client.set_tag(run_id, key, value)
        if client.get_run(run_id).info.status in ("RUNNING", "KILLED"):
            history = client.get_metric_history(run_id, record["end_metric"]) if record.get("end_metric") else []
            client.set_terminated(run_id, record["status"], end_time=max((m.timestamp for m in history), default=None))
    else:
        raise ValueError(f"unknown spooled MLflow write {op!r}")


def _log_batch(client: Any, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
    """One log_batch call. Its parameters may already be in the run: MLflow's HTTP client re-sends a request that
    timed out on a busy server, which may still commit the first copy, or both copies race; the later one is refused
    as a duplicate key ("UNIQUE constraint failed: params…" on sqlite, "duplicate key … param_pk" on PostgreSQL;
    bench/writers.py at 32 writers lost a whole trial's writes to it). Parameters the run already holds with the
    same values are that write's own, arrived: the rest of the batch is sent without them. A different value is
    still refused."""
    try:
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    except Exception as exc:
        text = str(exc)
        if not params or not ("UNIQUE constraint failed: params" in text or ("duplicate key" in text and "param" in text)):
            raise
        held = client.get_run(run_id).data.params
        if any(p.key in held and held[p.key] != p.value for p in params):
            raise
        rest = [p for p in params if p.key not in held]
        if rest or metrics or tags:
            client.log_batch(run_id, metrics=metrics, params=rest, tags=tags)


def _read_spool(path: Path, lines: list[str], unreadable: list[str] | None) -> list[dict[str, Any]]:
    """The readable records of a spool file's lines; unreadable ones are appended to `<run>.corrupt` (kept, for a
    person to look at) and named in `unreadable`."""
    records, bad = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not isinstance(record.get("op"), str):
                raise ValueError("not a spooled write")
            records.append(record)
        except ValueError:
            bad.append((number, line))
    if bad:
        with open(path.with_suffix(".corrupt"), "a") as f:
            f.writelines(line if line.endswith("\n") else line + "\n" for _, line in bad)
        if unreadable is not None:
            numbers = ", ".join(str(n) for n, _ in bad[:5]) + (", ..." if len(bad) > 5 else "")
            unreadable.append(f"{path.name}: {len(bad)} unreadable line(s) ({numbers}) skipped and kept in {path.with_suffix('.corrupt').name}")
    return records


def replay_file(client: Any, path: Path, errors: list[str] | None = None, unreadable: list[str] | None = None,
                stuck: set[str] | None = None) -> bool:
    """Apply a run's spooled writes in order; True when all went through (the file is then removed). A refused
    write (e.g. a param logged before the outage with the same value) is dropped, not retried forever; a line that
    cannot be read is set aside (see _read_spool) and the others replayed. Why a replay stopped is appended to
    `errors`, what was set aside to `unreadable`."""
    if not path.is_file():
        return True
    created = path.with_suffix(".run")  # a pending run already created by an earlier, partial replay
    with open(path, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        records = _read_spool(path, f.readlines(), unreadable)
        run_id = created.read_text() if created.exists() else path.stem
        if run_id.startswith("pending-") and not any(r["op"] == "create_run" for r in records):
            if errors is not None:
                errors.append(f"{path.name}: the run's creation is unreadable, so its {len(records)} write(s) cannot be logged")
            if stuck is not None:
                stuck.add(path.name)  # no retry helps
            f.seek(0)
            f.truncate()
            f.writelines(json.dumps(r) + "\n" for r in records)
            return False
        done = 0
        seen: dict[str, set[int]] = {}
        other_attempt = False  # the run was made by another attempt of the trial: its steps may repeat here
        try:
            for record in records:
                if record["op"] == "create_run":
                    if not created.exists():
                        adopted, other_attempt = _adopt(client, record["experiment"], record["uri"], record["tags"])
                        run_id = adopted or _create(client, record["experiment"], record["uri"], record["run_name"], record["tags"])
                        created.write_text(run_id)
                else:
                    try:
                        _apply(client, run_id, record | ({"once": True} if other_attempt else {}), seen)
                    except Exception as exc:
                        if not is_refusal(exc):
                            raise
                done += 1
        except Exception as exc:
            if errors is not None:
                limit = 600 if isinstance(exc, DuplicateRun) else 200  # its run ids are what a person acts on
                errors.append(f"{record['op']}: {str(exc).splitlines()[0][:limit] if str(exc) else type(exc).__name__}")
            if stuck is not None and isinstance(exc, DuplicateRun):
                stuck.add(path.name)  # a person must act first
            f.seek(0)
            f.truncate()
            f.writelines(json.dumps(r) + "\n" for r in records[done:])
            return False
        path.unlink()
    for record in records:
        if record.get("spooled"):
            shutil.rmtree(Path(record["local"]).parent, ignore_errors=True)
    return True


REPLAY_PATIENCE_S = 180.0  # how long the driver's replay keeps trying a store that answers but is still busy


def replay_dir(spool: Path, errors: list[str] | None = None, unreadable: list[str] | None = None,
               patience_s: float = REPLAY_PATIENCE_S) -> list[str]:
    """Replay every run's spool (the sweep's driver, after its trials); returns the runs (ids) whose writes still
    could not be logged (why, in `errors`). What is replayed is removed, the directory too when it is empty. One
    run's file that cannot be replayed does not stop the others.

    A store that answers but times out (a server still working through the requests its overloaded clients gave
    up on: 64 writers on PostgreSQL left one run's writes unreplayed that way) is given `patience_s` more, in
    rounds with a growing pause; a store that does not answer at all is left to the next replay (`--resume`)."""
    import mlflow

    if not spool.is_dir():
        return []
    client = mlflow.MlflowClient()
    deadline, pause = time.monotonic() + patience_s, 2.0
    while True:
        tried: list[str] = []
        stuck: set[str] = set()
        left, waiting = _replay_round(client, spool, tried, unreadable, stuck)
        if not waiting or time.monotonic() + pause > deadline or not _answers(client):
            break
        time.sleep(pause)
        pause = min(2 * pause, 30.0)
    if errors is not None:
        errors.extend(tried)
    for created in spool.glob("pending-*.run"):  # the sweep's trials are done: nobody writes to a pending id now
        if not created.with_suffix(".jsonl").exists():
            created.unlink()
    if not left:
        shutil.rmtree(spool / "files", ignore_errors=True)
        if not any(spool.iterdir()):
            spool.rmdir()
    return left


def _replay_round(client: Any, spool: Path, errors: list[str], unreadable: list[str] | None,
                  stuck: set[str]) -> tuple[list[str], int]:
    """One pass over the spool: (the runs left, how many of them another pass could still log)."""
    left, waiting = [], 0
    for path in sorted(spool.glob("*.jsonl")):
        try:
            done = replay_file(client, path, errors, unreadable, stuck)
        except OSError as exc:
            done = False
            errors.append(f"{path.name}: {exc.strerror or exc}")
            stuck.add(path.name)
        if not done:
            left.append(_resolved(path))
            waiting += path.name not in stuck
    return left, waiting


def _answers(client: Any) -> bool:
    """Whether the store answers a small read now (a refused connection or a timeout: it does not)."""
    try:
        client.search_experiments(max_results=1)
        return True
    except Exception:
        return False


def _resolved(path: Path) -> str:
    created = path.with_suffix(".run")
    return created.read_text() if created.exists() else path.stem
