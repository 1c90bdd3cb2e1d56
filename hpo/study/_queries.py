"""SQL status queries: counts by state, ranks, stale trials, `vcr-hpo status`.

Status must stay fast on studies of 10,000 trials: count and rank in SQL, load only what is shown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..attrs import ATTR_TARGET, INFEASIBLE, INTERRUPTED
from ..errors import ConfigError
from . import _optuna
from ._storage import GRACE_PERIOD


def get_study_id(storage: optuna.storages.BaseStorage, name: str) -> int | None:
    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return None



def rdb_storage(storage: Any) -> optuna.storages.RDBStorage:
    """The RDBStorage under a study's storage (Optuna wraps it in a cache)."""
    storage = _optuna.unwrap_storage(storage)
    if not isinstance(storage, optuna.storages.RDBStorage):
        raise ConfigError(f"--storage: vcr-hpo needs an RDB storage, got {type(storage).__name__}. "
                          "Use sqlite:///... or postgresql://...")
    return storage


def count_states(storage: optuna.storages.BaseStorage, study_id: int) -> dict[TrialState, int]:
    """Number of trials in each state, counted by the database (by the client through a proxy)."""
    import sqlalchemy as sa

    counts = {state: 0 for state in TrialState}
    raw = _optuna.unwrap_storage(storage)
    if not isinstance(raw, optuna.storages.RDBStorage):  # a gRPC proxy: its client cache counts
        for trial in raw.get_all_trials(study_id, deepcopy=False):
            counts[trial.state] += 1
        return counts
    storage = rdb_storage(storage)
    m = _optuna.models()
    query = (
        sa.select(m.TrialModel.state, sa.func.count())
        .where(m.TrialModel.study_id == study_id)
        .group_by(m.TrialModel.state)
    )
    with storage.engine.connect() as conn:
        rows = conn.execute(query).all()
    counts.update({TrialState[str(state.name)]: int(n) for state, n in rows})
    return counts


def finished_count(counts: Mapping[TrialState, int]) -> int:
    """Trials that count toward `n_trials`: COMPLETE and PRUNED."""
    return counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]


def top_trial_ids(
    storage: optuna.storages.RDBStorage, study_id: int, k: int, *, maximize: bool, objective: int = 0
) -> list[int]:
    """Ids of the k best feasible COMPLETE trials on one objective, ranked by the database
    (infeasible trials, `hpo.constraints`, never rank)."""
    import sqlalchemy as sa

    storage = rdb_storage(storage)
    m = _optuna.models()
    value = m.TrialValueModel.value
    query = (
        sa.select(m.TrialModel.trial_id)
        .join(m.TrialValueModel, m.TrialValueModel.trial_id == m.TrialModel.trial_id)
        .where(
            m.TrialModel.study_id == study_id,
            m.TrialModel.state == TrialState.COMPLETE,
            m.TrialValueModel.objective == objective,
            m.TrialValueModel.value_type == m.TrialValueModel.TrialValueType.FINITE,
            ~_infeasible(m),
        )
        .order_by(value.desc() if maximize else value.asc(), m.TrialModel.number.asc())
        .limit(k)
    )
    with storage.engine.connect() as conn:
        return [int(r[0]) for r in conn.execute(query).all()]


def _infeasible(m):
    """SQL: the trial carries the `infeasible` user attr (hpo.attrs.INFEASIBLE)."""
    import sqlalchemy as sa


    attr = m.TrialUserAttributeModel
    return sa.exists().where(attr.trial_id == m.TrialModel.trial_id, attr.key == INFEASIBLE)


def infeasible_count(storage: optuna.storages.BaseStorage, study_id: int) -> int:
    """COMPLETE trials recorded as infeasible (out of memory), counted by the database (or,
    through a storage without SQL such as the gRPC proxy, from the trials)."""
    import sqlalchemy as sa

    if not isinstance(_optuna.unwrap_storage(storage), optuna.storages.RDBStorage):
        from ..constraints import is_infeasible

        done = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
        return sum(1 for t in done if is_infeasible(t))
    storage = rdb_storage(storage)
    m = _optuna.models()
    query = sa.select(sa.func.count()).select_from(m.TrialModel).where(
        m.TrialModel.study_id == study_id, m.TrialModel.state == TrialState.COMPLETE,
        _infeasible(m))
    with storage.engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def top_trials(study: optuna.Study, k: int | None = None) -> list[FrozenTrial]:
    """The best COMPLETE trials of a study, best first: the one best-trial function.

    The rule is `hpo.metrics.rank_key` (first objective, finite values, ties by number). With
    `k` on an RDB storage the database ranks and only k trials load (status on 10,000 trials);
    `top_trial_ids` implements the same rule in SQL and a test holds the two equal.
    """
    from ..metrics import rank_trials

    storage = _optuna.unwrap_storage(study)
    if k is not None and isinstance(storage, optuna.storages.RDBStorage):
        maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        ids = top_trial_ids(storage, _optuna.study_id(study), k, maximize=maximize)
        return [storage.get_trial(i) for i in ids]
    ranked = rank_trials(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                         study.directions)
    return ranked if k is None else ranked[:k]


def _rank_trials(storage: optuna.storages.BaseStorage, study_id: int) -> list[FrozenTrial]:
    from ..metrics import rank_trials

    complete = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
    return rank_trials(complete, storage.get_study_directions(study_id))


def stale_running(
    storage: optuna.storages.RDBStorage, study_id: int, grace_period: float
) -> list[tuple[int, float | None]]:
    """RUNNING trials whose last heartbeat is older than the grace period: (number, age seconds).

    A RUNNING trial with no heartbeat at all (a run without heartbeats) has age None.
    """
    import sqlalchemy as sa

    storage = rdb_storage(storage)
    m = _optuna.models()
    query = (
        sa.select(m.TrialModel.number, m.TrialHeartbeatModel.heartbeat)
        .outerjoin(m.TrialHeartbeatModel, m.TrialHeartbeatModel.trial_id == m.TrialModel.trial_id)
        .where(m.TrialModel.study_id == study_id, m.TrialModel.state == TrialState.RUNNING)
        .order_by(m.TrialModel.number)
    )
    with storage.engine.connect() as conn:
        now = conn.execute(sa.select(sa.func.now())).scalar()
        rows = conn.execute(query).all()
    now = now.replace(tzinfo=None) if hasattr(now, "replace") else now
    out = []
    for number, beat in rows:
        if beat is None:
            out.append((int(number), None))
            continue
        age = (now - beat.replace(tzinfo=None)).total_seconds()
        if age > grace_period:
            out.append((int(number), age))
    return out


def interrupted_numbers(storage: optuna.storages.RDBStorage, study_id: int) -> list[int]:
    import sqlalchemy as sa

    storage = rdb_storage(storage)
    m = _optuna.models()
    attr = m.TrialUserAttributeModel
    query = (
        sa.select(m.TrialModel.number)
        .join(attr, attr.trial_id == m.TrialModel.trial_id)
        .where(
            m.TrialModel.study_id == study_id,
            m.TrialModel.state == TrialState.FAIL,
            attr.key == INTERRUPTED,
        )
    )
    with storage.engine.connect() as conn:
        return sorted(int(r[0]) for r in conn.execute(query).all())


# --------------------------------------------------------------------------- claiming trials

@dataclass(frozen=True)
class StudyStatus:
    """What `vcr-hpo status` shows about one study, gathered with a handful of queries."""

    name: str
    study_id: int
    directions: tuple[str, ...]
    metric_names: tuple[str, ...]
    counts: Mapping[str, int]
    top: tuple[FrozenTrial, ...]
    orphans: tuple[tuple[int, float | None], ...]
    target: int | None
    infeasible: int = 0  # COMPLETE trials that ran out of memory (hpo.constraints)


def study_status(
    storage: optuna.storages.RDBStorage, name: str, *, top: int = 5, grace_period: float = GRACE_PERIOD
) -> StudyStatus:
    """Counts by state, the `top` best COMPLETE trials (first objective) and orphaned trials.

    Raises:
        ConfigError: no study of that name in the storage.
    """
    rdb = isinstance(_optuna.unwrap_storage(storage), optuna.storages.RDBStorage)
    storage = rdb_storage(storage) if rdb else _optuna.unwrap_storage(storage)
    study_id = get_study_id(storage, name)
    if study_id is None:
        names = sorted(s.study_name for s in storage.get_all_studies())
        raise ConfigError(f"--study-name: no study {name!r} in this storage, got {name!r}. "
                          f"Studies: {', '.join(names) or '(none)'}")
    directions = tuple(d.name.lower() for d in storage.get_study_directions(study_id))
    system = storage.get_study_system_attrs(study_id)
    metrics = tuple(system.get("study:metric_names") or ())
    counts = count_states(storage, study_id)
    if rdb:
        ids = top_trial_ids(storage, study_id, top, maximize=directions[0] == "maximize")
        best = tuple(storage.get_trial(i) for i in ids)
        orphans = tuple(stale_running(storage, study_id, grace_period))
    else:  # a gRPC proxy: no SQL; the client ranks, heartbeats are trial attributes
        from ._grpc import stale_by_beat

        best = tuple(_rank_trials(storage, study_id)[:top])
        orphans = tuple(stale_by_beat(storage, study_id, grace_period))
    target = storage.get_study_user_attrs(study_id).get(ATTR_TARGET)
    return StudyStatus(
        name=name,
        study_id=study_id,
        directions=directions,
        metric_names=metrics,
        counts={s.name: n for s, n in counts.items()},
        top=best,
        orphans=orphans,
        target=target if isinstance(target, int) else None,
        infeasible=infeasible_count(storage, study_id),
    )
