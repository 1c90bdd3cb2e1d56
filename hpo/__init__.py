"""vcr-hpo: hyperparameter search for vehicle-colour CNN classifiers."""

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
