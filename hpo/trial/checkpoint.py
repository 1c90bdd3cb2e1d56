"""Per-trial checkpoints (resume mid-trial) and the kept final weights of the best trials.

A running trial keeps ONE checkpoint in the study's artifact store (kind `checkpoint` of
`hpo.trial.artifact_kinds`, in the folder of the store's scope: the study's own), replaced after an epoch (written to a temporary name and renamed, so a kill mid-write leaves
the previous one). `CheckpointWriter` writes it off the training thread: the state is
serialised in memory on the training thread (the live tensors change in the next epoch), one
writer thread per trial stores it, newer replacing a queued older one, so writes land in order
and never race; `close()` waits, so a trial is told only after its last checkpoint is on disk.
Skipping rule: an epoch's checkpoint is written when the training seconds it protects (since
the last written one) are at least `RATIO` (20, env `VCR_HPO_CHECKPOINT_RATIO`; 0 writes
every epoch) times the seconds the last write took in this process, so checkpoints cost at
most ~1/RATIO of training; the first write of a process and a trial's last epoch are always
written (the kept weights come from it). It holds `TrainState.state_dict()` and an identity: a hash of the
space (as resume compares it), the params and the whole TrainConfig (fixed values, overrides,
seed). A retried trial (its system attr `retry_history` names the trials it repeats) loads the
newest checkpoint of those trials whose identity equals its own and continues from the next
epoch; any other checkpoint is never used.

When a trial ends its checkpoint (and its origins') is removed. The final weights of the best
COMPLETE trials (top k of the study and top k per backbone, `study.keep_weights`) become study
artifacts (kind `weights`); weights that fall out of the top k are deleted.

Imports no Optuna at module level; touches no running Trial (the objective does).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..attrs import CHECKPOINT_IDENTITY, INTERRUPTED
from ..errors import ConfigError
from .artifact_kinds import CHECKPOINT, WEIGHTS

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from ..config import TrainConfig

_logger = logging.getLogger("hpo.trial.checkpoint")

__all__ = [
    "CHECKPOINT_FORMAT",
    "WEIGHTS_FORMAT",
    "CheckpointWriter",
    "Found",
    "checkpoint_identity",
    "checkpoint_key",
    "drop_checkpoints",
    "find_checkpoint",
    "keep_best_weights",
    "kept_weights",
    "load_init_weights",
    "read_weights",
    "retry_origins",
    "save_checkpoint",
    "weights_name",
]

CHECKPOINT_FORMAT = 1
WEIGHTS_FORMAT = 1


def checkpoint_key(number: int, scope: str = "") -> str:
    """The store key of trial `number`'s one checkpoint, in the folder `scope` (the study's)."""
    return CHECKPOINT.key(scope, number=number)


def _key(store: Any, number: int) -> str:
    """Trial `number`'s checkpoint key in `store`, in the store's scope (`artifact_store`)."""
    return checkpoint_key(number, getattr(store, "scope", ""))


def weights_name(number: int) -> str:
    """The study artifact file name of trial `number`'s kept weights."""
    return WEIGHTS.filename(number=number)


def checkpoint_identity(space: Any, overrides: Mapping[str, Any], params: Mapping[str, Any],
                        cfg: TrainConfig) -> str:
    """What a checkpoint must match to be resumed: the space as resume compares it (budget
    keys aside), the overrides, the params and the whole TrainConfig (seed included)."""
    from ..study import resume_view

    payload = {"space": resume_view(space.canonical(), overrides), "params": dict(params),
               "config": cfg.to_dict()}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def retry_origins(system_attrs: Mapping[str, Any]) -> list[int]:
    """The trials a retried trial repeats, newest first (Optuna's `retry_history` system attr,
    which both the stale-heartbeat retry and `requeue_interrupted` write)."""
    history = system_attrs.get("retry_history") or []
    return [int(n) for n in reversed(history)]


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then deliver them (main thread only).

    torch.save turns an exception raised inside its writer (the RunInterrupted of
    `interrupt_on_signals`) into a RuntimeError: the trial would be recorded as an ordinary
    failure and never retried. A held signal goes to the previous handler when the block ends,
    between two epochs, where RunInterrupted marks the trial interrupted. SIGKILL cannot be
    held; the rename in `_write_now` covers it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    names = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in names}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for signum in held:  # the first one's handler raises RunInterrupted here
            signal.raise_signal(signum)


def _write(store: Any, key: str, obj: Any) -> None:
    """torch.save `obj` under `key`: a temporary file renamed into place (folder stores), or
    one object upload (bucket stores: a PUT is atomic). Signals wait until it is written."""
    with _signals_deferred():
        _write_now(store, key, obj)


def _write_now(store: Any, key: str, obj: Any) -> None:
    import io

    import torch

    # Serialised in memory first: a full disk then fails as OSError(ENOSPC) in a plain write,
    # not as torch's zip-writer position error, and the store's own write decides atomicity
    # (the folder store writes a temporary file, fsyncs and renames it; a bucket PUT is atomic).
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    store.write(key, buf)


def _read(store: Any, key: str) -> Any:
    import torch

    with _signals_deferred(), store.open_reader(key) as f:  # else a signal reads as corruption
        return torch.load(f, map_location="cpu", weights_only=True)


def _remove(store: Any, key: str) -> bool:
    from optuna.artifacts.exceptions import ArtifactNotFound

    try:
        store.remove(key)
    except (ArtifactNotFound, FileNotFoundError):
        return False
    return True


def save_checkpoint(store: Any, number: int, identity: str, state: Mapping[str, Any]) -> None:
    """Replace trial `number`'s checkpoint with `state` (a `TrainState.state_dict()`)."""
    _write(store, _key(store, number), {"format": CHECKPOINT_FORMAT, "identity": identity,
                                           "trial": int(number), "state": dict(state)})


#: Env var: write an epoch's checkpoint when the seconds it protects reach this many times the
#: cost of a write (0: every epoch).
RATIO_ENV = "VCR_HPO_CHECKPOINT_RATIO"
DEFAULT_RATIO = 20.0
_last_cost: list[float] = []  # seconds the last write of this process took (snapshot + store)


def _ratio() -> float:
    text = os.environ.get(RATIO_ENV, "").strip()
    if not text:
        return DEFAULT_RATIO
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{RATIO_ENV}: must be a number >= 0, got {text!r}. "
                          "Unset it, or give e.g. 20 (0 writes every epoch)") from None
    if not value >= 0:
        raise ConfigError(f"{RATIO_ENV}: must be a number >= 0, got {text!r}. "
                          "Unset it, or give e.g. 20 (0 writes every epoch)")
    return value


class CheckpointWriter:
    """One trial's checkpoints, stored by a background thread in submission order.

    `submit` serialises the state now (on the caller's thread) and returns; the writer thread
    stores it under the trial's key. A submission waiting behind a write in progress is
    replaced by a newer one (only the newest matters), so at most one write runs at a time and
    the last submitted state is the last written. `close()` (or `flush()`) waits until every
    submitted state is stored; errors of the writer thread are returned there and by `error`.

    Args:
        after_write: called on the writer thread after each successful write (the objective
            drops superseded origins' checkpoints there).
    """

    def __init__(self, store: Any, number: int, identity: str,
                 after_write: Callable[[], None] | None = None) -> None:
        self.store, self.number, self.identity = store, int(number), identity
        self.after_write = after_write
        self.ratio = _ratio()
        self.error: OSError | None = None
        self.written: int | None = None  # epoch of the newest state stored
        self._unprotected = 0.0  # training seconds since the last submitted checkpoint
        self._cond = threading.Condition()
        self._pending: tuple[bytes, int, float] | None = None
        self._busy = False
        self._thread: threading.Thread | None = None

    def due(self, epoch_seconds: float, *, last: bool) -> bool:
        """Add an epoch's seconds; True when its checkpoint is worth writing (the rule above)."""
        self._unprotected += epoch_seconds
        if last or self.ratio == 0 or not _last_cost:
            return True
        return self._unprotected >= self.ratio * _last_cost[-1]

    def submit(self, state: Mapping[str, Any], epoch: int) -> None:
        """Serialise `state` (a `TrainState.state_dict()`) now and queue it for writing."""
        import io
        import time

        import torch

        if self.error is not None:
            return
        t0 = time.perf_counter()
        buf = io.BytesIO()
        with _signals_deferred():  # see _write: a signal inside torch.save reads as a failure
            torch.save({"format": CHECKPOINT_FORMAT, "identity": self.identity,
                        "trial": self.number, "state": dict(state)}, buf)
        snapshot = time.perf_counter() - t0
        self._unprotected = 0.0
        with self._cond:
            self._pending = (buf.getvalue(), int(epoch), snapshot)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name=f"vcr-hpo-checkpoint-{self.number}")
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        import io
        import time

        while True:
            with self._cond:
                while self._pending is None:
                    self._cond.wait()
                data, epoch, snapshot = self._pending
                self._pending, self._busy = None, True
            try:
                if data is None:  # close()
                    return
                t0 = time.perf_counter()
                self.store.write(_key(self.store, self.number), io.BytesIO(data))
                _last_cost.append(snapshot + time.perf_counter() - t0)
                del _last_cost[:-1]
                with self._cond:
                    self.written = epoch
                if self.after_write is not None:
                    self.after_write()
            except OSError as exc:  # a full or read-only disk costs the resume, not the trial
                self.error = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self) -> OSError | None:
        """Wait until every submitted state is stored. Returns the writer's error, if any."""
        with self._cond:
            while self._pending is not None or self._busy:
                self._cond.wait()
        return self.error

    def close(self) -> OSError | None:
        """`flush`, then end the writer thread. SIGINT/SIGTERM wait until it returns (main
        thread), so an interrupted trial is marked only after its last checkpoint is stored."""
        with _signals_deferred():
            return self._close()

    def _close(self) -> OSError | None:
        error = self.flush()
        with self._cond:
            if self._thread is not None:
                self._pending = (None, -1, 0.0)  # type: ignore[assignment]
                self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return error


def drop_checkpoints(store: Any, numbers: Sequence[int]) -> int:
    """Remove the checkpoints of these trials (absent ones are fine). Returns how many existed."""
    return sum(_remove(store, _key(store, n)) for n in dict.fromkeys(numbers))


@dataclass(frozen=True)
class Found:
    """The result of looking for a retried trial's checkpoint: a state to resume, or a note."""

    state: Mapping[str, Any] | None
    origin: int | None
    note: str | None


def find_checkpoint(store: Any, origins: Sequence[int], identity: str) -> Found:
    """The newest usable checkpoint among `origins` (newest first).

    A missing, unreadable or foreign checkpoint (another space, params, config or seed) is
    skipped; when none is usable the note says why the first origin's was not.
    """
    from optuna.artifacts.exceptions import ArtifactNotFound

    notes = []
    for number in origins:
        try:
            blob = _read(store, _key(store, number))
        except (ArtifactNotFound, FileNotFoundError):
            notes.append(f"no checkpoint of trial {number}")
            continue
        except Exception as exc:  # noqa: BLE001 (truncated, not a torch file, unpicklable)
            text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
            notes.append(f"checkpoint of trial {number} is unreadable ({type(exc).__name__}: "
                         f"{text})")
            continue
        if not isinstance(blob, Mapping) or blob.get("format") != CHECKPOINT_FORMAT:
            notes.append(f"checkpoint of trial {number} has another format")
        elif blob.get("identity") != identity:
            notes.append(f"checkpoint of trial {number} is of another space, params or config: "
                         "not used")
        else:
            return Found(blob["state"], number, None)
    if not notes:
        return Found(None, None, None)
    return Found(None, None, "; ".join(notes) + "; trained from epoch 0")


# --------------------------------------------------------------------------- kept weights


def kept_weights(study: optuna.Study) -> dict[int, Any]:
    """Trial number -> ArtifactMeta of the weights kept for it (study artifacts)."""
    from .artifacts import artifacts_of

    return {fields["number"]: meta for fields, meta in artifacts_of(study, WEIGHTS)}


def _keep_set(study: optuna.Study, top: int, per_backbone: int) -> set[int]:
    from ..study import top_trials

    ranked = top_trials(study)
    keep = {t.number for t in ranked[:top]}
    seen: dict[Any, int] = {}
    for t in ranked:
        group = t.params.get("backbone")
        if seen.get(group, 0) < per_backbone:
            keep.add(t.number)
            seen[group] = seen.get(group, 0) + 1
    return keep


def _forget(study: optuna.Study, store: Any, meta: Any) -> None:
    """Delete a study artifact: the file, and its metadata set to null (the dashboard's way)."""
    from optuna.artifacts.exceptions import ArtifactNotFound

    from ..study import _optuna

    try:
        store.remove(meta.artifact_id)
    except (ArtifactNotFound, FileNotFoundError):
        pass
    _optuna.storage_of(study).set_study_system_attr(
        _optuna.study_id(study), _optuna.ARTIFACT_ATTR_PREFIX + meta.artifact_id, json.dumps(None))


def _promote(study: optuna.Study, store: Any, trial: FrozenTrial) -> bool:
    """Upload trial's final weights (from its last checkpoint) as a study artifact."""
    from .artifacts import upload

    try:
        blob = _read(store, _key(store, trial.number))
    except Exception:  # noqa: BLE001 (no checkpoint: nothing to keep)
        return False
    state = blob.get("state", {}) if isinstance(blob, Mapping) else {}
    if "model" not in state:
        return False
    if blob.get("identity") != trial.user_attrs.get(CHECKPOINT_IDENTITY):
        # another study's trial of the same number in a shared folder (studies recorded before
        # scopes), or a trial that wrote no checkpoint of its own: never keep those
        _logger.warning("trial %d: the checkpoint under its number is not its own (another study "
                        "shares the artifact folder?): its weights were not kept", trial.number)
        return False
    weights = {"format": WEIGHTS_FORMAT, "study": study.study_name, "trial": trial.number,
               "identity": blob.get("identity"), "params": dict(trial.params),
               "values": list(trial.values or ()), "epoch": state.get("epoch"),
               "config": state.get("config"), "model": state["model"]}
    import torch

    with tempfile.TemporaryDirectory(prefix="vcr-hpo-weights-") as tmp, _signals_deferred():
        path = Path(tmp) / weights_name(trial.number)
        torch.save(weights, path)
        upload(study, store, path)
    return True


def keep_best_weights(store: Any, *, top: int = 1, per_backbone: int = 1
                      ) -> Callable[[optuna.Study, FrozenTrial], None]:
    """A `callback(study, frozen_trial)` run after each trial ends.

    Keeps the checkpoint of an interrupted trial (it is retried). Otherwise: a COMPLETE trial in
    the top `top` of the study or the top `per_backbone` of its backbone keeps its final
    weights; weights that fell out are deleted; the trial's checkpoint and its origins' go.
    """

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        from optuna.trial import TrialState

        from ..study import claim_lock

        if trial.state == TrialState.FAIL and trial.user_attrs.get(INTERRUPTED):
            return
        try:
            if trial.state == TrialState.COMPLETE and (top or per_backbone):
                with claim_lock(study):  # workers rank and delete one at a time
                    keep = _keep_set(study, top, per_backbone)
                    kept = kept_weights(study)
                    if trial.number in keep and trial.number not in kept:
                        try:
                            _promote(study, store, trial)
                        except OSError as exc:  # e.g. a full disk: the study goes on without
                            _logger.warning("trial %d: its weights were not kept: %s",
                                            trial.number, exc)
                    for number, meta in kept.items():
                        if number not in keep:
                            _forget(study, store, meta)
        finally:
            drop_checkpoints(store, [trial.number, *retry_origins(trial.system_attrs)])

    return callback


def read_weights(store: Any, study: optuna.Study, number: int, dest: str | os.PathLike
                 ) -> Path | None:
    """Download trial `number`'s kept weights to `dest`; None when they were not kept."""
    from .artifacts import download

    meta = kept_weights(study).get(int(number))
    return None if meta is None else download(store, meta.artifact_id, dest)


def load_init_weights(path: str | os.PathLike, cfg: TrainConfig, *, where: str = "--init-weights"
                      ) -> dict[str, Any]:
    """The model state_dict of a weights file written by `vcr-hpo best`, checked against `cfg`.

    Raises:
        ConfigError: unreadable file, not a weights file, or weights of another architecture
            (backbone, fusion, classes) than `cfg` builds.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{where}: no such file, got {str(path)!r}. Give the .pt file that "
                          "`vcr-hpo best -o best.yaml` wrote beside best.yaml")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{where}: not a readable weights file, got {str(path)!r} "
                          f"({type(exc).__name__}). Export it again with vcr-hpo best") from None
    if not isinstance(blob, Mapping) or blob.get("format") != WEIGHTS_FORMAT or "model" not in blob:
        raise ConfigError(f"{where}: not a vcr-hpo weights file (format {WEIGHTS_FORMAT}), got "
                          f"{str(path)!r}. Export it again with vcr-hpo best")
    theirs = dict(blob.get("config") or {})
    own = cfg.to_dict()
    differ = [k for k in ("backbone", "fusion") if k in theirs and theirs[k] != own.get(k)]
    if differ:
        shown = ", ".join(f"{k}={theirs[k]!r} (config has {own.get(k)!r})" for k in differ)
        raise ConfigError(f"{where}: weights of another model, got {shown} in {str(path)!r}. "
                          "Use the weights written with this config, or drop --init-weights")
    return dict(blob["model"])
