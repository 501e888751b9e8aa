"""Staging directories of store writes: each holds a lock naming its writer; a dead writer's staging is cleaned.

A sequence (or a new store) is written under a hidden staging directory and renamed into place when complete. A
writer killed with SIGKILL (or a power cut) cannot remove its staging, which can be tens of MB inside the store
or beside it. So every staging directory has a lock file beside it (`<staging>.lock`: pid, host, start time) that
its writer holds (flock) for as long as it writes. The next write to the same store takes each lock it finds: one
it can take belongs to a writer that is gone, and its staging is removed and said. Staging without a lock (an older
version's) is never removed, only named.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


_HELD: set[int] = set()  # lock fds this process holds


def _close_held_in_child() -> None:
    # A forked worker (synth's pool) must not keep a lock's file open: it would keep the lock's file system busy
    # (a volume cannot be unmounted) after the writer is done. Closing a copy does not release the writer's lock.
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


def _lock_of(staging: Path) -> Path:
    return staging.with_name(staging.name + ".lock")


@contextmanager
def holding(staging: Path) -> Iterator[None]:
    """Hold the staging's lock while writing into it. The lock is taken on a temporary name and renamed into place,
    so a cleaner never sees a lock that is not yet held."""
    lock = _lock_of(staging)
    part = lock.with_name(lock.name + ".part")
    fd = os.open(part, os.O_CREAT | os.O_RDWR | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    _HELD.add(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode())
        os.rename(part, lock)
        yield
    finally:
        for path in (part, lock):
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        _HELD.discard(fd)
        os.close(fd)


def _size(path: Path) -> str:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0
    return f"{total / 1e6:.1f} MB"


def clean_stale(store_path: Path, say: Callable[[str], None] | None = None) -> list[Path]:
    """Remove the staging directories (inside the store, or beside it) whose writer is no longer running on this
    host: its lock can be taken. Returns what was removed; `say` gets one line each, and one line for staging
    left alone because it has no lock."""
    locks = sorted(store_path.parent.glob(f".{store_path.name}.*.tmp-*.lock"))
    if store_path.is_dir():
        locks += sorted(store_path.glob(".*.tmp-*.lock"))
    removed = []
    for lock in locks:
        staging = lock.with_name(lock.name.removesuffix(".lock"))
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError:
            continue  # gone meanwhile (its writer finished), or not ours to open
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is still writing
            try:
                who = json.loads(os.read(fd, 4096) or b"{}")
            except ValueError:
                who = {}
            if who.get("host", socket.gethostname()) != socket.gethostname():
                continue  # another machine's writer (a shared file system): only that machine can tell it is gone
            size = _size(staging)
            shutil.rmtree(staging, ignore_errors=True)
            lock.unlink(missing_ok=True)
            removed.append(staging)
            if say is not None:
                began = time.strftime("%Y-%m-%d %H:%M", time.localtime(who["started"])) if "started" in who else "?"
                say(f"removed {staging} ({size}), left by an ingest (pid {who.get('pid', '?')}, started {began}) "
                    "that is no longer running")
        finally:
            os.close(fd)
    unlocked = [p for p in (*store_path.parent.glob(f".{store_path.name}.*.tmp-*"), *(store_path.glob(".*.tmp-*") if store_path.is_dir() else ()))
                if p.is_dir() and not _lock_of(p).exists()]
    if unlocked and say is not None:
        say(f"{len(unlocked)} staging director{'y' if len(unlocked) == 1 else 'ies'} without a lock ({unlocked[0]}"
            f"{', ...' if len(unlocked) > 1 else ''}) left alone: written by an older version, or by hand; remove "
            "them if no ingest is running")
    return removed
