"""Opening a study for a run or a resume: stored space, diff on change, sampler seed."""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna

from ..attrs import (
    ATTR_BASELINE,
    ATTR_CANONICAL,
    ATTR_FINGERPRINT,
    ATTR_OVERRIDES,
    ATTR_SPACE_YAML,
    ATTR_TARGET,
    ATTR_VERSION,
    BASELINE,
)
from ..errors import ConfigError
from . import _optuna
from ._backends import claim_lock
from ._queries import count_states, get_study_id

# A budget is not part of what a trial means: raising n_trials or the timeout is a top-up.
# The portfolio and the neighbours are enqueued once per study: changing them on a resume
# changes no trial.
_BUDGET_KEYS = {"n_trials", "timeout", "name", "sampler", "pruner", "keep_weights", "portfolio",
                "neighbours"}
# Where a trial runs does not change what it measures.
_PLACEMENT_FIELDS = {"device", "num_workers"}


class SpaceChangedError(ConfigError):
    """The search space (or the --set overrides) differ from the ones the study started with."""


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k in value:
            out.update(_flatten(value[k], f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def resume_view(canonical: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """What must stay equal on resume: the space without its budget, plus the overrides."""
    view = {k: v for k, v in canonical.items() if k != "study"}
    study = canonical.get("study")
    if isinstance(study, Mapping):
        view["study"] = {k: v for k, v in study.items() if k not in _BUDGET_KEYS}
    view["overrides"] = {k: v for k, v in overrides.items() if k not in _PLACEMENT_FIELDS}
    return json.loads(json.dumps(view, sort_keys=True, default=str))


def space_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Readable differences between two resume views, one `path: old -> new` line each."""
    a, b = _flatten(old), _flatten(new)
    lines = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            lines.append(f"- {key}: {json.dumps(a[key])}")
        elif key not in a:
            lines.append(f"+ {key}: {json.dumps(b[key])}")
        elif a[key] != b[key]:
            lines.append(f"~ {key}: {json.dumps(a[key])} -> {json.dumps(b[key])}")
    return lines


def sampler_seed(base: int | None, n_existing: int, worker_index: int = 0) -> int | None:
    """The sampler seed for one process joining a study.

    A fresh study's first worker uses the space's seed as written; a resumed run (trials already
    exist) or another worker gets a seed derived from all three, so a seeded sampler does not
    replay the configurations drawn before. `run_trials(reseed=...)` counts `n_existing` under
    the claim lock, so concurrent processes (even on several machines) get different seeds too.
    """
    if base is None:
        return None
    if n_existing == 0 and worker_index == 0:
        return int(base)
    return int(np.random.SeedSequence([int(base), int(n_existing), int(worker_index)]).generate_state(1)[0])


def package_version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("vcr-hpo")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def open_study(
    space: Any,
    storage: optuna.storages.BaseStorage,  # RDB, or a gRPC proxy client (build_storage)
    *,
    study_name: str,
    overrides: Mapping[str, Any] | None = None,
    allow_space_change: bool = False,
    worker_index: int = 0,
    n_trials: int | None = None,
    where: str = "--storage",
) -> optuna.Study:
    """Create the study or load it for a resume, after checking it still matches the space.

    On a new study stores the space (YAML, fingerprint, canonical form), the overrides, the
    package version and the metric names, and enqueues the space's `default:` baseline once.

    Raises:
        ConfigError: the stored study optimises other directions.
        SpaceChangedError: the space or overrides changed and `allow_space_change` is False.
    """
    from ..algorithms import build_pruner, build_sampler

    overrides = dict(overrides or {})
    directions = [str(d).lower() for d in space.study.directions]
    view = resume_view(space.canonical(), overrides)
    study_id = get_study_id(storage, study_name)
    n_existing = 0
    if study_id is not None:
        stored = [d.name.lower() for d in storage.get_study_directions(study_id)]
        if stored != directions:
            raise ConfigError(
                f"{where}: study {study_name!r} optimises {stored}, the space asks {directions}, "
                f"got a direction change. Use a new --study-name (Optuna cannot change directions)"
            )
        attrs = storage.get_study_user_attrs(study_id)
        old = attrs.get(ATTR_CANONICAL)
        if old is not None:
            diff = space_diff(resume_view(old, attrs.get(ATTR_OVERRIDES, {})), view)
            if diff and not allow_space_change:
                raise SpaceChangedError(
                    f"{where}: study {study_name!r} was started with another search space, got "
                    f"{len(diff)} change(s). Restore the space, pass --allow-space-change, or use "
                    "a new --study-name\n" + "\n".join("  " + line for line in diff)
                )
        n_existing = sum(count_states(storage, study_id).values())
    seed = sampler_seed(space.study.sampler.args.get("seed"), n_existing, worker_index)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        directions=[optuna.study.StudyDirection[d.upper()] for d in directions],
        sampler=build_sampler(space, seed=seed),
        pruner=build_pruner(space.study.pruner),
        load_if_exists=True,
    )
    attrs = study.user_attrs
    if attrs.get(ATTR_FINGERPRINT) != space.fingerprint or attrs.get(ATTR_OVERRIDES) != overrides:
        study.set_user_attr(ATTR_SPACE_YAML, space.text)
        study.set_user_attr(ATTR_FINGERPRINT, space.fingerprint)
        study.set_user_attr(ATTR_CANONICAL, json.loads(json.dumps(space.canonical(), default=str)))
        study.set_user_attr(ATTR_OVERRIDES, overrides)
    if n_trials is not None and attrs.get(ATTR_TARGET) != n_trials:
        study.set_user_attr(ATTR_TARGET, n_trials)
    version = package_version()
    if attrs.get(ATTR_VERSION) != version:
        study.set_user_attr(ATTR_VERSION, version)
    metrics = list(space.study.metrics)
    if metrics and study.metric_names != metrics:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(metrics)
    if not attrs.get(ATTR_BASELINE):
        with claim_lock(study):
            if not _optuna.storage_of(study).get_study_user_attrs(_optuna.study_id(study)).get(ATTR_BASELINE):
                params = space.default_params()
                if params:
                    study.enqueue_trial(dict(params), user_attrs={BASELINE: True})
                study.set_user_attr(ATTR_BASELINE, True)
    return study
