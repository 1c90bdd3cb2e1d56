"""Validation records in a study's artifact store: writing them as a trial reports, reading them
back by (study, trial, step), feeding the pruner and the sentence against the default.

The format is `hpo.records`; the statistics and the sentence are `hpo.paired`. Records are
ordinary artifacts of their trial (Optuna's artifact API, `hpo.trial.artifacts`), so every
process of a study (workers, an isolated trial's parent) reads what the others wrote.

    rec = load_record(study, trial_number=7, step=3)
    print(study_default_comparison(study))

Imports no torch (`vcr-hpo status` uses it).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import VcrHpoError
from ..paired import DEFAULT_TRIAL, default_comparison
from ..pruners import PairedPruner
from ..records import (
    RECORD_ERROR_ATTR,
    ValRecord,
    decode_record,
    encode_record,
    val_key,
)
from ..study import _optuna
from .artifact_kinds import VAL_RECORD
from .artifacts import ATTR_ARTIFACTS, artifact_store, artifacts_of, find_artifact, upload

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = [
    "RecordWriter",
    "StoreRecords",
    "attach_records",
    "load_record",
    "read_record",
    "record_steps",
    "storage_default_comparison",
    "store_of",
    "study_default_comparison",
    "write_record",
]


def write_record(trial: Any, store: Any, step: int, correct: Any, loss: Any,
                 key: str = "") -> None:
    """Upload the record of `trial` (running) at `step` to `store`.

    A trial in a child process (`hpo.run.isolation`) sends the file to its parent, which uploads
    it, the way figures go (`upload_file`).
    """
    data = encode_record(correct, loss, key)
    with tempfile.TemporaryDirectory(prefix="vcr-hpo-record-") as tmp:
        path = Path(tmp) / VAL_RECORD.filename(step=step)
        path.write_bytes(data)
        if hasattr(trial, "upload_file"):
            trial.upload_file(path)
        else:
            upload(trial, store, path)


class RecordWriter:
    """Writes a running trial's records as it reports (used by `hpo.trial.objective`).

    `watch(state)` once the trainer's state exists; `write(step)` after each evaluation writes
    `state.last_eval`. Writing never fails the trial: the first error becomes user attr
    `record_error` and later records are skipped.
    """

    def __init__(self, trial: Any, store: Any) -> None:
        self.trial, self.store = trial, store
        self.state: Any = None
        self.key = ""
        self.failed = False
        self.written = 0

    def watch(self, state: Any) -> None:
        self.state = state
        self.key = val_key(state.data.val_y.cpu().numpy())

    def write(self, step: int) -> None:
        ev = getattr(self.state, "last_eval", None)
        if self.failed or ev is None:
            return
        try:
            write_record(self.trial, self.store, step, ev.correct, ev.loss, self.key)
            self.written += 1
        except Exception as exc:  # noqa: BLE001 - records inform decisions, they never fail one
            self.failed = True
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self.trial.set_user_attr(RECORD_ERROR_ATTR, f"{type(exc).__name__}: {text}"[:300])


def record_steps(trial: FrozenTrial, *, storage: Any = None) -> list[int]:
    """The steps at which `trial` has a record, ascending."""
    return sorted({fields["step"] for fields, _ in artifacts_of(trial, VAL_RECORD, storage=storage)})


def read_record(store: Any, trial: FrozenTrial, step: int, *,
                storage: Any = None) -> ValRecord | None:
    """The record of `trial` at `step` from `store`; None when it has none.

    Raises:
        VcrHpoError: the file is not a record (see `decode_record`).
        OSError: the store cannot be read.
    """
    meta = find_artifact(trial, VAL_RECORD.filename(step=step), storage=storage)
    if meta is None:
        return None
    with store.open_reader(meta.artifact_id) as f:
        return decode_record(f.read())


def store_of(study_user_attrs: dict[str, Any]) -> Any:
    """The artifact store a run recorded in the study (user attr `artifacts`); None if none."""
    location = study_user_attrs.get(ATTR_ARTIFACTS)
    if not location:
        return None
    return artifact_store("", "", str(location))


def load_record(study: optuna.Study, trial_number: int, step: int, *,
                store: Any = None) -> ValRecord:
    """The record of trial `trial_number` of `study` at `step`.

    Args:
        store: the artifact store (default: the one a run recorded in the study).

    Raises:
        VcrHpoError: no such trial, no store, or no record at that step (the message lists
            the steps it has).
    """
    trials = [t for t in study.get_trials(deepcopy=False) if t.number == trial_number]
    if not trials:
        raise VcrHpoError(f"trial: no trial {trial_number} in study {study.study_name!r}, got "
                          f"{trial_number}. Give a number below {len(study.trials)}")
    if store is None:
        store = store_of(study.user_attrs)
        if store is None:
            raise VcrHpoError(f"study {study.study_name!r}: no artifact store recorded, got none. "
                              "Pass store=artifact_store(url, name)")
    rec = read_record(store, trials[0], step)
    if rec is None:
        steps = record_steps(trials[0])
        raise VcrHpoError(f"trial {trial_number}: no validation record at step {step}, got "
                          f"steps {steps or 'none'}. Pick one of those")
    return rec


class StoreRecords:
    """Records of a study's trials in `store`: what `PairedPruner.records` needs.

    `read(trial, step)`, `has(trial, step)` and `note(study, trial, text)` (the pruner's
    decision as user attr `paired_pruner` of a running trial).
    """

    def __init__(self, store: Any) -> None:
        self.store = store

    def read(self, trial: FrozenTrial, step: int) -> ValRecord | None:
        return read_record(self.store, trial, step)

    def has(self, trial: FrozenTrial, step: int) -> bool:
        return find_artifact(trial, VAL_RECORD.filename(step=step)) is not None

    def note(self, study: optuna.Study, trial: FrozenTrial, key: str, text: str) -> None:
        import contextlib

        # a finished trial (a FrozenTrial handed in by hand) takes no note
        with contextlib.suppress(Exception):
            _optuna.storage_of(study).set_trial_user_attr(_optuna.trial_id(trial), key, text)


def attach_records(pruner: Any, store: Any) -> None:
    """Give a `PairedPruner` (the study's pruner, or the base it wraps) the records in `store`.

    The runner calls it once per process with the study's store; any other pruner is left alone.
    """
    while isinstance(pruner, PairedPruner):
        pruner.records = StoreRecords(store)
        pruner = pruner.base


def study_default_comparison(study: optuna.Study, best: FrozenTrial | None = None, *,
                             store: Any = None) -> str:
    """`hpo.paired.default_comparison` for an open study: its best trial (by the one ranking
    rule) unless given, trial 0, the artifact store a run recorded (unless given), its first
    metric."""
    from ..metrics import rank_trials

    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    if best is None:
        ranked = rank_trials(trials, study.directions)
        best = ranked[0] if ranked else None
    if store is None:
        try:
            store = store_of(study.user_attrs)
        except Exception:  # noqa: BLE001 - a bad location: no records, said in the sentence
            store = None
    metric = study.metric_names[0] if study.metric_names else None
    read = None if store is None else StoreRecords(store).read
    return default_comparison(best, by_number.get(DEFAULT_TRIAL), read, metric,
                              lookup=by_number.get)


def storage_default_comparison(storage: Any, study_id: int, best: FrozenTrial | None,
                               metric: str | None) -> str:
    """`hpo.paired.default_comparison` straight from a storage (what `vcr-hpo status` holds):
    trial 0 and the artifact store a run recorded (study user attr `artifacts`)."""

    def lookup(number: int) -> FrozenTrial | None:
        try:
            return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study_id,
                                                                                     number))
        except KeyError:
            return None

    try:
        store = store_of(storage.get_study_user_attrs(study_id))
    except Exception:  # noqa: BLE001 - a bad location: no records, said in the sentence
        store = None
    read = None if store is None else StoreRecords(store).read
    return default_comparison(best, lookup(DEFAULT_TRIAL), read, metric, lookup=lookup)
