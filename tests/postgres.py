"""A real PostgreSQL on 127.0.0.1 for tests and benchmarks: initdb + pg_ctl in a temp directory, through
`runuser -u postgres --` when running as root (PostgreSQL refuses root); removed when stopped."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.mlflow_server import free_port


def binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None where PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


@dataclass
class Postgres:
    directory: Path
    port: int
    bin: Path

    def uri(self, database: str = "mlflow") -> str:
        return f"postgresql://mlflow@127.0.0.1:{self.port}/{database}"


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start(databases: tuple[str, ...] = ("mlflow",)) -> Postgres:
    """initdb (trust on loopback, superuser `mlflow`), start on a free port, create `databases`."""
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL binaries (initdb, pg_ctl) not found")
    # Not under pytest's tmp dirs: those are private to root, and the server runs as the postgres user.
    directory = Path(tempfile.mkdtemp(prefix="bubbles-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    data = directory / "data"
    subprocess.run(_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "mlflow", "--no-sync"]),
                   check=True, capture_output=True)
    port = free_port()
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(directory / "log"), "-w", "start"]),
                   check=True, capture_output=True)
    pg = Postgres(directory, port, bin_dir)
    import psycopg2

    conn = psycopg2.connect(pg.uri("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        for name in databases:
            cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    return pg


def stop(pg: Postgres) -> None:
    subprocess.run(_as_owner([str(pg.bin / "pg_ctl"), "-D", str(pg.directory / "data"), "-m", "immediate", "-w", "stop"]),
                   capture_output=True)
    shutil.rmtree(pg.directory, ignore_errors=True)
