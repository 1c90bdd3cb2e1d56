"""Search spaces: YAML text -> a validated, frozen SearchSpace -> Optuna distributions and params.

Private modules, one concern each (the data flows down this list):

- `_yaml`: YAML text -> plain data with line numbers; the error collector (`file: path (line N)`).
- `_study`: the `study:` block (metrics, directions, budget, sampler and pruner specs).
- `_params`: the `hyperparameters:` and `fixed:` blocks, checked against TrainConfig's fields.
- `_conditions`: `when` clauses -> evaluation order; cycles and unreachable conditions.
- `_parse`: `parse_search_space`, the entry point, and the fingerprint.
- `_types`: the frozen values (Param, StudySpec, SearchSpace); `Param.suggest` is the one place
  that turns a parameter into a `trial.suggest_*` call.
- `_load`: files (a bare name: ./, ./search_spaces/, then the shipped spaces) and the JSON Schema.

Parsing reads no file of this machine and never checks weights, devices or data: that is the
preflight step of the commands that train.
"""

from __future__ import annotations

from ..errors import SearchSpaceError
from ._load import ShippedSpace, copy_shipped_space, load_search_space, schema, shipped_spaces
from ._params import PARAM_TYPES
from ._parse import parse_search_space
from ._study import DIRECTIONS, METRICS
from ._types import STALL_TIMEOUT, AlgorithmSpec, Param, SearchSpace, StudySpec

__all__ = [
    "DIRECTIONS",
    "METRICS",
    "PARAM_TYPES",
    "STALL_TIMEOUT",
    "AlgorithmSpec",
    "Param",
    "SearchSpace",
    "SearchSpaceError",
    "ShippedSpace",
    "StudySpec",
    "copy_shipped_space",
    "load_search_space",
    "parse_search_space",
    "schema",
    "shipped_spaces",
]
