"""vcr-hpo: hyperparameter search for vehicle-colour CNN classifiers."""

from .algorithms import PRUNERS, SAMPLERS, build_pruner, build_sampler
from .space import (
    AlgorithmSpec,
    Param,
    SearchSpace,
    SearchSpaceError,
    StudySpec,
    load_search_space,
    parse_search_space,
)
