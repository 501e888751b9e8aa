"""Fault suite: bad input and bad environments give one `error:` line, exit != 0, and change nothing.

Each case is a command line as a user would type it (CliRunner, in process); the store and files are real.
Cases that need a trained model share one tiny `train` output and its export.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bubbles.data.store import FrameStore
from cli import main


def _run(tmp: Path, *args: str) -> tuple[int, str]:
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    result = CliRunner(env=env).invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _assert_one_line(code: int, out: str, expect: str) -> None:
    lines = [line for line in out.splitlines() if line.strip()]
    assert code != 0, out
    assert "Traceback" not in out, out
    assert lines and lines[-1].startswith("error:"), out
    assert sum(line.startswith("error:") for line in lines) == 1, out
    assert expect in lines[-1], lines[-1]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = tmp_path_factory.mktemp("faults")
    (w / "bad.yaml").write_bytes(b"lr: \xff\xfe\n")
    (w / "dup.yaml").write_text("lr: 0.1\nlr: 0.2\n")
    (w / "ok.yaml").write_text("image_size: 16\n")
    (w / "file").write_text("x")
    np.save(w / "ok.npy", np.zeros((4, 32, 32), np.uint8))
    np.save(w / "bool4.npy", np.zeros((4, 32, 32, 3), bool))
    (w / "bad.mp4").write_text("not a video")
    return w


SET = ["train", "{w}/ok.yaml", "--dry-run", "--set"]
CASES = {
    "non-utf8 yaml": (["train", "{w}/bad.yaml", "--dry-run"], "not UTF-8"),
    "duplicate yaml key": (["train", "{w}/dup.yaml", "--dry-run"], "duplicate key 'lr'"),
    "seed 2**70": ([*SET, f"seed={2**70}"], "seed: must be <="),
    "negative seed": ([*SET, "seed=-1"], "seed: must be >= 0"),
    "lr nan": ([*SET, "lr=.nan"], "lr: expected a finite number"),
    "weight_decay inf": ([*SET, "weight_decay=.inf"], "weight_decay: expected a finite number"),
    "grad_clip -inf": ([*SET, "grad_clip=-.inf"], "grad_clip: expected a finite number"),
    "--set twice": ([*SET, "epochs=1", "--set", "epochs=2"], "--set 'epochs': given twice"),
    "empty experiment": (["train", "{w}/ok.yaml", "--experiment", ""], "--experiment"),
    "train --out is a file": (["train", "{w}/ok.yaml", "--out", "{w}/file"], "is a file"),
    "synth seed -1": (["synth", "{w}/n.zarr", "--seed", "-1", "--frames", "4", "--size", "16"], "--seed"),
    "synth one frame": (["synth", "{w}/n.zarr", "--frames", "1", "--size", "16"], "--frames >= 2"),
    "store parent is a file": (["synth", "{w}/file/s.zarr", "--frames", "4", "--size", "16", "--sequences", "1"], "is a file"),
    "ingest parent is a file": (["ingest", "{w}/ok.npy", "{w}/file/s.zarr"], "is a file"),
    "name too long": (["ingest", "{w}/ok.npy", "{w}/s1.zarr", "--sequence", "a" * 300], "sequence name"),
    "sequence zarr.json": (["ingest", "{w}/ok.npy", "{w}/s2.zarr", "--sequence", "zarr.json"], "sequence name"),
    "sequence __x": (["ingest", "{w}/ok.npy", "{w}/s3.zarr", "--sequence", "__x"], "sequence name"),
    "sequence with space": (["ingest", "{w}/ok.npy", "{w}/s4.zarr", "--sequence", "a b"], "sequence name"),
    "sequence with newline": (["ingest", "{w}/ok.npy", "{w}/s5.zarr", "--sequence", "a\nb"], "sequence name"),
    "fps 0": (["ingest", "{w}/ok.npy", "{w}/s6.zarr", "--fps", "0"], "--fps"),
    "fps -5": (["ingest", "{w}/ok.npy", "{w}/s6.zarr", "--fps", "-5"], "--fps"),
    "fps nan": (["ingest", "{w}/ok.npy", "{w}/s6.zarr", "--fps", "nan"], "--fps"),
    "condition k=": (["ingest", "{w}/ok.npy", "{w}/s7.zarr", "--condition", "k="], "key=value"),
    "condition nan": (["ingest", "{w}/ok.npy", "{w}/s7.zarr", "--condition", "k=nan"], "finite"),
    "condition 1e999": (["ingest", "{w}/ok.npy", "{w}/s7.zarr", "--condition", "k=1e999"], "finite"),
    "condition twice": (["ingest", "{w}/ok.npy", "{w}/s7.zarr", "--condition", "k=1", "--condition", "k=2"], "given twice"),
    "bool (T,H,W,3)": (["ingest", "{w}/bool4.npy", "{w}/s8.zarr"], "bool"),
    "bad video (no ffmpeg banner)": (["ingest", "{w}/bad.mp4", "{w}/s9.zarr"], "cannot decode video (Error opening input"),
    "sweep --name ../x": (["sweep", "{w}/ok.yaml", "--name", "../x", "--storage", "{w}/sweeps"], "sweep name"),
    "report --sweep ../x": (["report", "--sweep", "../x", "--storage", "{w}/sweeps", "--out", "{w}/r"], "sweep name"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(files: Path, case: str) -> None:
    args, expect = CASES[case]
    before = sorted(p.name for p in files.iterdir())
    code, out = _run(files, *(a.format(w=files) for a in args))
    _assert_one_line(code, out, expect)
    assert len(out.strip().splitlines()) == 1, out
    assert sorted(p.name for p in files.iterdir() if p.name != "mlflow.db") == [b for b in before if b != "mlflow.db"]


def test_a_folder_mixing_8_and_16_bit_images_is_one_line(tmp_path: Path) -> None:
    import imageio.v3 as iio

    (tmp_path / "frames").mkdir()
    for i in range(4):
        depth = np.uint8 if i % 2 else np.uint16
        iio.imwrite(tmp_path / "frames" / f"f{i}.png", np.full((32, 32), 200, depth))
    _assert_one_line(*_run(tmp_path, "ingest", str(tmp_path / "frames"), str(tmp_path / "s.zarr")), "mix bit depths (uint16, uint8)")
    assert not (tmp_path / "s.zarr").exists()


def test_single_channel_last_and_huge_floats_are_ingested(tmp_path: Path) -> None:
    np.save(tmp_path / "one.npy", np.arange(4 * 32 * 32, dtype=np.uint8).reshape(4, 32, 32, 1))
    huge = np.linspace(-1.0, 1.0, 4 * 32 * 32).reshape(4, 32, 32) * 1.5e308
    np.save(tmp_path / "huge.npy", huge)
    for name in ("one", "huge"):
        code, out = _run(tmp_path, "ingest", str(tmp_path / f"{name}.npy"), str(tmp_path / "s.zarr"))
        assert code == 0, out
    from bubbles.data.store import FrameStore

    store = FrameStore.open(tmp_path / "s.zarr")
    assert np.array_equal(store.read("one")[..., None], np.load(tmp_path / "one.npy"))
    frames = store.read("huge")
    assert frames.min() == 0 and frames.max() == 255  # not all zeros: the range did not overflow


@pytest.fixture(scope="module")
def trained(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = tmp_path_factory.mktemp("trained")
    (w / "t.yaml").write_text(f"store: {tiny_store}\nimage_size: 16\nwindow: '4->1'\nlayers: 1\nhidden: 4\nepochs: 1\n"
                              "batch_size: 8\nmax_train_windows: 16\nmax_val_windows: 8\n")
    code, out = _run(w, "train", str(w / "t.yaml"), "--out", str(w / "t1"))
    assert code == 0, out
    code, out = _run(w, "export", "--checkpoint", str(w / "t1"), "--out", str(w / "ex"))
    assert code == 0, out
    return w


def _edited_export(w: Path, name: str, edit) -> Path:  # type: ignore[no-untyped-def]
    d = w / name
    if not d.exists():
        shutil.copytree(w / "ex", d)
        (d / "config.json").write_text(json.dumps(edit(json.loads((w / "ex" / "config.json").read_text()))))
    return d


def _runs(w: Path) -> list[str]:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{w / 'mlflow.db'}")
    return sorted(r.info.status for e in mlflow.search_experiments() for r in mlflow.MlflowClient().search_runs([e.experiment_id]))


def test_model_file_faults_are_one_line(trained: Path, tiny_store: Path) -> None:
    w = trained
    runs_before = _runs(w)
    pred = ["--store", str(tiny_store), "--sequence", "seq000"]
    cases = [
        (["train", str(w / "t.yaml"), "--set", "store=/nonexistent.zarr", "--out", str(w / "r0")], "no such frame store"),
        (["train", str(w / "t.yaml"), "--resume", str(w / "t1/checkpoint/best.pt"), "--out", str(w / "r1")], "resume from checkpoint.pt"),
        (["train", str(w / "t.yaml"), "--set", "hidden=8", "--resume", str(w / "t1/checkpoint/checkpoint.pt"), "--out", str(w / "r2")], "another architecture"),
        (["predict", str(_edited_export(w, "e_list", lambda c: [1])), *pred, "--out", str(w / "p")], "export format"),
        (["predict", str(_edited_export(w, "e_plist", lambda c: {**c, "params": [1]})), *pred, "--out", str(w / "p")], "'params' must be a mapping"),
        (["predict", str(_edited_export(w, "e_big", lambda c: {**c, "params": {**c["params"], "image_size": 20000}})), *pred, "--out", str(w / "p")], "another architecture"),
        (["predict", str(w / "ex"), *pred, "--steps", "-3", "--out", str(w / "p")], "--steps -3"),
        (["predict", str(w / "ex"), *pred, "--steps", "100000", "--autoregressive", "--out", str(w / "p")], "--steps 100000"),
        (["predict", str(w / "ex"), *pred, "--input", str(w / "t.yaml"), "--out", str(w / "p")], "not both"),
    ]
    torch_state = w / "nocfg" / "best.pt"
    torch_state.parent.mkdir(exist_ok=True)
    import torch

    state = torch.load(w / "t1/checkpoint/best.pt", weights_only=True)
    torch.save({"model": state["model"]}, torch_state)
    cases.append((["export", "--checkpoint", str(torch_state.parent), "--out", str(w / "e2")], "without its config"))
    for args, expect in cases:
        _assert_one_line(*_run(w, *args), expect)
    assert not any((w / d).exists() for d in ("p", "r0", "r1", "r2", "e2"))
    assert _runs(w) == runs_before  # a refused config leaves no FAILED MLflow run


def test_corrupt_sweep_records_are_one_line(tmp_path: Path) -> None:
    sweep = tmp_path / "sweeps" / "x"
    sweep.mkdir(parents=True)
    (sweep / "mlflow_parent.json").write_text("{not json")
    (sweep / "leaderboard.csv").write_text("trial,status,objective,mlflow_run\nt1,completed,0.5,abc\n")
    for cmd in (["export", "--sweep", "x"], ["report", "--sweep", "x"]):
        _assert_one_line(*_run(tmp_path, *cmd, "--storage", str(tmp_path / "sweeps"), "--out", str(tmp_path / "o")), "mlflow_parent.json")
    (sweep / "mlflow_parent.json").write_text('{"run_id": "abc", "objective": "val_ssim"}')
    (sweep / "leaderboard.csv").write_text("trial,status,objective,mlflow_run\nt1,completed,high,abc\n")
    _assert_one_line(*_run(tmp_path, "export", "--sweep", "x", "--storage", str(tmp_path / "sweeps"), "--out", str(tmp_path / "o")),
                     "objective 'high' is not a number")


def _mount(tmp: Path, *options: str) -> Path:
    if os.getuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs")
    point = tmp / "mnt"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(point)], capture_output=True).returncode:
        pytest.skip("cannot mount tmpfs here (no CAP_SYS_ADMIN)")
    return point


@pytest.mark.parametrize("options, err", [(("size=64k",), errno.ENOSPC), (("size=1m", "ro"), errno.EROFS)])
def test_full_or_read_only_file_system_is_one_line(tmp_path: Path, options: tuple[str, ...], err: int) -> None:
    point = _mount(tmp_path, *options)
    try:
        np.save(tmp_path / "big.npy", np.random.default_rng(0).integers(0, 255, (64, 64, 64), dtype=np.uint8))
        store = str(point / "s.zarr")
        for cmd in (["ingest", str(tmp_path / "big.npy"), store], ["synth", store, "--sequences", "4", "--frames", "60", "--size", "64"]):
            code, out = _run(tmp_path, *cmd)
            _assert_one_line(code, out, f"s.zarr: cannot write ({os.strerror(err)})")
            time.sleep(0.5)  # a writer thread that outlived the failure would show up now
            assert sorted(p.name for p in point.iterdir()) == []  # nothing half-written left behind
    finally:
        subprocess.run(["umount", str(point)], check=True)


def test_a_store_that_is_a_mount_point_takes_new_sequences(tmp_path: Path) -> None:
    """A store on its own volume (a Docker volume, a mounted disk): a sequence staged beside it could not be renamed
    into it across file systems; it is staged inside, hidden from readers, and nothing stays behind."""
    np.save(tmp_path / "rec.npy", np.random.default_rng(0).integers(0, 255, (6, 32, 32), dtype=np.uint8))
    point = _mount(tmp_path, "size=4m")
    try:
        store = point  # the store directory is the mount point itself
        code, out = _run(tmp_path, "synth", str(tmp_path / "seed.zarr"), "--sequences", "1", "--frames", "8", "--size", "32")
        assert code == 0, out
        shutil.copytree(tmp_path / "seed.zarr", store, dirs_exist_ok=True)
        code, out = _run(tmp_path, "ingest", str(tmp_path / "rec.npy"), str(store), "--sequence", "added")
        assert code == 0 and "Traceback" not in out, out
        assert sorted(FrameStore.open(store).sequences) == ["added", "seq000"]
        assert not [p.name for p in point.iterdir() if p.name.startswith(".")]  # the staging directory is gone
    finally:
        subprocess.run(["umount", str(point)], check=True)


def test_outputs_inside_a_frame_store_are_refused(trained: Path, tiny_store: Path) -> None:
    """Before: `--out STORE/newdir` (or a dangling symlink into a store) exited 0, and from then on every command
    on that store failed ("a sequence directory without its zarr.json"). Now refused before anything is written."""
    w = trained
    store = w / "copy.zarr"
    if not store.exists():
        shutil.copytree(tiny_store, store)
    (w / "into-store").unlink(missing_ok=True)
    (w / "into-store").symlink_to(store / "ghost")  # dangling: exports would create store/ghost
    runs_before = _runs(w)
    cases = [
        ["export", "--checkpoint", str(w / "t1"), "--out", str(store / "exported")],
        ["export", "--checkpoint", str(w / "t1"), "--out", str(w / "into-store")],
        ["predict", str(w / "ex"), "--store", str(store), "--sequence", "seq000", "--out", str(store / "pred")],
        ["train", str(w / "t.yaml"), "--out", str(store / "seq000" / "t")],
        ["report", "--sweep", "x", "--out", str(store / "r")],
        ["sweep", str(w / "t.yaml"), "--storage", str(store / "sweeps")],
    ]
    for args in cases:
        code, out = _run(w, *args)
        _assert_one_line(code, out, "the Zarr store")
        assert f"{store}" in out
    assert sorted(p.name for p in store.iterdir()) == sorted(p.name for p in tiny_store.iterdir())
    assert len(FrameStore.open(store).sequences) == 6
    assert _runs(w) == runs_before


def test_experiment_names_mlflow_or_the_disk_would_refuse_are_checked_first(trained: Path, tiny_store: Path) -> None:
    """Before: 5,000 characters gave a traceback (MLflow's 500-character limit); 300 trained the whole run, then
    failed with "File name too long" (the local artifact directory) and left the MLflow run RUNNING."""
    w = trained
    runs_before = _runs(w)
    for name, expect in (("x" * 5000, "at most 500"), ("y" * 300, "can be at most 255")):
        _assert_one_line(*_run(w, "train", str(w / "t.yaml"), "--experiment", name, "--out", str(w / "long")), expect)
        space = w / "long.yaml"
        space.write_text(f"data: {{store: {tiny_store}}}\nfixed: {{image_size: 16, epochs: 1}}\ntracking: {{experiment: {name}}}\n"
                         "search:\n  lr: {type: log, low: 1.0e-3, high: 1.0e-2}\n")
        code, out = _run(w, "sweep", str(space), "--storage", str(w / "sweeps"))
        _assert_one_line(code, out, expect)
        assert "tracking.experiment" in out
    assert not (w / "long").exists() and not (w / "sweeps").exists()
    assert _runs(w) == runs_before
