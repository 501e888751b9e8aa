"""Shared fixtures: one tiny synthetic store per test session (real Zarr on disk, 32 px frames)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# The node's decoded-frame cache of the whole session (and of the Ray workers it starts) lives in a temp dir.
os.environ.setdefault("BUBBLES_FRAME_CACHE", tempfile.mkdtemp(prefix="bubbles-frames-tests-"))

from bubbles.data.synth import SynthConfig, synth_store  # noqa: E402

TINY = SynthConfig(sequences=6, frames=48, size=32, seed=7, conditions=3)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 sequences x 48 frames at 32x32, 3 initial conditions (2 sequences each)."""
    path = tmp_path_factory.mktemp("stores") / "tiny.zarr"
    synth_store(str(path), TINY, workers=1)
    return path


@pytest.fixture(scope="session")
def mlflow_http(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One real `mlflow server` on 127.0.0.1 for the session (sqlite behind it): its URI."""
    from tests.mlflow_server import free_port, start, stop

    port = free_port()
    proc = start(tmp_path_factory.mktemp("mlflow-server"), port)
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture(scope="session")
def postgres():  # type: ignore[no-untyped-def]
    """A real PostgreSQL on 127.0.0.1 for the session (skipped, in one line, where its binaries are absent)."""
    from tests import postgres as pg

    if pg.binaries() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    server = pg.start(("mlflow",))
    yield server
    pg.stop(server)
