"""The study's production tracking server: `mlflow server` on a PostgreSQL backend store, artifacts on a path every
node sees, bound to loopback unless told otherwise; checked before it starts, so a wrong setting is one line."""

from __future__ import annotations

import ipaddress
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bubbles.errors import UserError

DB_TIMEOUT_S = 5


@dataclass(frozen=True)
class ServerConfig:
    """backend: postgresql://USER[:PASSWORD]@HOST:PORT/DB (or sqlite:///FILE for one user on one machine);
    artifacts: a directory every Ray node and every reader sees (the server writes there; clients upload through
    it). host 127.0.0.1 keeps the server private to this machine: a cluster's nodes reach it over an SSH tunnel
    or, with host 0.0.0.0 and allowed_hosts, on a trusted network."""

    backend: str
    artifacts: Path
    host: str = "127.0.0.1"
    port: int = 5000
    workers: int = 4
    allowed_hosts: str | None = None

    @property
    def scheme(self) -> str:
        return urlsplit(self.backend).scheme.split("+")[0]


def check(cfg: ServerConfig) -> list[str]:
    """Refuse what would fail after start-up (one line); return warnings (one line each)."""
    warnings: list[str] = []
    if cfg.scheme not in ("postgresql", "sqlite"):
        raise UserError(f"--backend-store-uri {_safe(cfg.backend)!r}: expected postgresql://USER@HOST:PORT/DB "
                        "(or sqlite:///FILE for one user)")
    if cfg.scheme == "sqlite":
        warnings.append("a sqlite backend store serialises every write: fine for one user's sweeps, not for many "
                        "concurrent trials (docs/lab-setup.md, 'When to switch')")
    else:
        _check_postgres(cfg.backend)
    if not 1 <= cfg.port <= 65535:
        raise UserError(f"--port {cfg.port}: expected 1-65535")
    if cfg.workers < 1:
        raise UserError(f"--workers {cfg.workers}: expected at least 1")
    _check_artifacts(cfg.artifacts)
    if not _loopback(cfg.host):
        if not cfg.allowed_hosts:
            raise UserError(f"--host {cfg.host}: name the Host headers clients will send with --allowed-hosts (e.g. "
                            f"head.lab:{cfg.port},10.0.0.10:{cfg.port}); MLflow answers /health but refuses every API "
                            "call (403) from any other name")
        warnings.append(f"listening on {cfg.host}: anyone who reaches this port can read and change every run "
                        "(MLflow has no authentication here); use a trusted network or an SSH tunnel")
    for entry in client_hosts(cfg):
        if ":" not in entry.rsplit("]", 1)[-1] and cfg.port != 80:
            warnings.append(f"--allowed-hosts {entry}: a client of http://{entry}:{cfg.port} sends the Host header "
                            f"{entry}:{cfg.port}, which this entry does not match; write {entry}:{cfg.port}")
    check_port_free(cfg.host, cfg.port)
    return warnings


def client_hosts(cfg: ServerConfig) -> list[str]:
    """The Host headers named by --allowed-hosts (as clients send them: NAME:PORT)."""
    return [h.strip() for h in (cfg.allowed_hosts or "").split(",") if h.strip()]


def served_hosts(cfg: ServerConfig) -> str | None:
    """--allowed-hosts for `mlflow server`: the user's names plus 127.0.0.1:PORT, since MLflow's list replaces its
    defaults and the head node's own commands (export, report) use the printed http://127.0.0.1:PORT."""
    if not cfg.allowed_hosts:
        return None
    return ",".join(dict.fromkeys([*client_hosts(cfg), f"127.0.0.1:{cfg.port}"]))


def check_port_free(host: str, port: int) -> None:
    """Bind the address once, as the server will (SO_REUSEADDR, like uvicorn), so a taken port is one line now and
    not a success banner followed by the server's own error."""
    import errno
    import socket

    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: not an address of this machine ({exc.strerror})") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(f"--port {port}: {host}:{port} is already in use (another server? `ss -ltnp "
                                f"'sport = :{port}'` names the process); choose another --port") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UserError(f"--host {host}: not an address of this machine") from None
            raise UserError(f"--port {port}: cannot listen on {host}:{port} ({exc.strerror})") from None


def command(cfg: ServerConfig) -> list[str]:
    """The `mlflow server` command line for `cfg`."""
    argv = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_uri(cfg.backend),
            "--artifacts-destination", str(cfg.artifacts.resolve()), "--host", cfg.host, "--port", str(cfg.port),
            "--workers", str(cfg.workers)]
    if served_hosts(cfg):
        argv += ["--allowed-hosts", served_hosts(cfg)]  # type: ignore[list-item]
    return argv


def backend_uri(uri: str) -> str:
    """The URI with the driver this project pins (psycopg2): SQLAlchemy 2.1 takes a bare postgresql:// to mean
    psycopg 3, which is not installed."""
    return "postgresql+psycopg2://" + uri.removeprefix("postgresql://") if uri.startswith("postgresql://") else uri


def environment() -> dict[str, str]:
    """The server's environment: MLflow's background job runner (GenAI jobs) is not needed by a study and costs
    ~15 s of start-up on a small machine."""
    return os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _check_postgres(uri: str) -> None:
    """Connect once (5 s), so a wrong host, port, user or database is one line now, not a traceback per worker."""
    try:
        import psycopg2
    except ImportError:
        raise UserError("a postgresql:// backend store needs the psycopg2 driver: pip install psycopg2-binary") from None
    plain = uri.replace("postgresql+psycopg2://", "postgresql://", 1)
    try:
        psycopg2.connect(plain, connect_timeout=DB_TIMEOUT_S).close()
    except psycopg2.Error as exc:
        reason = " ".join((str(exc).strip().splitlines() or [type(exc).__name__])[0].split())
        raise UserError(f"--backend-store-uri {_safe(uri)}: cannot connect ({reason[:200]})") from None


def _check_artifacts(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"--artifacts {path}: not a writable directory ({exc.strerror or exc})") from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _safe(uri: str) -> str:
    """The URI without its password (it goes into error messages)."""
    parts = urlsplit(uri)
    if parts.password:
        return uri.replace(f":{parts.password}@", ":***@", 1)
    return uri
