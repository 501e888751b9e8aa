"""Output directories this project owns: recognised by a manifest it wrote, replaced atomically, never anyone else's.

Every command with an output path (export, predict, report, train --out) writes `.bubbles-output.json` into its
output. An existing path is replaced only when it holds that manifest with the same kind (or is an empty
directory); anything else is refused with one line, so a user's folder is never deleted or mixed into.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from bubbles.errors import UserError

MANIFEST = ".bubbles-output.json"
KINDS = {"export": "an export", "prediction": "a prediction", "report": "a report", "train": "a training output"}


def manifest_kind(path: Path) -> str | None:
    """The kind recorded in path's manifest, or None when there is no readable manifest of ours."""
    try:
        data = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data.get("kind") if isinstance(data, dict) and data.get("tool") == "bubbles-study" else None


def zarr_store_around(path: Path) -> Path | None:
    """The Zarr store (a directory holding zarr.json) that path is, or lies inside, once every symlink is followed
    (a dangling one too: it is where the output would be written); None when there is none."""
    real = Path(os.path.realpath(path))
    return next((p for p in (real, *real.parents) if (p / "zarr.json").is_file()), None)


def check_output_dir(out: Path, kind: str) -> None:
    """Refuse, in one line, an output path that exists and is not this project's own earlier output of `kind`, or
    one inside a frame store (a directory there reads as a damaged sequence to every later command)."""
    store = zarr_store_around(out)
    if store is not None:
        where = "is" if Path(os.path.realpath(out)) == store else "lies inside"
        raise UserError(f"{out}: {where} the Zarr store {store}; choose an --out outside any frame store")
    if not out.exists() and not out.is_symlink():
        if out.parent.exists() and not out.parent.is_dir():
            raise UserError(f"{out}: its parent {out.parent} is a file, not a directory")
        return
    if not out.is_dir() or out.is_symlink():
        raise UserError(f"{out}: exists and is a file, not a directory; choose another --out")
    if manifest_kind(out) == kind or not any(out.iterdir()):
        return
    raise UserError(f"{out}: exists and is not {KINDS[kind]}; choose another --out or remove it")


def write_manifest(directory: Path, kind: str) -> None:
    """Mark a directory as this project's output of `kind`."""
    # No time stamp: two exports of the same model stay byte-identical.
    (directory / MANIFEST).write_text(json.dumps({"tool": "bubbles-study", "kind": kind}) + "\n")


def temp_sibling(out: Path) -> Path:
    """A fresh hidden directory beside out (same file system, so the final rename is atomic)."""
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    return tmp


def normal_modes(directory: Path) -> None:
    """Give every file and folder under directory the mode a plain open() / mkdir would (0644 / 0755 under the
    usual umask): some writers (safetensors, via a private temp file) leave 0600, and an output is one thing."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for path in directory.rglob("*"):
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def replace_dir(tmp: Path, out: Path, kind: str) -> None:
    """Move a finished temp directory into place. An existing out is checked again (it may have changed since the
    command began) and is removed only after the new one is in place."""
    check_output_dir(out, kind)
    write_manifest(tmp, kind)
    normal_modes(tmp)
    if not out.exists():
        tmp.rename(out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    out.rename(old)
    tmp.rename(out)
    if manifest_kind(old) == kind:
        shutil.rmtree(old)
    else:
        os.rmdir(old)  # the empty directory the user pointed us at
