"""The registry's champion is compared like with like: the objective and its mode first, then the exact value (a
real MLflow registry on sqlite)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np

from study.tracking import CHAMPION, beats_champion, register_export


def _register(uri: str, name: str, bundle: Path, score: tuple[str, float, str]) -> tuple[str, bool, str]:
    x = np.zeros((1, 2, 1, 4, 4), np.float32)
    return register_export(uri, name, bundle, "test", None, score, (x, x[:, :1]))


def test_a_val_mse_version_cannot_unseat_a_val_ssim_champion_and_small_mses_do_not_tie(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.ts").write_bytes(b"weights")
    client = mlflow.MlflowClient(uri)

    assert _register(uri, "by-ssim", bundle, ("val_ssim", 0.5, "max"))[:2] == ("1", True)
    version, became, why = _register(uri, "by-mse", bundle, ("val_mse", 0.001, "min"))
    assert became  # a model of its own: the first version is its champion
    version, became, why = _register(uri, "by-ssim", bundle, ("val_mse", 1e-9, "min"))
    assert (version, became) == ("2", False) and "val_ssim" in why and "val_mse" in why and "\n" not in why
    assert str(client.get_model_version_by_alias("by-ssim", CHAMPION).version) == "1"

    # 1.2e-7 and 1.1e-7 both round to 0.0 at 6 places: the better one still wins.
    assert _register(uri, "small", bundle, ("val_mse", 1.2e-7, "min"))[1]
    version, became, _ = _register(uri, "small", bundle, ("val_mse", 1.1e-7, "min"))
    assert became and str(client.get_model_version_by_alias("small", CHAMPION).version) == version
    tags = client.get_model_version("small", version).tags
    assert float(tags["value_exact"]) == 1.1e-7 and tags["value"] == "1.1e-07"


def test_the_champion_rule() -> None:
    champion = {"objective": "yardstick_ssim", "mode": "max", "value": "0.9", "value_exact": "0.9000001"}
    assert beats_champion(("yardstick_ssim", 0.9000002, "max"), champion) == (True, "")
    assert not beats_champion(("yardstick_ssim", 0.9000001, "max"), champion)[0]  # a tie keeps the champion
    assert not beats_champion(("yardstick_ssim", 0.95, "min"), champion)[0]  # another mode: not comparable
    assert not beats_champion(("yardstick_ssim", float("nan"), "max"), champion)[0]
    assert beats_champion(("yardstick_ssim", 0.1, "max"), None) == (True, "")
    assert beats_champion(("yardstick_ssim", 0.1, "max"), champion | {"value_exact": "nan"})[0]
    older = {"objective": "val_mse", "mode": "min", "value": "0.00123"}  # registered before value_exact existed
    assert beats_champion(("val_mse", 0.00122, "min"), older)[0]
