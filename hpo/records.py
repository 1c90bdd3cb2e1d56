"""Per-image validation records: what each fixed validation image got at each reported step.

Every evaluation a trial reports (each epoch's validation, and mid-epoch reports with
`study.report_every`) keeps, per validation image, whether it was right and its loss, as one
small artifact of the trial in the study's artifact store (`hpo.artifacts`): `val-step<step>.bin`
holding the correctness as a bit array (`np.packbits`), the losses as float16 and a key of the
validation set (its size and a CRC of its labels), so two trials compare image by image only
when they were scored on the same images. The step is the step the trial reported to the pruner;
user attr `value_step` names the step the trial's value comes from (its best epoch).

    rec = load_record(study, trial_number=7, step=3)    # reads through the study's store
    rec.accuracy, rec.correct, rec.loss

Imports no torch (`vcr-hpo status` reads records); numpy only.
"""

from __future__ import annotations

import struct
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import VcrHpoError

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = [
    "VALUE_STEP_ATTR",
    "RecordWriter",
    "ValRecord",
    "decode_record",
    "encode_record",
    "load_record",
    "read_record",
    "record_name",
    "record_steps",
    "store_of",
    "val_key",
    "write_record",
]

#: Trial user attr: the reported step whose evaluation gave the trial's value (best epoch).
VALUE_STEP_ATTR = "value_step"
#: Trial user attr: why records could not be written (the trial goes on without them).
RECORD_ERROR_ATTR = "record_error"
_NAME = re.compile(r"val-step(\d+)\.bin")
_MAGIC = b"VCRR"
_FORMAT = 1
_HEADER = struct.Struct("<4sBIH")  # magic, format, images, key bytes (little-endian, packed)


def record_name(step: int) -> str:
    """The artifact file name of the record at `step`."""
    return f"val-step{int(step)}.bin"


def val_key(labels: Any) -> str:
    """A key of a validation set: its size and a CRC of its labels (any int array-like)."""
    arr = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
    return f"{len(arr)}:{zlib.crc32(arr.tobytes()):08x}"


@dataclass(frozen=True, eq=False)
class ValRecord:
    """One evaluation: per validation image, right or not and its loss (in split order).

    `key` names the validation set (`val_key`); a mid-epoch record scores its first images.
    """

    correct: np.ndarray  # bool
    loss: np.ndarray  # float32 (stored as float16)
    key: str = ""

    def __len__(self) -> int:
        return len(self.correct)

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if len(self.correct) else float("nan")


def encode_record(correct: Any, loss: Any, key: str = "") -> bytes:
    """The bytes of a record: an 11-byte header (magic, format, image count, key length), the
    set's key, the bits of `correct` (`np.packbits`), then `loss` as little-endian float16:
    about 2.1 bytes per image (2,000 images: 4,274 bytes)."""
    correct = np.asarray(correct, dtype=bool)
    loss = np.asarray(loss, dtype=np.float32)
    if correct.shape != loss.shape or correct.ndim != 1:
        raise ValueError(f"correct and loss must be 1-d of one length, got shapes "
                         f"{correct.shape} and {loss.shape}. Pass one value per image")
    k = key.encode()
    return b"".join((_HEADER.pack(_MAGIC, _FORMAT, len(correct), len(k)), k,
                     np.packbits(correct).tobytes(), loss.astype("<f2").tobytes()))


def decode_record(data: bytes) -> ValRecord:
    """The record `encode_record` wrote.

    Raises:
        VcrHpoError: not a record, a truncated one, or one of another format.
    """
    bad = None
    if len(data) < _HEADER.size or data[:4] != _MAGIC:
        bad = f"{len(data)} bytes without the record header"
    else:
        _, fmt, n, klen = _HEADER.unpack_from(data)
        if fmt != _FORMAT:
            raise VcrHpoError(f"validation record: format must be {_FORMAT}, got {fmt}. "
                              "Read it with the vcr-hpo version that wrote it")
        start = _HEADER.size + klen
        nbits = (n + 7) // 8
        if len(data) != start + nbits + 2 * n:
            bad = f"{len(data)} bytes for {n} images (expected {start + nbits + 2 * n})"
    if bad is not None:
        raise VcrHpoError(f"validation record: must be a record vcr-hpo wrote, got {bad}. "
                          "Delete it or rerun the trial")
    key = data[_HEADER.size:start].decode()
    bits = np.frombuffer(data, dtype=np.uint8, count=nbits, offset=start)
    correct = np.unpackbits(bits, count=n).astype(bool)
    loss = np.frombuffer(data, dtype="<f2", count=n, offset=start + nbits).astype(np.float32)
    return ValRecord(correct, loss, key)


def write_record(trial: Any, store: Any, step: int, correct: Any, loss: Any,
                 key: str = "") -> None:
    """Upload the record of `trial` (running) at `step` to `store`.

    A trial in a child process (`hpo.isolation`) sends the file to its parent, which uploads
    it, the way figures go (`upload_file`).
    """
    from .artifacts import upload

    data = encode_record(correct, loss, key)
    with tempfile.TemporaryDirectory(prefix="vcr-hpo-record-") as tmp:
        path = Path(tmp) / record_name(step)
        path.write_bytes(data)
        if hasattr(trial, "upload_file"):
            trial.upload_file(path)
        else:
            upload(trial, store, path, mimetype="application/octet-stream")


class RecordWriter:
    """Writes a running trial's records as it reports (used by `hpo.objective`).

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
    from .artifacts import list_trial_artifacts

    metas = list_trial_artifacts(trial, storage=storage)
    return sorted({int(m.group(1)) for m in (_NAME.fullmatch(a.filename) for a in metas) if m})


def read_record(store: Any, trial: FrozenTrial, step: int, *,
                storage: Any = None) -> ValRecord | None:
    """The record of `trial` at `step` from `store`; None when it has none.

    Raises:
        VcrHpoError: the file is not a record (see `decode_record`).
        OSError: the store cannot be read.
    """
    from .artifacts import find_artifact

    meta = find_artifact(trial, record_name(step), storage=storage)
    if meta is None:
        return None
    with store.open_reader(meta.artifact_id) as f:
        return decode_record(f.read())


def store_of(study_user_attrs: dict[str, Any]) -> Any:
    """The artifact store a run recorded in the study (user attr `artifacts`); None if none."""
    from .artifacts import ATTR_ARTIFACTS, artifact_store

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
