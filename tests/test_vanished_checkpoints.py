"""Ray's restored state names checkpoints a trial deleted after the state was saved (a driver killed outright: Ray
saves its experiment state at most every 10 s). The trial's next checkpoint must not make Ray look for them: before
VanishedCheckpoints, Ray logged "Error handling checkpoint ..." with a FileNotFoundError traceback (issue 30)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import ray
from ray import tune

from study.records import VanishedCheckpoints


def _trainable(config: dict) -> None:  # type: ignore[type-arg]
    """Four iterations with a checkpoint each; the first attempt dies before its fourth (a driver's death, as Ray
    sees it on restore: the trial continues from its last checkpoint in the saved state)."""
    import tempfile

    start = 0
    restored = tune.get_checkpoint()
    if restored is not None:
        start = int((Path(restored.path) / "it").read_text())
    for it in range(start + 1, 5):
        if it == 4 and not (Path(config["marker"])).exists():
            Path(config["marker"]).touch()
            raise RuntimeError("the first attempt stops here")
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "it").write_text(str(it))
            tune.report({"it": it}, checkpoint=tune.Checkpoint.from_directory(tmp))


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.slow
def test_restored_trial_checkpoints_after_its_old_ones_vanished(tmp_path: Path) -> None:
    """Fails without the callback (run so on 2026-12-08: Ray's "Error handling checkpoint" with FileNotFoundError)."""
    ray.init(num_cpus=1, include_dashboard=False, address="local", log_to_driver=False)
    try:
        run_config = tune.RunConfig(name="vanish", storage_path=str(tmp_path), verbose=0,
                                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2), callbacks=[VanishedCheckpoints()])
        tuner = tune.Tuner(_trainable, param_space={"marker": str(tmp_path / "failed-once")}, run_config=run_config)
        tuner.fit()
        trial_dir = next(p for p in (tmp_path / "vanish").iterdir() if p.is_dir() and p.name.startswith("_trainable"))
        assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == ["checkpoint_000001", "checkpoint_000002"]
        # What a trial that went on after Ray's last save leaves: the state lists checkpoint_000001, the disk lost it.
        shutil.rmtree(trial_dir / "checkpoint_000001")
        errors = _Errors()
        logger = logging.getLogger("ray.tune.execution.tune_controller")
        logger.addHandler(errors)
        try:
            restored = tune.Tuner.restore(str(tmp_path / "vanish"), trainable=_trainable, resume_errored=True)
            results = restored.fit()
        finally:
            logger.removeHandler(errors)
        assert not [m for m in errors.messages if "Error handling checkpoint" in m], errors.messages
        assert results[0].metrics["it"] == 4 and not results.errors
        assert sorted(p.name for p in trial_dir.glob("checkpoint_*")) == ["checkpoint_000002", "checkpoint_000003"]
    finally:
        ray.shutdown()
