"""Condition values typed once from `--condition KEY=VALUE` text (bubbles.data.conditions)."""

from __future__ import annotations

import pytest

from bubbles.data.conditions import parse_conditions, text_numbers
from bubbles.data.store import condition_id
from bubbles.errors import UserError


def test_numbers_booleans_and_text_get_their_types() -> None:
    parsed = parse_conditions(["gas_flow=0.5", "n_sites=3", "wet=TRUE", "dry=false", "regime=nozzle", "tiny=1e-3", "neg=-2"])
    assert parsed == {"gas_flow": 0.5, "n_sites": 3, "wet": True, "dry": False, "regime": "nozzle", "tiny": 1e-3, "neg": -2}
    assert [type(parsed[k]) for k in ("gas_flow", "n_sites", "wet", "regime")] == [float, int, bool, str]
    # The id is that of the typed value: a number typed at ingest selects like one written by synth.
    assert condition_id(parse_conditions(["gas_flow=0.5"])) == condition_id({"gas_flow": 0.5}) != condition_id({"gas_flow": "0.5"})


@pytest.mark.parametrize("pairs, message", [
    (["gas_flow"], "expected key=value"), (["=1"], "expected key=value"), (["a="], "expected key=value"),
    (["a=1", "a=2"], "given twice"), (["a=nan"], "must be finite"), (["a=inf"], "must be finite"),
])
def test_malformed_pairs_are_one_line(pairs: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse_conditions(pairs)


def test_text_numbers_finds_what_an_older_ingest_stored_as_text() -> None:
    assert text_numbers({"gas_flow": "0.5", "n": "3", "wet": "true", "regime": "nozzle", "ok": 0.5}) == {"gas_flow": "0.5", "n": "3", "wet": "true"}
    assert text_numbers({"regime": "nan"}) == {}  # not a number a fixed ingest would store
