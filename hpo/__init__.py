"""vcr-hpo: hyperparameter search for vehicle-colour CNN classifiers.

Names are imported on first use (PEP 562), so `vcr-hpo status` loads Optuna and not torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

#: public name -> submodule that defines it
_EXPORTS = {
    "RunPlan": "run.api",
    "StudyResult": "run.api",
    "load_space": "run.api",
    "plan_run": "run.api",
    "run_study": "run.api",
    "PRUNERS": "algorithms",
    "SAMPLERS": "algorithms",
    "build_pruner": "algorithms",
    "build_sampler": "algorithms",
    "TrainConfig": "config",
    "DatasetSplits": "data",
    "check_data_source": "data",
    "load_dataset": "data",
    "Objective": "trial.objective",
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
    "RunPlan",
    "SearchSpace",
    "SearchSpaceError",
    "StudyResult",
    "StudySpec",
    "TrainConfig",
    "TrainResult",
    "build_pruner",
    "build_sampler",
    "check_data_source",
    "load_dataset",
    "load_search_space",
    "load_space",
    "parse_search_space",
    "plan_run",
    "run_study",
    "save_run",
    "train_model",
]

if TYPE_CHECKING:
    from .algorithms import PRUNERS, SAMPLERS, build_pruner, build_sampler
    from .config import TrainConfig
    from .data import DatasetSplits, check_data_source, load_dataset
    from .run.api import RunPlan, StudyResult, load_space, plan_run, run_study
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
    from .trial.objective import Objective

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
