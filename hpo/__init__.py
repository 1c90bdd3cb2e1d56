"""vcr-hpo: hyperparameter search for vehicle-colour CNN classifiers.

Names are imported on first use (PEP 562): the CLI's storage commands (`status`, `best`,
`dashboard`) load Optuna, not torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> submodule that defines it
_EXPORTS = {
    "PRUNERS": "algorithms",
    "SAMPLERS": "algorithms",
    "build_pruner": "algorithms",
    "build_sampler": "algorithms",
    "TrainConfig": "config",
    "DatasetSplits": "data",
    "check_data_source": "data",
    "load_dataset": "data",
    "Objective": "objective",
    "AlgorithmSpec": "space",
    "Param": "space",
    "SearchSpace": "space",
    "SearchSpaceError": "space",
    "StudySpec": "space",
    "load_search_space": "space",
    "parse_search_space": "space",
    "EpochMetrics": "train",
    "NonFiniteLossError": "train",
    "TrainResult": "train",
    "save_run": "train",
    "train_model": "train",
}

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "AlgorithmSpec",
    "DatasetSplits",
    "EpochMetrics",
    "NonFiniteLossError",
    "Objective",
    "Param",
    "SearchSpace",
    "SearchSpaceError",
    "StudySpec",
    "TrainConfig",
    "TrainResult",
    "build_pruner",
    "build_sampler",
    "check_data_source",
    "load_dataset",
    "load_search_space",
    "parse_search_space",
    "save_run",
    "train_model",
]

if TYPE_CHECKING:
    from .algorithms import PRUNERS, SAMPLERS, build_pruner, build_sampler
    from .config import TrainConfig
    from .data import DatasetSplits, check_data_source, load_dataset
    from .objective import Objective
    from .space import (
        AlgorithmSpec,
        Param,
        SearchSpace,
        SearchSpaceError,
        StudySpec,
        load_search_space,
        parse_search_space,
    )
    from .train import EpochMetrics, NonFiniteLossError, TrainResult, save_run, train_model


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
