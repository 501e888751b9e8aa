"""`cli.py server`: the study's tracking server on a real PostgreSQL, bound to loopback, artifacts where told; a
wrong setting is one line before anything starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from tests.mlflow_server import free_port
from tests.test_tracking import _check_run, _train_args

ROOT = Path(__file__).resolve().parents[1]


def _wait_health(port: int, proc: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"server did not answer (exit status {proc.poll()})")


def _listening(port: int) -> set[str]:
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}


@pytest.mark.slow
def test_server_on_postgres_takes_a_trial(postgres, tiny_store: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    artifacts = tmp_path / "shared" / "mlartifacts"
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "server", "--backend-store-uri", postgres.uri(),
                             "--artifacts", str(artifacts), "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_health(port, proc)
        assert _listening(port) == {"127.0.0.1"}  # loopback unless told otherwise
        uri = f"http://127.0.0.1:{port}"
        result = CliRunner(env={"MLFLOW_TRACKING_URI": uri}).invoke(main, _train_args(tiny_store, tmp_path / "out"))
        assert result.exit_code == 0, result.output
        _check_run(uri)
        # The rows are in PostgreSQL, the files under --artifacts.
        import psycopg2

        with psycopg2.connect(postgres.uri()) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'")
            assert cur.fetchone()[0] == 1
            cur.execute("SELECT count(*) FROM metrics WHERE key = 'lead/ssim'")
            assert cur.fetchone()[0] == 3
        assert len(list(artifacts.rglob("best.pt"))) == 1
    finally:
        alive = proc.poll() is None
        if alive:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert alive, (tmp_path / "server.log").read_text()[-3000:]
    assert "MLflow tracking server on http://127.0.0.1:" in (tmp_path / "server.log").read_text()


@pytest.mark.parametrize("args, message", [
    (["--backend-store-uri", "mysql://x@h/db"], "expected postgresql://USER@HOST:PORT/DB"),
    (["--backend-store-uri", "postgresql://mlflow:secret@127.0.0.1:{dead}/mlflow"], "cannot connect (connection to server"),
    (["--backend-store-uri", "sqlite:///{tmp}/m.db", "--artifacts", "{tmp}/afile"], "--artifacts {tmp}/afile: not a writable directory"),
    (["--backend-store-uri", "sqlite:///{tmp}/m.db", "--port", "70000"], "--port 70000: expected 1-65535"),
])
def test_server_refuses_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    fill = {"tmp": tmp_path, "dead": free_port()}
    args = [a.format(**fill) for a in args]
    if "--artifacts" not in args:
        args += ["--artifacts", str(tmp_path / "art")]
    result = CliRunner().invoke(main, ["server", *args])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and message.format(**fill) in lines[0], result.output
    assert "secret" not in result.output  # a password never reaches the terminal
