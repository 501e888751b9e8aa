"""Fault suite for stores: a deleted or damaged chunk, a lost sequence zarr.json, and format-1 stores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bubbles.data.store import FrameStore, SequenceMeta, write_sequence
from bubbles.errors import UserError
from cli import main


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    """Two sequences of 20 frames at 32 px: level 0 in chunks of 64 frames, so one chunk per level."""
    path = tmp_path / "s.zarr"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_sequence(path, name, rng.integers(0, 255, (20, 32, 32), dtype=np.uint8), SequenceMeta(source="test"))
    # All black: Zarr would skip writing these chunks unless told to; the record must not call them missing.
    write_sequence(path, "black", np.zeros((20, 32, 32), np.uint8), SequenceMeta(source="test"))
    return path


def _inspect(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["inspect", *args])
    return result.exit_code, result.output


def test_an_intact_store_verifies(store: Path) -> None:
    code, out = _inspect(str(store), "--verify")
    assert code == 0, out
    assert "verified 6 chunks: all checksums match" in out


def test_a_deleted_chunk_is_an_error_naming_sequence_level_and_frames(store: Path) -> None:
    (store / "b" / "1" / "c" / "0" / "0" / "0").unlink()
    with pytest.raises(UserError, match=r"s.zarr/b: level 1 chunk 0 \(frames 0-19\) is missing"):
        FrameStore.open(store)
    code, out = _inspect(str(store))
    assert code == 1 and out.startswith("error:") and "Traceback" not in out


def test_a_damaged_chunk_is_found_by_verify(store: Path) -> None:
    chunk = store / "a" / "0" / "c" / "0" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    FrameStore.open(store)  # presence is all that opening checks
    code, out = _inspect(str(store), "--verify")
    assert code == 1
    assert out.strip().splitlines()[-1].startswith("error:")
    assert "s.zarr/a: level 0 chunk 0 (frames 0-19)" in out


def test_training_reads_stop_at_a_chunk_whose_contents_changed(store: Path, tmp_path: Path) -> None:
    """A chunk rewritten behind the store's back decodes fine, so only its checksum tells: the whole-chunk reads
    that training and predict start with refuse it, naming the sequence, level and frames."""
    import zarr

    zarr.open_array(str(store / "a" / "1"), mode="r+")[3] = 0  # level 1 (16 px), one frame blacked out, validly encoded
    opened = FrameStore.open(store)
    opened.read("a", 1, 0, 2)  # part of a chunk (one window's worth) is not checked
    with pytest.raises(UserError, match=r"s\.zarr/a: level 1 chunk 0 \(frames 0-19\) is damaged \(checksum differs"):
        opened.read("a", 1)
    np.testing.assert_array_equal(opened.read("b", 1), FrameStore.open(store).read("b", 1))  # the others read as before
    config = tmp_path / "t.yaml"
    config.write_text(f"store: {store}\nimage_size: 16\nwindow: '4->1'\nsplit: sequence\nval: [b]\nlayers: 1\nhidden: 4\nepochs: 1\n")
    result = CliRunner(env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}).invoke(
        main, ["train", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "level 1 chunk 0 (frames 0-19) is damaged" in result.output.strip().splitlines()[-1]
    # Before: a FAILED MLflow run and an output directory holding only its manifest were left behind.
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "out").exists()
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert not [r for e in mlflow.search_experiments() for r in mlflow.MlflowClient().search_runs([e.experiment_id])]


def test_a_sequence_without_its_zarr_json_is_not_silently_dropped(store: Path) -> None:
    (store / "b" / "zarr.json").unlink()
    with pytest.raises(UserError, match="b: a sequence directory without its zarr.json"):
        FrameStore.open(store)


def _make_format_1(store: Path, sequences: tuple[str, ...] = ("a", "b", "black")) -> None:
    """What a store written before checksums looks like: version 1, no integrity record."""
    root = store / "zarr.json"
    meta = json.loads(root.read_text())
    meta["attributes"]["bubbles_store"]["format_version"] = 1
    root.write_text(json.dumps(meta))
    for seq in sequences:
        _drop_record(store, seq)


def _drop_record(store: Path, seq: str, replace: object = None) -> None:
    path = store / seq / "zarr.json"
    meta = json.loads(path.read_text())
    if replace is None:
        del meta["attributes"]["integrity"]
    else:
        meta["attributes"]["integrity"] = replace
    path.write_text(json.dumps(meta))


def test_a_format_1_store_opens_and_can_be_given_checksums(store: Path) -> None:
    _make_format_1(store)
    assert sorted(FrameStore.open(store).sequences) == ["a", "b", "black"]
    assert FrameStore.open(store).read("black").max() == 0
    code, out = _inspect(str(store))
    assert code == 0 and "format v1" in out and "3 sequences written before checksums" in out
    code, out = _inspect(str(store), "--verify")
    assert code == 0 and "3 older sequences have no checksums" in out
    code, out = _inspect(str(store), "--verify", "--record")
    assert code == 0 and "recorded checksums for 3 older sequences" in out and "now format 2" in out
    code, out = _inspect(str(store), "--verify")
    assert code == 0 and "verified 6 chunks" in out and "format v2" in out, out
    (store / "a" / "1" / "c" / "0" / "0" / "0").unlink()  # now recorded: a later loss is caught on open
    with pytest.raises(UserError, match="level 1 chunk 0"):
        FrameStore.open(store)


def test_deleting_a_record_does_not_switch_integrity_off(store: Path) -> None:
    """Before: with `attributes.integrity` removed from b/zarr.json and a chunk deleted, `inspect --verify` said
    "all checksums match; 1 older sequences have no checksums", training read black frames, and --record
    certified the damage. A format-2 store records every sequence: a missing or unreadable record is damage."""
    _drop_record(store, "b")
    (store / "b" / "0" / "c" / "0" / "0" / "0").unlink()
    for args in ((), ("--verify",), ("--verify", "--record")):
        code, out = _inspect(str(store), *args)
        assert code == 1 and out.startswith("error:") and "s.zarr/b: its integrity record is missing" in out, out
    assert "integrity" not in json.loads((store / "b" / "zarr.json").read_text())["attributes"]  # nothing certified
    _drop_record(store, "a", replace={"version": 1, "arrays": "garbage"})
    with pytest.raises(UserError, match="s.zarr/a: its integrity record is unreadable"):
        FrameStore.open(store)


def test_a_missing_chunk_is_an_error_for_every_format_and_never_recorded(store: Path) -> None:
    """The array's own shape says which chunk files must exist, whatever the record says (or if there is none)."""
    _make_format_1(store, ("a", "b"))
    (store / "b" / "1" / "c" / "0" / "0" / "0").unlink()
    with pytest.raises(UserError, match=r"s.zarr/b: level 1 chunk 0 \(frames 0-19\) is missing on disk \(deleted, or never written"):
        FrameStore.open(store)
    code, out = _inspect(str(store), "--verify", "--record")
    assert code == 1 and "level 1 chunk 0" in out and "integrity" not in json.loads((store / "b" / "zarr.json").read_text())["attributes"]
    shutil.rmtree(store / "b")
    chunk = store / "a" / "0" / "c" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:20])  # truncated: does not decode
    code, out = _inspect(str(store), "--verify", "--record")
    assert code == 1 and "s.zarr/a: level 0 chunk 0 (frames 0-19) cannot be decoded" in out and "not recorded" in out, out
    assert "integrity" not in json.loads((store / "a" / "zarr.json").read_text())["attributes"]


def test_a_record_that_disagrees_with_the_array_is_damage(store: Path) -> None:
    path = store / "a" / "zarr.json"
    meta = json.loads(path.read_text())
    meta["attributes"]["integrity"]["arrays"]["0"]["shape"] = [10, 32, 32]  # as if frames 10-19 were never there
    path.write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"s.zarr/a: level 0 has shape \(20, 32, 32\) .* the integrity record says \(10, 32, 32\)"):
        FrameStore.open(store)


@pytest.mark.parametrize("existing", [False, True], ids=["both-create-the-store", "both-add-a-sequence"])
def test_two_concurrent_ingests_of_one_name_one_wins_one_line(tmp_path: Path, existing: bool) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    np.save(tmp_path / "rec.npy", np.random.default_rng(1).integers(0, 255, (300, 64, 64), dtype=np.uint8))
    store = tmp_path / "s.zarr"
    if existing:
        write_sequence(store, "other", np.zeros((4, 32, 32), np.uint8), SequenceMeta(source="test"))
    cmd = [sys.executable, str(root / "cli.py"), "ingest", str(tmp_path / "rec.npy"), str(store), "--sequence", "same"]
    env = os.environ | {"PYTHONPATH": str(root)}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stdout.read()) for p in procs]  # type: ignore[union-attr]
    assert sorted(code for code, _ in results) == [0, 1], results
    failed = next(out for code, out in results if code)
    assert failed.startswith("error:") and len(failed.strip().splitlines()) == 1 and "Traceback" not in failed
    assert sorted(FrameStore.open(store).sequences) == (["other", "same"] if existing else ["same"])
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_numeric_conditions_are_stored_as_numbers_and_older_text_is_named(tmp_path: Path) -> None:
    """`--condition gas_flow=0.5` used to store "0.5" (the CLI's parse overwrote the number): another condition id,
    and selections by value missed it. Now the number is stored; `inspect` names sequences holding such text."""
    np.save(tmp_path / "rec.npy", np.zeros((20, 32, 32), np.uint8))
    store = tmp_path / "s.zarr"
    args = ["ingest", str(tmp_path / "rec.npy"), str(store), "--condition", "gas_flow=0.5", "--condition", "n=3", "--condition", "regime=lab"]
    assert CliRunner().invoke(main, args).exit_code == 0
    meta = json.loads((store / "rec" / "zarr.json").read_text())["attributes"]
    assert meta["condition"] == {"gas_flow": 0.5, "n": 3, "regime": "lab"}
    assert isinstance(meta["condition"]["gas_flow"], float) and isinstance(meta["condition"]["n"], int)
    code, out = _inspect(str(store))
    assert code == 0 and "stored as text" not in out
    write_sequence(store, "old", np.zeros((20, 32, 32), np.uint8), SequenceMeta(source="test", condition={"gas_flow": "0.5"}))
    code, out = _inspect(str(store))
    assert code == 0 and "1 sequences hold numbers stored as text" in out and "old: gas_flow='0.5'" in out
