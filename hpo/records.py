"""Per-image validation records: what each fixed validation image got at each reported step.

Every evaluation a trial reports (each epoch's validation, and mid-epoch reports with
`study.report_every`) keeps, per validation image, whether it was right and its loss, as one
small artifact of the trial in the study's artifact store (kind `val_record` of
`hpo.trial.artifact_kinds`) holding the correctness as a bit array (`np.packbits`), the losses
as float16 and a key of the validation set (its size and a CRC of its labels), so two trials
compare image by image only when they were scored on the same images. The step is the step the trial reported to the pruner;
user attr `value_step` names the step the trial's value comes from (its best epoch).

The format lives here (pure numpy, no storage: the pruner in the core uses it); writing and
reading them in a study's artifact store is `hpo.trial.record_store`:

    rec = load_record(study, trial_number=7, step=3)    # hpo.trial.record_store
    rec.accuracy, rec.correct, rec.loss

Imports no torch (`vcr-hpo status` reads records).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import VcrHpoError

__all__ = [
    "RECORD_ERROR_ATTR",
    "VALUE_STEP_ATTR",
    "ValRecord",
    "decode_record",
    "encode_record",
    "val_key",
]

#: Trial user attr: the reported step whose evaluation gave the trial's value (best epoch).
VALUE_STEP_ATTR = "value_step"
#: Trial user attr: why records could not be written (the trial goes on without them).
RECORD_ERROR_ATTR = "record_error"
_MAGIC = b"VCRR"
_FORMAT = 1
_HEADER = struct.Struct("<4sBIH")  # magic, format, images, key bytes (little-endian, packed)


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
