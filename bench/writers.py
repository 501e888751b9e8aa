"""N concurrent trial writers through a real `mlflow server`, backed by sqlite and by PostgreSQL, side by side.

    python bench/writers.py [--writers 8 32 64] [--epochs 10] [--epoch-s 0.05] [--server-workers 2]

Each writer is a process logging like a trial, through the project's own writer (study.mlflow_writer: batched
calls, a spool for what the store cannot take): it creates its run, logs its parameters, one batch per epoch
(8 metrics), one per-lead evaluation (10 curves x 10 leads) and the summary numbers, then ends the run. All
start together. Counted afterwards in the database itself: every step of every metric that arrived, and what
was spooled instead (and arrived only when the spool was replayed). Latency: wall time of one log_batch call.
Human-readable table, then one JSON object as the very last line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import mlflow_server, postgres  # noqa: E402

EPOCH_KEYS = ("train_loss", "val_mse", "val_ssim", "val_psnr", "val_ssim_lead1", "val_ssim_last", "val_skill_vs_persistence", "seconds")
LEAD_KEYS = ("ssim", "psnr", "mse", "bubble_f1", "sharpness", "persistence_ssim", "persistence_psnr", "persistence_mse",
             "climatology_ssim", "vmaf")
LEADS = 10
SUMMARY = 10


def expected_rows(epochs: int) -> int:
    return epochs * len(EPOCH_KEYS) + len(LEAD_KEYS) * LEADS + SUMMARY


def writer(uri: str, experiment: str, index: int, epochs: int, epoch_s: float, spool: str, barrier: Any, out: Any) -> None:
    """One trial's writes; puts (latencies of log_batch in s, writes spooled) on `out`."""
    os.environ["MLFLOW_TRACKING_URI"] = uri
    from study.mlflow_writer import Writer
    from study.tracking import configure

    configure(uri)
    w = Writer(Path(spool))
    barrier.wait()
    try:
        _trial(w, uri, experiment, index, epochs, epoch_s, spool, out)
    except Exception as exc:  # said in the table (a writer the store refused), never a hung benchmark
        out.put(([], 0, time.time(), time.time(), f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}", w.lost))


def _trial(w: Any, uri: str, experiment: str, index: int, epochs: int, epoch_s: float, spool: str, out: Any) -> None:
    from mlflow.entities import Metric

    began = time.time()
    lat: list[float] = []

    def timed(call: Any) -> None:
        t = time.perf_counter()
        call()
        lat.append(time.perf_counter() - t)

    run = w.create_run(experiment, uri, f"writer-{index}", {"bench": "writers"})
    timed(lambda: w.log_batch(run, params={f"p{k}": str(k * index) for k in range(20)}))
    for epoch in range(1, epochs + 1):
        time.sleep(epoch_s)  # the epoch's training
        ts = int(time.time() * 1000)
        timed(lambda: w.log_batch(run, metrics=[Metric(f"epoch/{k}", index + epoch / 10, ts, epoch) for k in EPOCH_KEYS]))
    ts = int(time.time() * 1000)
    rows = [Metric(f"lead/{k}", 0.5 + lead / 100, ts, lead) for k in LEAD_KEYS for lead in range(1, LEADS + 1)]
    rows += [Metric(f"final_{k}", 0.5, ts, 0) for k in range(SUMMARY)]
    timed(lambda: w.log_batch(run, metrics=rows))
    w.set_terminated(run, "FINISHED")
    own = Path(spool) / f"{w.resolve(run)}.jsonl"  # this writer's own writes still waiting
    spooled = len(own.read_text().splitlines()) if own.exists() else 0
    out.put((lat, spooled, began, time.time(), "", w.lost))


COUNTS = ("SELECT count(*) FROM metrics", "SELECT count(*) FROM runs WHERE status = 'FINISHED'", "SELECT count(*) FROM runs WHERE lifecycle_stage = 'active'")


def count_rows(backend: str, where: Any) -> tuple[int, int, int]:
    """(metric rows, FINISHED runs, all runs) in the store itself."""
    if backend == "sqlite":
        with sqlite3.connect(where) as db:
            return tuple(db.execute(q).fetchone()[0] for q in COUNTS)  # type: ignore[return-value]
    import psycopg2

    with psycopg2.connect(where) as db, db.cursor() as cur:
        out = []
        for q in COUNTS:
            cur.execute(q)
            out.append(cur.fetchone()[0])
        return tuple(out)  # type: ignore[return-value]


def run_case(backend: str, store_uri: str, count_at: Any, tmp: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    port = mlflow_server.free_port()
    server_dir = tmp / f"{backend}-{n}"
    server_dir.mkdir()
    log = server_dir / "server.log"
    proc = mlflow_server.start(server_dir, port, backend=store_uri, workers=args.server_workers, log=log)
    uri = f"http://127.0.0.1:{port}"
    try:
        from study.tracking import experiment_id

        exp_id = experiment_id("writers", uri)  # as the sweep's driver does, before its trials
        ctx = mp.get_context("fork")
        barrier, out = ctx.Barrier(n), ctx.Queue()
        spool = server_dir / "spool"
        procs = [ctx.Process(target=writer, args=(uri, "writers", i, args.epochs, args.epoch_s, str(spool), barrier, out)) for i in range(n)]
        for p in procs:
            p.start()
        results = [out.get(timeout=600) for _ in procs]
        wall = max(r[3] for r in results) - min(r[2] for r in results)  # from the barrier to the last writer's end
        for p in procs:
            p.join(timeout=60)
        arrived, finished, _ = count_rows(backend, count_at)
        from study.mlflow_writer import replay_dir

        errors: list[str] = []
        replay_began = time.perf_counter()
        left = replay_dir(spool, errors, patience_s=args.replay_patience) if spool.exists() else []
        replay_s = time.perf_counter() - replay_began
        # Then, as the driver's orphan sweep does (study.tracking.close_orphaned_runs): the empty twins of creations
        # the busy server committed after their writer had made or adopted the run are deleted.
        import mlflow

        from study.mlflow_writer import drop_creation_twins, pending_run_keys

        twins = drop_creation_twins(mlflow.MlflowClient(uri), [exp_id], "", pending_run_keys(spool))
        after, finished_after, runs = count_rows(backend, count_at)
    finally:
        mlflow_server.stop(proc)
    server_errors = _server_errors(log)
    lat = sorted(x for r in results for x in r[0])
    return {"backend": backend, "writers": n, "batches": len(lat), "p50_ms": 1000 * statistics.median(lat),
            "p95_ms": 1000 * lat[int(0.95 * (len(lat) - 1))], "max_ms": 1000 * lat[-1], "wall_s": wall,
            "expected_rows": n * expected_rows(args.epochs), "arrived_rows": arrived, "runs_finished": finished,
            "spooled_writes": sum(r[1] for r in results), "after_replay_rows": after, "runs_finished_after_replay": finished_after,
            "unreplayed_runs": len(left), "runs_made": runs, "writer_errors": [r[4] for r in results if r[4]], "lost_writes": sum(r[5] for r in results),
            "replay_s": replay_s, "twins_deleted": twins, "replay_errors": errors[:5], "server_errors": server_errors}


def _server_errors(log: Path) -> dict[str, int]:
    """The server's error lines, by kind (the exception's name and the first words of its message), counted."""
    counts: dict[str, int] = {}
    text = log.read_text(errors="replace") if log.exists() else ""
    for line in text.splitlines():
        if ("Error" in line or "Exception" in line) and not line.startswith((" ", "Traceback")):
            kind = line.split(" ", 3)[-1][:110] if line[:4].isdigit() else line[:110]
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1])[:6])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writers", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--epoch-s", type=float, default=0.05, help="Pause between epochs (the training).")
    ap.add_argument("--server-workers", type=int, default=2)
    ap.add_argument("--replay-patience", type=float, default=None,
                    help="Seconds the final replay keeps trying a busy store (default: the sweep driver's).")
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    args = ap.parse_args()
    from study.mlflow_writer import REPLAY_PATIENCE_S

    args.replay_patience = REPLAY_PATIENCE_S if args.replay_patience is None else args.replay_patience
    import mlflow  # noqa: F401  (imported once here: the forked writers share it instead of importing it each)

    import study.tracking  # noqa: F401

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers and PostgreSQL on the way out
    tmp = Path(tempfile.mkdtemp(prefix="bench-writers-"))
    pg = postgres.start(tuple(f"w{n}" for n in args.writers)) if postgres.binaries() and "postgresql" in args.backends else None
    if pg is None:
        print("PostgreSQL binaries not found: sqlite only")
    rows = []
    try:
        for n in args.writers:
            db = tmp / f"sqlite-{n}.db"
            if "sqlite" in args.backends:
                rows.append(run_case("sqlite", f"sqlite:///{db}", db, tmp, n, args))
            if pg is not None:
                rows.append(run_case("postgresql", f"postgresql+psycopg2://mlflow@127.0.0.1:{pg.port}/w{n}", pg.uri(f"w{n}"), tmp, n, args))
    finally:
        if pg is not None:
            postgres.stop(pg)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{args.epochs} epochs x {len(EPOCH_KEYS)} metrics + {len(LEAD_KEYS)} curves x {LEADS} leads + {SUMMARY} "
          f"summary = {expected_rows(args.epochs)} metric values per writer; server --workers {args.server_workers}")
    head = ("backend", "writers", "batches", "p50 ms", "p95 ms", "max ms", "wall s", "expected", "arrived", "spooled",
            "after replay", "replay s", "lost", "runs ended", "runs made", "twins deleted")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r['backend']} | {r['writers']} | {r['batches']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['max_ms']:.0f} | "
              f"{r['wall_s']:.1f} | {r['expected_rows']} | {r['arrived_rows']} | {r['spooled_writes']} | {r['after_replay_rows']} | "
              f"{r['replay_s']:.1f} | {r['lost_writes']} | {r['runs_finished_after_replay']}/{r['writers']} | {r['runs_made']} | {r['twins_deleted']} |")
    for r in rows:
        for error in sorted(set(r["writer_errors"])):
            print(f"{r['backend']} x {r['writers']}: a writer failed: {error}")
        for error in r["replay_errors"]:
            print(f"{r['backend']} x {r['writers']}: the replay stopped: {error}")
        for kind, count in r["server_errors"].items():
            print(f"{r['backend']} x {r['writers']}: server log, {count}x: {kind}")
    for n in args.writers:
        pair = {r["backend"]: r for r in rows if r["writers"] == n}
        if len(pair) == 2:
            print(f"{n} writers: p95 sqlite / postgresql = {pair['sqlite']['p95_ms'] / pair['postgresql']['p95_ms']:.2f}")
    print(json.dumps({"rows": rows, "epochs": args.epochs, "server_workers": args.server_workers, "replay_patience_s": args.replay_patience}))


if __name__ == "__main__":
    main()
