"""hpo/study/_optuna.py's lists of Optuna private names: complete, and each one still there."""

from __future__ import annotations

import ast
import importlib
import warnings
from pathlib import Path

import optuna
import pytest

from hpo.study import _optuna, build_storage

SOURCE = Path(_optuna.__file__)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _used() -> set[str]:
    """Private modules' names (`module.name`) and private attributes (`.attr`) the module uses."""
    used = set()
    for node in ast.walk(ast.parse(SOURCE.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and (
                any(_private(part) for part in node.module.split("."))
                or any(_private(a.name) for a in node.names)):
            used.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            used.add(f".{node.attr}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in {"getattr", "hasattr", "setattr"} and len(node.args) > 1
              and isinstance(node.args[1], ast.Constant) and _private(str(node.args[1].value))):
            used.add(f".{node.args[1].value}")
    return used


def _covered(used: str, listed: str) -> bool:
    if used.startswith("."):  # an attribute: the last part of an entry, or a middle one
        return listed.endswith(used) or f"{used}." in listed
    return listed == used or listed.startswith(f"{used}.")


def test_every_private_name_the_module_uses_is_listed():
    listed = [n.replace(":", ".") for n in (*_optuna.PRIVATE_NAMES, *_optuna.PRIVATE_ATTRIBUTES)]
    missing = sorted(u for u in _used() if not any(_covered(u, n) for n in listed))
    assert not missing, f"add these to _optuna.PRIVATE_NAMES / PRIVATE_ATTRIBUTES: {missing}"


@pytest.mark.parametrize("name", _optuna.PRIVATE_NAMES)
def test_private_name_resolves_in_the_installed_optuna(name):
    module, _, path = name.partition(":")
    value = importlib.import_module(module)
    for part in path.split("."):
        assert hasattr(value, part), f"optuna {optuna.__version__}: {name} is gone ({part})"
        value = getattr(value, part)


def test_private_attributes_exist_on_live_objects(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = build_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    objects = {"Study": study, "Trial": trial, "FrozenTrial": study.trials[0],
               "_CachedStorage": study._storage,
               "GridSampler": optuna.samplers.GridSampler({"x": [0, 1]})}
    for entry in _optuna.PRIVATE_ATTRIBUTES:
        cls, _, attr = entry.partition(".")
        obj = objects[cls]
        assert type(obj).__name__ == cls, entry
        assert hasattr(obj, attr), f"optuna {optuna.__version__}: {entry} is gone"
