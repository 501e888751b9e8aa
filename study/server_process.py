"""`mlflow server` as a child this process watches: "ready" only once the tracking API answered a real request with
every Host header clients will send, one line and a non-zero exit when it dies or refuses them, and Ctrl-C (or a
SIGTERM) passed on to the whole server (uvicorn and its workers) so it stops cleanly."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from bubbles.errors import UserError
from study.api_probe import probe
from study.server import ServerConfig, client_hosts, command, environment

READY_TIMEOUT_S = 600.0  # a loaded head node took 84 s to answer; past this something is wrong
WAIT_NOTE_S = 15.0  # a line for every wait this long, so a slow start is not a hang
STOP_GRACE_S = 20.0  # after Ctrl-C, how long the server has to stop before it is killed


def local_url(cfg: ServerConfig) -> str:
    """The URL this machine reaches the server at (loopback when it listens on every interface)."""
    host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "localhost") else cfg.host
    return f"http://{f'[{host}]' if ':' in host else host}:{cfg.port}"


def probe_hosts(cfg: ServerConfig) -> list[str]:
    """The Host headers the start-up check sends: what a client of the printed URL sends, and every name given to
    --allowed-hosts (a wildcard entry names no single host and is not probed)."""
    hosts = [local_url(cfg).removeprefix("http://")]
    return list(dict.fromkeys([*hosts, *(h for h in client_hosts(cfg) if "*" not in h)]))


def serve(cfg: ServerConfig, say: Callable[[str], None]) -> None:
    """Run the server until it is told to stop (returns) or dies or refuses a client's Host header (UserError, after
    the server has been stopped)."""
    proc = subprocess.Popen(command(cfg), env=environment(), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, errors="replace", start_new_session=True)  # our signals, not the terminal's
    tail: collections.deque[str] = collections.deque(maxlen=50)
    relay = threading.Thread(target=_relay, args=(proc, tail), daemon=True)
    relay.start()
    stopping: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: _forward(proc, stopping, signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        failure = _wait_ready(cfg, proc, tail, stopping, say)
        if failure is None and not stopping:
            proc.wait()
        if failure is not None or stopping:
            _stop(proc, stopping)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _kill(proc)  # an exception of our own, or a worker left by a dead parent: never leave the server behind
        relay.join(timeout=5)
    if stopping:
        say("MLflow tracking server stopped.")
        return
    if failure is not None:
        raise UserError(failure)
    raise UserError(f"the MLflow tracking server stopped by itself (exit status {proc.returncode}): {_cause(tail)}")


def _wait_ready(cfg: ServerConfig, proc: subprocess.Popen, tail: collections.deque[str], stopping: list[int],
                say: Callable[[str], None]) -> str | None:
    """None once every Host header was answered (and "ready" printed); else why not (the server is then stopped)."""
    url, hosts = local_url(cfg), probe_hosts(cfg)
    start = note = time.monotonic()
    while not stopping:
        if proc.poll() is not None:
            time.sleep(0.2)  # its last lines, still in the pipe
            return f"mlflow server exited with status {proc.returncode} before it answered: {_cause(tail)}"
        found = [probe(url, host, timeout=5) for host in hosts]
        refused = [f for f in found if f.host_refused]
        if refused:
            return (f"the server refuses Host header {refused[0].host!r} (403 Invalid Host header): clients sending it "
                    f"would fail on every call; add it to --allowed-hosts")
        if all(f.ok for f in found):
            say(f"ready: the tracking API answered at {url} (Host {', '.join(hosts)}); set "
                f"MLFLOW_TRACKING_URI={_client_uri(cfg)} for sweeps. Ctrl-C stops it.")
            return None
        waited = time.monotonic() - start
        if waited > READY_TIMEOUT_S:
            return f"mlflow server did not answer in {READY_TIMEOUT_S:.0f} s ({found[0].reason}); it was stopped"
        if time.monotonic() - note >= WAIT_NOTE_S:
            note = time.monotonic()
            say(f"waiting for the tracking API to answer at {url} ({waited:.0f} s so far) ...")
        time.sleep(0.5)
    return None


def _client_uri(cfg: ServerConfig) -> str:
    names = [h for h in client_hosts(cfg) if "*" not in h]
    return f"http://{names[0]}" if names else local_url(cfg)


def _relay(proc: subprocess.Popen, tail: collections.deque[str]) -> None:
    """The server's log to our stderr, line by line, keeping the last lines for the one-line cause."""
    assert proc.stderr is not None
    for line in proc.stderr:
        sys.stderr.write(line)
        sys.stderr.flush()
        tail.append(line.rstrip())


def _cause(tail: collections.deque[str]) -> str:
    lines = [x for x in tail if x.strip()]
    errors = [x for x in lines if "error" in x.lower()]
    return ((errors or lines or ["no message (see its log above)"])[-1]).strip()[:300]


def _forward(proc: subprocess.Popen, stopping: list[int], signum: int) -> None:
    """Ctrl-C / SIGTERM: a SIGTERM to the server's process group (uvicorn shuts down gracefully on it; a SIGINT
    makes its workers print a CancelledError traceback); a second one kills it."""
    stopping.append(signum)
    try:
        os.killpg(proc.pid, signal.SIGKILL if len(stopping) > 1 else signal.SIGTERM)
    except ProcessLookupError:
        pass


def _stop(proc: subprocess.Popen, stopping: list[int]) -> None:
    if not stopping and proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()
