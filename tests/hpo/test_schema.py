"""hpo/schema.json: generated from the registries and TrainConfig; shipped spaces validate against it.

Regenerate after adding a backbone, field, sampler or pruner: `python tests/hpo/test_schema.py`.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import jsonschema
import pytest

from hpo.algorithms import (
    ALIASES,
    NESTED_PRUNER_ARGS,
    PRUNERS,
    SAMPLERS,
    _annotation_kinds,
    check_algorithm_args,
)
from hpo.config import FIELD_NAMES, FIELD_REGISTRIES, field_optional, field_type
from hpo.names import STUDY_NAME
from hpo.paired import CHOICE_RULES
from hpo.run.portfolio import PORTFOLIO_FILE
from hpo.space import METRICS, PARAM_TYPES, schema
from hpo.trial.equal_compute import TRIAL_LENGTHS
from hpo.trial.fidelity import DEFAULT_REPORT_SECONDS, FIDELITIES
from hpo.trial.subepoch import STEP_ARGS

ROOT = Path(__file__).resolve().parents[2]
SPACES = sorted(p for p in (ROOT / "search_spaces").glob("*.yaml") if p.name != PORTFOLIO_FILE)
_JSON_TYPE = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _annotation_json_types(annotation) -> list[str] | None:
    kinds = _annotation_kinds(annotation)
    if kinds is None:
        return None
    names = {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "None": "null"}
    types = {names[k] for k in kinds}
    if "number" in types:
        types.discard("integer")
    return sorted(types)


def _aliases(name: str) -> list[str]:
    return [name, *sorted(a for a, n in ALIASES.items() if n == name)]


def _algorithm_defs(kind: str) -> dict:
    reg = SAMPLERS if kind == "sampler" else PRUNERS
    names = [a for n in reg.names() for a in _aliases(n)]
    branches = []
    for name in reg.names():
        props: dict = {"type": {}}
        for arg, p in inspect.signature(reg.get(name)).parameters.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if kind == "pruner" and (name, arg) in NESTED_PRUNER_ARGS:
                props[arg] = {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/pruner"}]}
                continue
            if kind == "sampler" and name == "Grid" and arg == "search_space":
                continue
            types = _annotation_json_types(p.annotation)
            if types is not None and kind == "pruner" and arg in STEP_ARGS.get(name, ()):
                types = sorted({*types, "number"} - {"integer"})  # epochs: fractions with report_every
            if types is not None:
                props[arg] = {"type": types}
        if "seed" in props:
            props["seed"] = {"type": ["integer", "null"], "minimum": 0, "maximum": 2**32 - 1}
        required = [a for a, p in inspect.signature(reg.get(name)).parameters.items()
                    if p.default is inspect.Parameter.empty and a in props
                    and (name, a) not in NESTED_PRUNER_ARGS]
        branch = {"if": {"properties": {"type": {"enum": _aliases(name)}}},
                  "then": {"properties": props, "additionalProperties": False}}
        if required:
            branch["then"]["required"] = required
        branches.append(branch)
    return {"type": "object", "required": ["type"],
            "properties": {"type": {"enum": names}}, "allOf": branches}


def _field_value(name: str) -> dict:
    kind = field_type(name)
    out: dict = {"type": [_JSON_TYPE[kind], "null"] if field_optional(name) else _JSON_TYPE[kind]}
    if name in FIELD_REGISTRIES:
        out["enum"] = FIELD_REGISTRIES[name].names() + ([None] if field_optional(name) else [])
    return out


def _field_param(name: str) -> dict:
    kind = field_type(name)
    value = _field_value(name)
    extra: dict = {"properties": {"choices": {"items": value}, "default": value}}
    if kind in (bool, str):
        extra["properties"]["type"] = {"const": "categorical"}
    elif kind is int:
        extra["properties"]["type"] = {"enum": ["categorical", "int"]}
    return {"allOf": [{"$ref": "#/$defs/param"}, extra]}


def build_schema() -> dict:
    """The schema the package should ship (draft 2020-12)."""
    scalar = {"$ref": "#/$defs/scalar"}
    number_keys = {
        "float": {"low": {"type": "number"}, "high": {"type": "number"}, "log": {"type": "boolean"},
                  "step": {"type": ["number", "null"], "exclusiveMinimum": 0},
                  "default": {"type": "number"}},
        "int": {"low": {"type": "integer"}, "high": {"type": "integer"}, "log": {"type": "boolean"},
                "step": {"type": ["integer", "null"], "minimum": 1}, "default": {"type": "integer"}},
    }
    defs: dict = {
        "scalar": {"type": ["string", "number", "boolean", "null"]},
        "when": {
            "type": "object", "minProperties": 1,
            "description": "enable this parameter only when each named categorical parameter "
                           "takes the value (or one of the values) given",
            "additionalProperties": {"anyOf": [scalar, {"type": "array", "minItems": 1,
                                                        "uniqueItems": True, "items": scalar}]},
        },
        "categorical": {
            "required": ["choices"], "additionalProperties": False,
            "properties": {"type": {}, "choices": {"type": "array", "minItems": 2, "uniqueItems": True,
                                                   "items": scalar},
                           "default": scalar, "when": {"$ref": "#/$defs/when"}},
        },
        "param": {
            "type": "object", "required": ["type"],
            "properties": {"type": {"enum": list(PARAM_TYPES)}},
            "allOf": [{"if": {"properties": {"type": {"const": t}}}, "then": {"$ref": f"#/$defs/{t}"}}
                      for t in PARAM_TYPES],
        },
        "sampler": _algorithm_defs("sampler"),
        "pruner": _algorithm_defs("pruner"),
    }
    for t in ("float", "int"):
        defs[t] = {
            "required": ["low", "high"], "additionalProperties": False,
            "properties": {"type": {}, **number_keys[t], "when": {"$ref": "#/$defs/when"}},
            "not": {"required": ["log", "step"],
                    "properties": {"log": {"const": True}, "step": {"type": "number"}}},
        }
    sampler_names = [a for n in SAMPLERS.names() for a in _aliases(n)]
    pruner_names = [a for n in PRUNERS.names() for a in _aliases(n)]
    study = {
        "type": ["object", "null"], "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": STUDY_NAME.pattern},
            "direction": {"enum": ["maximize", "minimize"]},
            "directions": {"type": "array", "minItems": 1, "items": {"enum": ["maximize", "minimize"]}},
            "metric": {"enum": list(METRICS)},
            "metrics": {"type": "array", "minItems": 1, "uniqueItems": True,
                        "items": {"enum": list(METRICS)}},
            "n_trials": {"type": ["integer", "null"], "minimum": 1},
            "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0},
            "sampler": {"anyOf": [{"enum": sampler_names}, {"$ref": "#/$defs/sampler"}]},
            "pruner": {"anyOf": [{"type": "null"}, {"enum": pruner_names}, {"$ref": "#/$defs/pruner"}]},
            "keep_weights": {"type": ["object", "null"], "additionalProperties": False,
                             "properties": {k: {"type": "integer", "minimum": 0}
                                            for k in ("top", "per_backbone")}},
            "trial_isolation": {"enum": ["none", "process", None]},
            "trial_stall_timeout": {"type": ["number", "null"], "exclusiveMinimum": 0,
                                    "description": "seconds an isolated trial's process may send "
                                                   "nothing and use no CPU before it is killed "
                                                   "(default 600); null: no limit"},
            "report_every": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1,
                             "description": "fraction of an epoch between pruner reports "
                                            "(steps = training images seen); null: epoch ends"},
            "report_val_images": {"type": "integer", "minimum": 1,
                                  "description": "validation images a mid-epoch report scores"},
            "fidelity": {"enum": [*FIDELITIES, None],
                         "description": "what a pruner step counts: epochs (default), seconds "
                                        "of training (reports on a grid of report_seconds) or "
                                        "compute (reports every epoch of the default's "
                                        "measured compute)"},
            "report_seconds": {"type": "integer", "minimum": 1,
                               "description": "seconds of training between reports with "
                                              f"fidelity: seconds (default "
                                              f"{DEFAULT_REPORT_SECONDS}); pruner step args are "
                                              "then seconds"},
            "portfolio": {"type": ["integer", "null"], "minimum": 0,
                          "description": "shipped start-up portfolio entries enqueued after "
                                         "trial 0, projected onto this space (hpo.run.portfolio); "
                                         "0 or null: off"},
            "neighbours": {"type": ["integer", "null"], "minimum": 0,
                           "description": "one-change neighbours of trial 0 enqueued after the "
                                          "portfolio: the default with one parameter moved, each "
                                          "parameter once before any twice (hpo.run.portfolio); "
                                          "0 or null: off"},
            "trial_length": {"enum": [*TRIAL_LENGTHS, None],
                             "description": "epochs (default): every trial trains the config's "
                                            "epochs; compute: every trial trains for the "
                                            "measured compute of the default's epochs "
                                            "(hpo.trial.equal_compute)"},
            "choose": {"enum": [*CHOICE_RULES, None],
                       "description": "which trial `vcr-hpo best` exports: best (default), or "
                                      "cheapest_within_1se: the cheapest per training image "
                                      "within one paired standard error of the best "
                                      "(hpo.paired.one_se_choice; needs trial_length: compute "
                                      "and metric val_acc)"},
        },
        "not": {"type": "object",  # `required` alone holds vacuously for study: null
                "anyOf": [{"required": ["direction", "directions"]}, {"required": ["metric", "metrics"]}]},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "vcr-hpo search space",
        "description": "study, hyperparameters (searched trainer fields) and fixed trainer fields. "
                       "Generated by tests/hpo/test_schema.py; semantic rules (ranges, step divides "
                       "the range, conditions, registries of samplers' values) are checked by "
                       "`vcr-hpo validate`.",
        "type": "object", "additionalProperties": False, "required": ["hyperparameters"],
        "properties": {
            "study": {"$ref": "#/$defs/study"},
            "hyperparameters": {
                "type": "object", "minProperties": 1,
                "propertyNames": {"enum": list(FIELD_NAMES)},
                "properties": {n: _field_param(n) for n in FIELD_NAMES},
            },
            "fixed": {
                "type": ["object", "null"],
                "propertyNames": {"enum": list(FIELD_NAMES)},
                "properties": {n: _field_value(n) for n in FIELD_NAMES},
            },
        },
        "$defs": {"study": study, **defs},
    }


def _load(path: Path):
    from hpo.space._yaml import _read_yaml

    data, _, errs = _read_yaml(path.read_text(), str(path))
    assert not errs
    return data


def test_schema_is_current():
    """The shipped file equals what the registries and TrainConfig generate."""
    assert schema() == json.loads(json.dumps(build_schema())), \
        "hpo/schema.json is stale: run python tests/hpo/test_schema.py"


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_shipped_space_validates_against_schema(path):
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in jsonschema.Draft202012Validator(schema()).iter_errors(_load(path))]
    assert errors == []


def test_shipped_spaces_exist():
    assert {p.name for p in SPACES} >= {"hyperparameters.yaml", "vcr_full.yaml"}


def test_schema_lists_every_registered_name():
    s = schema()
    assert s["properties"]["hyperparameters"]["propertyNames"]["enum"] == list(FIELD_NAMES)
    backbone = s["properties"]["fixed"]["properties"]["backbone"]["enum"]
    assert backbone == FIELD_REGISTRIES["backbone"].names()
    assert set(SAMPLERS.names()) <= set(s["$defs"]["sampler"]["properties"]["type"]["enum"])
    assert set(PRUNERS.names()) <= set(s["$defs"]["pruner"]["properties"]["type"]["enum"])


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_schema_sampler_args_match_checker(name):
    """Every argument the schema allows is one the parser accepts too (same signature source)."""
    branch = next(b for b in schema()["$defs"]["sampler"]["allOf"]
                  if name in b["if"]["properties"]["type"]["enum"])
    for arg in branch["then"]["properties"]:
        if arg != "type":
            assert not [p for p in check_algorithm_args("sampler", name, {arg: None})
                        if p.arg == arg and "not an argument" in p.rule]


if __name__ == "__main__":
    out = ROOT / "hpo" / "schema.json"
    out.write_text(json.dumps(build_schema(), indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
