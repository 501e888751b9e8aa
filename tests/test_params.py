"""Flat parameters walked from the config dataclasses and the family records: one default per name, one-line errors."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from bubbles.config import FAMILY_PARAMETERS, PARAMETERS, trial_config
from bubbles.data.windows import SplitConfig
from bubbles.errors import UserError
from bubbles.models.family import CONTEXT_FIELDS
from bubbles.models.registry import FAMILIES
from bubbles.params import flat_values, params_of


def test_defaults_live_in_the_dataclasses() -> None:
    cfg = trial_config({})
    assert cfg.data.split == SplitConfig()  # the flat default and the dataclass default are one (val_fraction 0.25)
    assert PARAMETERS["val_fraction"][0] == SplitConfig().val_fraction == 0.25
    for name, family in FAMILIES.items():
        model = trial_config({"model": name}).model
        for f, spec in params_of(family.config):
            assert getattr(model, f.name) == f.default or name == "convlstm" and f.name in ("hidden", "mode"), (name, f.name)
            assert spec.help and spec.name in PARAMETERS


def test_every_family_field_is_a_parameter_or_set_by_the_trial() -> None:
    for name, family in FAMILIES.items():
        assert FAMILY_PARAMETERS[name] == {s.name for _, s in params_of(family.config)} | set(family.reads)
        loose = [f.name for f in fields(family.config) if "param" not in f.metadata and f.name not in CONTEXT_FIELDS]
        assert not loose, f"{name}: fields neither parameters nor set by the trial: {loose}"


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_flat_values_read_back(name: str) -> None:
    cfg = trial_config({"model": name, "window": "4->2", "image_size": "32x48"})
    assert trial_config(cfg.flat()) == cfg
    assert set(flat_values(cfg.model)) <= FAMILY_PARAMETERS[name]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"st_hiden": 8}, "cfg: st_hiden: unknown parameter (did you mean 'st_hidden'?)"),
        ({"model": "simvp", "hid_t": "wide"}, "cfg: hid_t: expected an integer, got 'wide'"),
        ({"model": "simvp", "mlp_ratio": 100.0}, "cfg: mlp_ratio: must be in [0.25, 64.0], got 100.0"),
        ({"model": "predrnn_v2", "st_kernel": 4}, "cfg: st_kernel: must be odd"),
        ({"model": "predrnn_v2", "st_layer_norm": "yes"}, "cfg: st_layer_norm: expected true or false, got 'yes'"),
        ({"peephole": "eye"}, "cfg: peephole: expected one of frame, channel, none, got 'eye'"),
        ({"split_seed": 2**32}, "cfg: split_seed: must be <= 4294967295"),
        ({"model": "simvp", "layers": 2}, "cfg: layers: applies to model convlstm only, not simvp"),
    ],
)
def test_errors_name_the_file_and_key(params: dict, message: str) -> None:
    with pytest.raises(UserError) as err:
        trial_config(params, "cfg")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_config_saved_when_predrnn_read_teacher_forcing_still_loads() -> None:
    from bubbles.config import from_json

    saved = json.loads(trial_config({"model": "predrnn_v2", "image_size": "32x32"}).to_json()) | {"teacher_forcing": 0.3}
    assert from_json(json.dumps(saved)).model_name == "predrnn_v2"
    with pytest.raises(UserError, match="teacher_forcing: applies to model convlstm only"):
        trial_config(saved)


def test_a_config_saved_before_the_skill_metrics_were_renamed_still_loads() -> None:
    """A checkpoint of a sweep run before the rename (best_by: yardstick_skill) must still export and predict."""
    from bubbles.config import from_json

    saved = json.loads(trial_config({"model": "convlstm", "image_size": "32x32"}).to_json()) | {"best_by": "yardstick_skill"}
    assert from_json(json.dumps(saved)).train.best_by == "yardstick_skill_vs_strongest"
