"""`cli.py server`: the study's tracking server on a real PostgreSQL, bound to loopback, artifacts where told; a
wrong setting is one line before anything starts."""

from __future__ import annotations

import os
import signal
import socket
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
    log_text = (tmp_path / "server.log").read_text()
    assert "ready: the tracking API answered at http://127.0.0.1:" in log_text and "MLflow tracking server stopped." in log_text


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


def test_a_busy_port_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["server", "--backend-store-uri", f"sqlite:///{tmp_path}/m.db", "--artifacts",
                                           str(tmp_path / "art"), "--port", str(port)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if not line.startswith("warning:")]
    assert lines == [f"error: --port {port}: 127.0.0.1:{port} is already in use (another server? `ss -ltnp 'sport = "
                     f":{port}'` names the process); choose another --port"], result.output
    assert not (tmp_path / "m.db").exists()  # nothing was started


def test_a_host_other_than_loopback_needs_allowed_hosts(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["server", "--backend-store-uri", f"sqlite:///{tmp_path}/m.db", "--artifacts",
                                       str(tmp_path / "art"), "--host", "0.0.0.0", "--port", str(free_port())])
    assert result.exit_code == 1 and "--host 0.0.0.0: name the Host headers clients will send with --allowed-hosts" in result.output


def test_a_server_that_dies_before_answering_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher's own behaviour, with a child that fails as `mlflow server` does on a bad setting."""
    import study.server_process as server_process

    child = [sys.executable, "-c", "import sys; print('INFO starting', file=sys.stderr); "
             "print('ERROR: [Errno 98] Address already in use', file=sys.stderr); sys.exit(3)"]
    monkeypatch.setattr(server_process, "command", lambda cfg: child)
    result = CliRunner().invoke(main, ["server", "--backend-store-uri", f"sqlite:///{tmp_path}/m.db", "--artifacts",
                                       str(tmp_path / "art"), "--port", str(free_port())])
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1] == ("error: mlflow server exited with status 3 before it answered: ERROR: "
                                              "[Errno 98] Address already in use"), result.output
    assert "ready:" not in result.output


@pytest.mark.slow
def test_ready_means_every_host_answered_and_a_refused_client_is_told_in_one_line(tmp_path: Path) -> None:
    """`server --allowed-hosts`: "ready" only after the API answered with each Host header clients will send; a client
    whose Host header is not allowed is refused by the project's check in one line (MLflow's /health would have
    said 200); Ctrl-C stops the whole server, exit 0."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "server", "--backend-store-uri",
                             f"sqlite:///{tmp_path}/m.db", "--artifacts", str(tmp_path / "art"), "--port", str(port),
                             "--workers", "1", "--allowed-hosts", f"mlflow.test:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        ready = ""
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("ready:"):
                ready = line
                break
        assert f"(Host 127.0.0.1:{port}, mlflow.test:{port})" in ready and f"MLFLOW_TRACKING_URI=http://mlflow.test:{port}" in ready
        with urllib.request.urlopen(f"http://localhost:{port}/health", timeout=5) as resp:
            assert resp.status == 200  # what a /health check alone would have believed
        result = CliRunner(env={"MLFLOW_TRACKING_URI": f"http://localhost:{port}"}).invoke(
            main, ["report", "--sweep", "s", "--out", str(tmp_path / "rep"), "--storage", str(tmp_path / "sweeps")])
        assert result.exit_code == 1
        assert result.output == (f"error: MLflow tracking server http://localhost:{port} refuses this client's Host header "
                                 f"'localhost:{port}' (MLflow's DNS-rebinding guard, 403): start it with --allowed-hosts "
                                 f"localhost:{port}\n"), result.output
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0 and rest.strip().endswith("MLflow tracking server stopped."), rest
    assert _listening(port) == set()  # uvicorn and its worker are gone too
