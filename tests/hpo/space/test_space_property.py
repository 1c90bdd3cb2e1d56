"""Property: any YAML document either parses into a usable SearchSpace (that the JSON Schema also
accepts) or raises the project's configuration error, never anything else."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import optuna
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpo.config import FIELD_NAMES
from hpo.errors import ConfigError
from hpo.space import SearchSpaceError, parse_search_space, schema
from hpo.space._yaml import _read_yaml

ROOT = Path(__file__).resolve().parents[3]
GOOD = [yaml.safe_load((ROOT / "search_spaces" / n).read_text()) for n in ("hyperparameters.yaml", "vcr_full.yaml")]
VALIDATOR = jsonschema.Draft202012Validator(schema())
SETTINGS = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
optuna.logging.set_verbosity(optuna.logging.WARNING)

WORDS = st.sampled_from([
    "study", "hyperparameters", "fixed", "type", "categorical", "float", "int", "choices", "low", "high",
    "log", "step", "default", "when", "name", "direction", "directions", "metric", "metrics", "n_trials",
    "timeout", "sampler", "pruner", "seed", "TPE", "Grid", "MedianPruner", "Patient", "wrapped_pruner",
    "maximize", "minimize", "val_acc", "val_loss", "focal", "sgd", "resnet18", *FIELD_NAMES,
])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 300), st.integers(), st.floats(allow_nan=True),
    st.floats(-1, 5), WORDS, st.text(max_size=8), st.sampled_from(["1e-5", "0.1", ".inf", "~", "yes"]),
)
KEYS = st.one_of(WORDS, st.text(max_size=6), st.integers(-3, 3), st.booleans())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=25)


def _check(text: str) -> None:
    try:
        space = parse_search_space(text, source="p.yaml")
    except SearchSpaceError as exc:
        assert exc.errors and all(e.startswith("p.yaml") for e in exc.errors)
        return
    except ConfigError:
        return
    # Accepted: the schema agrees, and every public method works.
    data, _, _ = _read_yaml(text, "p.yaml")
    assert VALIDATOR.is_valid(data), list(VALIDATOR.iter_errors(data))[:1]
    json.dumps(space.canonical())
    space.describe()
    base = space.default_params() or {}
    space.config_for(base)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = space.suggest(trial)
    assert space.active(params) == set(params)


@SETTINGS
@given(VALUES)
def test_random_documents_only_raise_config_errors(doc):
    _check(yaml.safe_dump(doc, allow_unicode=True))


@SETTINGS
@given(st.dictionaries(st.sampled_from(["study", "hyperparameters", "fixed"]), VALUES, min_size=1))
def test_random_top_level_mappings_only_raise_config_errors(doc):
    _check(yaml.safe_dump(doc, allow_unicode=True))


@SETTINGS
@given(st.text(max_size=200))
def test_random_text_only_raises_config_errors(text):
    _check(text)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_good_space(draw):
    doc = copy.deepcopy(draw(st.sampled_from(GOOD)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "insert", "rename"]))
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "insert" and isinstance(parent, dict):
            parent[draw(KEYS)] = draw(VALUES)
        elif action == "rename" and isinstance(parent, dict):
            parent[draw(WORDS)] = parent.pop(path[-1])
    return doc


@SETTINGS
@given(mutated_good_space())
def test_mutated_good_spaces_only_raise_config_errors(doc):
    _check(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))


def test_unmutated_good_spaces_parse():
    for doc in GOOD:
        space = parse_search_space(yaml.safe_dump(doc, sort_keys=False))
        assert [p.name for p in space.params] == list(doc.get("hyperparameters") or {})


def test_hostile_yaml_is_a_config_error():
    bombs = [
        "a: &a [*a]\n",  # self-referencing alias
        ("a: &x [1,2,3,4,5,6,7,8,9]\nb: &y [*x,*x,*x,*x,*x,*x,*x,*x,*x]\nc: &z [*y,*y,*y,*y,*y,*y,*y,*y,*y]\n"
         "d: &w [*z,*z,*z,*z,*z,*z,*z,*z,*z]\ne: &v [*w,*w,*w,*w,*w,*w,*w,*w,*w]\nf: [*v,*v,*v,*v,*v,*v,*v,*v,*v]\n"),
        "[" * 5000 + "]" * 5000,
        "hyperparameters:\n  lr: !!float nope\n",
        "hyperparameters:\n  <<: {lr: {type: float, low: 0.1, high: 0.2}}\n  ? [a]\n  : 1\n",
    ]
    for text in bombs:
        try:
            parse_search_space(text)
        except SearchSpaceError as exc:
            assert exc.errors
        else:
            raise AssertionError(f"accepted {text[:40]!r}")
