"""`bubbles-study sweep` from its parsed options: refuse a bad request in one line, make the embedded default store,
run the sweep, then say where its results are and the one command that comes next (export, or resume)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bubbles.errors import UserError

Say = Callable[[str], object]


@dataclass(frozen=True)
class SweepRequest:
    """The `sweep` command's options, as given."""

    space_file: Path
    name: str | None
    resume: bool
    address: str | None  # --address, else RAY_ADDRESS, else a local Ray
    storage: Path
    storage_shared: bool  # --storage was given: a path every node of a cluster sees
    store: Path | None
    verbose: bool
    trust_state: bool


def resume_command(space_file: Path, name: str, storage: Path, address: str | None, store: Path | None = None,
                   resume: bool = True) -> str:
    """The command that continues this sweep as it was started: same storage, same Ray cluster (a command without
    them looks under runs/sweeps, or starts a local Ray); resume=False: the command that starts it again."""
    words = ["bubbles-study", "sweep", str(space_file), "--name", name, *(["--resume"] if resume else []), "--storage", str(storage)]
    if store is not None:
        words += ["--store", str(store.resolve())]
    if address and address != "local":
        words += ["--address", address]
    return shlex.join(words)


def export_command(name: str, storage: Path, uri: str) -> str:
    """The command that exports this sweep's winner, exactly: its --storage, and the tracking URI when it is not
    the default one this directory would use."""
    from study.tracking import default_uri

    words = ["bubbles-study", "export", "--sweep", name, "--out", f"exports/{name}", "--storage", str(storage)]
    prefix = f"MLFLOW_TRACKING_URI={shlex.quote(uri)} " if uri != default_uri(Path.cwd()) else ""
    return prefix + shlex.join(words)


def _space_store(space_file: Path) -> object:
    """The frame store the search space file names (data.store), unparsed; None if it names none."""
    from study.config import read_yaml

    raw = read_yaml(space_file)
    return raw.get("data", {}).get("store") if isinstance(raw, dict) and isinstance(raw.get("data"), dict) else None


def store_is_absolute(space_file: Path) -> bool:
    """Whether the search space names its frame store by an absolute path or a URL (a relative one is this
    machine's copy, which the other nodes of a cluster do not have)."""
    store = _space_store(space_file)
    return isinstance(store, str) and (store.startswith("/") or "://" in store)


def ensure_default_store(space_file: Path, echo: Say) -> None:
    """The embedded default: make the synthetic store when a search space names it and it is missing."""
    from bubbles.data import DEFAULT_STORE
    from bubbles.data.synth import SynthConfig, synth_store

    if _space_store(space_file) == DEFAULT_STORE and not Path(DEFAULT_STORE).exists():
        echo(f"making the default synthetic store {DEFAULT_STORE} ...")
        synth_store(str(Path(DEFAULT_STORE).resolve()), SynthConfig(), workers=min(2, os.cpu_count() or 1))


def _check_request(request: SweepRequest, name: str, storage: Path) -> None:
    """Refuse, in one line, a sweep that cannot start or resume where it is asked to."""
    from bubbles.outputs import zarr_store_around
    from study.interrupt import has_tune_state

    if zarr_store_around(storage) is not None:
        raise UserError(f"--storage {storage}: lies inside the Zarr store {zarr_store_around(storage)}; sweeps live outside frame stores")
    if request.resume and not (storage / name).is_dir():
        raise UserError(f"--resume: no sweep named {name!r} under {storage}")
    if request.resume and not (storage / name / "tuner.pkl").exists() and not has_tune_state(storage / name):
        raise UserError(f"--resume: the sweep {name!r} under {storage} never saved a trial (its start was interrupted); "
                        f"start it again without --resume")
    if request.trust_state and not request.resume:
        raise UserError("--trust-state goes with --resume")


def sweep_command(request: SweepRequest, echo: Say, err: Say, stopping: Callable[[], None]) -> int:
    """Run the requested sweep to its leaderboard and say what comes next; the exit code (130: interrupted, with
    the command that continues it). `stopping` makes a second Ctrl-C harmless while the driver tidies up."""
    from study.interrupt import discard_unstarted, has_tune_state
    from study.space import load_space
    from study.sweep_dir import check_name
    from study.tracking import check_experiment_name, check_tracking, readable, tracking_uri

    name = check_name(request.name or request.space_file.stem)
    storage = request.storage.resolve()
    _check_request(request, name, storage)
    space_file, store = request.space_file, request.store
    if store is None:
        ensure_default_store(space_file, echo)
    space = load_space(space_file, store=store)
    uri = tracking_uri(Path.cwd())
    check_experiment_name(space.experiment, uri, f"{space_file}: tracking.experiment")
    check_tracking(uri)

    def list_windows() -> None:
        for line in space.coverage:
            echo(line)
        for line in space.coverage_warnings:
            err(f"warning: {line}")

    from study.sweep import run_sweep

    address = request.address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "local"):
        # A fresh local Ray needs no token: without this Ray 2.60 asks for one (or prints how to set one up).
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    again = resume_command(space_file, name, storage, address, store)
    created = not (storage / name).exists()  # only a directory this run creates may be removed after a Ctrl-C
    try:
        outcome = run_sweep(space, name, storage, uri, address=address, echo=echo, storage_shared=request.storage_shared,
                            store_shared=store is not None or store_is_absolute(space_file),
                            preamble=list_windows, resume_command=again, verbose=request.verbose,
                            trust_state=request.trust_state)
        echo(f"sweep {name!r}: {len(outcome.rows)} trials; leaderboard in {outcome.directory}; MLflow parent run {outcome.parent_run_id} in {uri}")
        from study.tracking.views import sweep_view_link

        # None: the store is down (said above). The link opens this sweep's trials ranked by the objective.
        link = readable(lambda: sweep_view_link(uri, space.experiment, outcome.parent_run_id, name,
                                                space.tune.objective, space.tune.mode), None)
        if link:
            echo(f"MLflow runs table: {link}")
        if any(r.get("status") == "completed" for r in outcome.rows) and not outcome.interrupted:
            echo(f"export the winner:  {export_command(name, storage, uri)}")
    except KeyboardInterrupt:
        stopping()  # a second Ctrl-C while the driver tidies up is ignored
        if has_tune_state(storage / name):
            err(f"interrupted: continue with  {again}")
        else:
            done = discard_unstarted(storage / name, uri, created)
            start = resume_command(space_file, name, storage, address, store, resume=False)
            err(f"interrupted during start-up, before any trial ({done}): nothing to resume; start it again "
                f"with  {start}")
        return 130
    if outcome.interrupted:
        err(f"interrupted: continue with  {again}")
        return 130
    return 0


def sweep_from_cli(request: SweepRequest, echo: Say, err: Say) -> int:
    """The `sweep` command: Ctrl-C stops it at any phase (Ray's start and the baselines included; Ray Tune takes
    it over during fit()), also when the shell started it with SIGINT ignored; the exit code."""
    from study.interrupt import stop_on_ctrl_c

    stopping = stop_on_ctrl_c()
    try:
        return sweep_command(request, echo, err, stopping)
    except KeyboardInterrupt:
        stopping()
        err("interrupted before the sweep started: nothing to resume; run the same command again")
        return 130

