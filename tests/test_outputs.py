"""Output paths (issue 9): only this project's own earlier output is replaced; a user's folder or file never is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from bubbles.errors import UserError
from bubbles.outputs import MANIFEST, check_output_dir, replace_dir, temp_sibling
from cli import main


def _user_folder(path: Path) -> Path:
    path.mkdir()
    (path / "thesis.tex").write_text("three years of work")
    return path


def test_foreign_directory_and_file_are_refused(tmp_path: Path) -> None:
    folder = _user_folder(tmp_path / "thesis")
    with pytest.raises(UserError, match="is not an export; choose another --out or remove it"):
        check_output_dir(folder, "export")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_output_dir(tmp_path / "notes.txt", "prediction")
    with pytest.raises(UserError, match="parent .* is a file"):
        check_output_dir(tmp_path / "notes.txt" / "out", "report")
    assert (folder / "thesis.tex").read_text() == "three years of work"


def test_own_output_of_the_same_kind_is_replaced_atomically(tmp_path: Path) -> None:
    out = tmp_path / "export"
    for content in ("first", "second"):
        tmp = temp_sibling(out)
        (tmp / "weights").write_text(content)
        replace_dir(tmp, out, "export")
    assert (out / "weights").read_text() == "second" and (out / MANIFEST).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temp or old siblings left
    with pytest.raises(UserError, match="is not a report"):
        check_output_dir(out, "report")  # an export is not a report's to replace


def test_empty_directory_is_used(tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    tmp = temp_sibling(out)
    (tmp / "a").write_text("1")
    replace_dir(tmp, out, "prediction")
    assert (out / "a").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["export", "--checkpoint", "{ckpt}", "--out", "{out}"],
        ["predict", "{ckpt}", "--input", "{ckpt}", "--out", "{out}"],
        ["report", "--sweep", "nope", "--storage", "{ckpt}", "--out", "{out}"],
        ["export", "--checkpoint", "{ckpt}", "--out", "."],
    ],
)
def test_cli_refuses_foreign_output_and_keeps_it(tmp_path: Path, args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ckpt").mkdir()
    folder = _user_folder(tmp_path / "mine")
    filled = [a.format(ckpt=tmp_path / "ckpt", out=folder) for a in args]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(main, filled)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "choose another --out" in result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (folder / "thesis.tex").read_text() == "three years of work"


def test_train_out_refuses_foreign_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = _user_folder(tmp_path / "mine")
    (tmp_path / "t.yaml").write_text("epochs: 1\n")
    result = CliRunner(env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}).invoke(main, ["train", "t.yaml", "--out", str(folder)])
    assert result.exit_code == 1 and "is not a training output" in result.output, result.output
    assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]


def test_replaced_output_has_one_file_mode(tmp_path: Path) -> None:
    """A writer that leaves 0600 (safetensors' private temp file) does not make one file of an export unreadable to
    the group: every file gets what open() gives under the umask."""
    out = tmp_path / "export"
    tmp = temp_sibling(out)
    (tmp / "weights.safetensors").write_bytes(b"w")
    (tmp / "weights.safetensors").chmod(0o600)
    (tmp / "sub").mkdir(mode=0o700)
    (tmp / "sub" / "a.png").write_bytes(b"p")
    old = os.umask(0o022)
    try:
        replace_dir(tmp, out, "export")
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in out.rglob("*")}
    assert modes == {"weights.safetensors": 0o644, "sub": 0o755, "sub/a.png": 0o644, ".bubbles-output.json": 0o644}
