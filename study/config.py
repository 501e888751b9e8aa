"""YAML files and `--set key=value` overrides -> typed configs; every message names the file and the key."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from bubbles.config import TrialConfig, override, trial_config
from bubbles.errors import UserError


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """YAML 1.1 reads 0x16 as 22, 0o17 / 017 as octal, 1_000 as 1000 and 1:20 as 80: a size like `0x16`
        would silently become another number. Only plain decimal integers are numbers here."""
        number = super().construct_yaml_int(node)  # type: ignore[no-untyped-call]
        text = str(node.value).lstrip("+-")
        if text != "0" and (text[:1] == "0" or "_" in text or ":" in text):
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value} is read by YAML as the number {number}; write the number in decimal, or "
                f"quote the text (e.g. '{node.value}')", node.start_mark)
        return number


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader.construct_yaml_int)


def read_yaml(path: Path) -> Any:
    """yaml.safe_load of a file; a missing file or a syntax error is one line naming the file (and line)."""
    if not path.is_file():
        raise UserError(f"{path}: no such config file")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise UserError(f"{path}:{mark.line + 1}:{mark.column + 1}: {exc.problem}" if mark else f"{path}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UserError(f"{where}: YAML syntax error ({exc.problem})") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: YAML error ({exc})") from None


def parse_sets(pairs: Iterable[str]) -> dict[str, Any]:
    """['lr=0.01', 'hidden=[32,64]'] -> {'lr': 0.01, 'hidden': [32, 64]}; values are read as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r}: expected key=value")
        if key.strip() in out:  # as a duplicate YAML key or --condition: which one was meant is not ours to guess
            raise UserError(f"--set {key.strip()!r}: given twice")
        try:
            out[key.strip()] = yaml.load(value, Loader=_UniqueKeyLoader) if value.strip() else ""  # noqa: S506 (a SafeLoader)
        except yaml.constructor.ConstructorError as exc:
            raise UserError(f"--set {pair!r}: {exc.problem}") from None
        except yaml.YAMLError:
            raise UserError(f"--set {pair!r}: cannot read the value") from None
    return out


def resolve_store(params: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """Relative store paths are taken from the current directory (resolved before Ray moves workers elsewhere)."""
    out = dict(params)
    store = out.get("store")
    if isinstance(store, str) and "://" not in store:
        out["store"] = str((base / store).resolve())
    return out


def load_trial_config(path: Path, sets: Iterable[str] = (), cwd: Path | None = None) -> TrialConfig:
    """A single-trial YAML file (flat parameter names) plus overrides -> TrialConfig."""
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of parameter names to values, got {type(data).__name__}")
    overrides = parse_sets(sets)
    params = override(data, overrides)
    # An error names where the value came from: the file, or the --set that replaced the file's value.
    where = f"{path} with --set {', '.join(overrides)}" if overrides else str(path)
    return trial_config(resolve_store(params, cwd or Path.cwd()), where=where)
