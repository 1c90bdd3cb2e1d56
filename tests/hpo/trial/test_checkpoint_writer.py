"""The background checkpoint writer: acknowledged means on disk, writes in order and one at a
time, a kill mid-write leaves the previous checkpoint, and the skipping rule."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from hpo.errors import ConfigError
from hpo.trial.artifacts import artifact_store
from hpo.trial.checkpoint import CheckpointWriter, checkpoint_key, find_checkpoint

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def store(tmp_path):
    return artifact_store(f"sqlite:///{tmp_path / 's.db'}", "s")


class _Watched:
    """A real folder store whose writes are slow and recorded (start, end, epoch read back)."""

    def __init__(self, inner, delay: float = 0.2) -> None:
        self.inner, self.delay = inner, delay
        self.gate = threading.Event()  # writes wait for it (set: they go at once)
        self.gate.set()
        self.log: list[tuple[str, int]] = []
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def write(self, key, body):
        data = body.read()
        epoch = torch.load(io.BytesIO(data), weights_only=True)["state"]["epoch"]
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.log.append(("start", epoch))
        self.gate.wait(timeout=60)
        time.sleep(self.delay)
        self.inner.write(key, io.BytesIO(data))
        with self._lock:
            self.running -= 1
            self.log.append(("end", epoch))

    def open_reader(self, key):
        return self.inner.open_reader(key)

    def remove(self, key):
        self.inner.remove(key)


def _state(epoch: int) -> dict:
    return {"epoch": epoch, "w": torch.full((1000,), float(epoch))}


def _on_disk(store, number: int = 0) -> int:
    return int(find_checkpoint(store, [number], "id").state["epoch"])


def test_close_returns_only_once_the_last_checkpoint_is_on_disk(store):
    slow = _Watched(store, delay=0.3)
    writer = CheckpointWriter(slow, 0, "id")
    writer.submit(_state(1), 1)
    assert writer.close() is None
    assert _on_disk(store) == 1 and writer.written == 1


def test_writes_land_in_order_one_at_a_time_and_the_newest_wins(store):
    slow = _Watched(store, delay=0.1)
    slow.gate.clear()  # the first write stays in progress while epochs 1-4 are submitted
    writer = CheckpointWriter(slow, 0, "id")
    for epoch in range(5):
        writer.submit(_state(epoch), epoch)
        if epoch == 0:
            deadline = time.monotonic() + 60
            while not slow.log and time.monotonic() < deadline:
                time.sleep(0.01)
    slow.gate.set()
    writer.close()
    assert slow.most == 1  # never two writes of one trial at once
    # in submission order; the states queued behind the write in progress were replaced by
    # the newest
    assert slow.log == [("start", 0), ("end", 0), ("start", 4), ("end", 4)]
    assert _on_disk(store) == 4


def test_the_submitted_state_is_a_snapshot_not_the_live_tensors(store):
    slow = _Watched(store, delay=0.3)
    writer = CheckpointWriter(slow, 0, "id")
    state = _state(1)
    writer.submit(state, 1)
    state["w"].fill_(99.0)  # the next epoch changes the live tensors
    writer.close()
    assert float(find_checkpoint(store, [0], "id").state["w"][0]) == 1.0


def test_a_write_error_is_returned_and_later_states_are_not_queued(store, tmp_path):
    class Full:
        def write(self, key, body):
            raise OSError(28, "No space left on device")

    writer = CheckpointWriter(Full(), 0, "id")
    writer.submit(_state(0), 0)
    writer.flush()
    writer.submit(_state(1), 1)
    error = writer.close()
    assert isinstance(error, OSError) and error.errno == 28


def test_the_rule_skips_checkpoints_that_cost_more_than_they_protect(store, monkeypatch):
    import hpo.trial.checkpoint as ck

    monkeypatch.delenv(ck.RATIO_ENV, raising=False)
    monkeypatch.setattr(ck, "_last_cost", [])
    writer = CheckpointWriter(store, 0, "id")
    assert writer.due(0.1, last=False)  # no write measured yet in this process: write
    monkeypatch.setattr(ck, "_last_cost", [1.0])
    writer = CheckpointWriter(store, 0, "id")
    assert not writer.due(5.0, last=False)  # 5 s of training < 20 x 1 s write
    assert not writer.due(5.0, last=False)
    assert not writer.due(5.0, last=False)
    assert writer.due(5.0, last=False)  # 20 s unprotected: worth a write
    writer.submit(_state(3), 3)  # a submission protects what came before
    assert not writer.due(5.0, last=False)
    assert writer.due(0.1, last=True)  # the last epoch always (the kept weights come from it)
    writer.close()
    monkeypatch.setenv(ck.RATIO_ENV, "0")
    assert CheckpointWriter(store, 0, "id").due(0.001, last=False)  # 0: every epoch
    monkeypatch.setenv(ck.RATIO_ENV, "often")
    with pytest.raises(ConfigError, match="VCR_HPO_CHECKPOINT_RATIO: must be a number >= 0"):
        CheckpointWriter(store, 0, "id")


_KILLED = """
import io, os, sys, time, torch
from hpo.trial.artifacts import artifact_store
from hpo.trial.checkpoint import CheckpointWriter
folder, marker = sys.argv[1], sys.argv[2]
store = artifact_store(f"sqlite:///{folder}/s.db", "s")
writer = CheckpointWriter(store, 0, "id")
writer.submit({"epoch": 1, "w": torch.ones(10)}, 1)
writer.flush()  # acknowledged: epoch 1 is on disk

class Stalls(io.RawIOBase):  # the second write stalls half-way through its bytes
    def __init__(self, data):
        self.data, self.pos = data, 0
    def readable(self):
        return True
    def readinto(self, b):
        if self.pos >= len(self.data) // 2:
            open(marker, "w").close()
            time.sleep(600)
        n = min(len(b), len(self.data) // 2 - self.pos, 4096)
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n

real = store.write
store.write = lambda key, body: real(key, Stalls(body.read()))
writer.submit({"epoch": 2, "w": torch.zeros(200_000)}, 2)
time.sleep(600)
"""


@pytest.mark.slow
def test_a_kill_mid_write_leaves_the_previous_checkpoint(tmp_path):
    marker = tmp_path / "half-written"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_KILLED), str(tmp_path),
                             str(marker)], env=env)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert proc.poll() is None, "the writer process ended before its second write"
            assert time.monotonic() < deadline, "the second write never started"
            time.sleep(0.05)
        folder = tmp_path / "s-artifacts" / "checkpoints"
        assert any(p.name.endswith(".part") for p in folder.iterdir())  # mid-write indeed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    store = artifact_store(f"sqlite:///{tmp_path / 's.db'}", "s")
    assert _on_disk(store) == 1
    assert (tmp_path / "s-artifacts" / checkpoint_key(0)).is_file()
