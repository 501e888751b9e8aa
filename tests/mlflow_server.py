"""A real `mlflow server` on 127.0.0.1 for tests: started with the fast flags, stopped with its process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(directory: Path, port: int, backend: str | None = None, workers: int = 1, log: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a server on `port` backed by directory/server.db (a restart on the same directory keeps its runs), or
    by the `backend` store URI; its stderr to `log` if given; `env`: extra environment (e.g. its pool sizes)."""
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"} | (env or {})
    errors = open(log, "ab") if log is not None else subprocess.DEVNULL
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend or f"sqlite:///{directory / 'server.db'}",
         "--artifacts-destination", str(directory / "server-artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True, env=env,
    )
    if log is not None:
        errors.close()  # the child holds its own copy
    deadline = time.time() + 90
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        if time.time() > deadline or proc.poll() is not None:
            stop(proc)
            raise RuntimeError("mlflow server did not start")
        time.sleep(0.3)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)  # killed, as a crash would: no clean shutdown
    proc.wait(timeout=20)
