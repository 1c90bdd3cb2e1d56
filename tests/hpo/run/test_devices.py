"""One worker per GPU: the device plan, the GPU inventory, and the worker processes' environment.

No GPU here: the inventory is simulated with its documented test hook `$VCR_HPO_FAKE_GPUS`
(or an explicit `visible=`); the worker processes are real processes started by the same
`hpo.run.api.start_workers` a run uses.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest
import torch

from hpo.attrs import GPU_ENV
from hpo.cli import main
from hpo.errors import ConfigError
from hpo.run.api import plan_run, start_workers
from hpo.run.devices import FAKE_GPUS_ENV, device_plan, parse_gpus, visible_gpus

THREE = ("0", "1", "2")

_SPACE = """\
study:
  name: gpus
  metric: val_acc
  n_trials: 2
  sampler: {type: Random, seed: 0}
  pruner: null
hyperparameters:
  lr: {type: float, low: 0.001, high: 0.01, log: true}
fixed:
  backbone: resnet10t
  epochs: 1
  image_size: 32
  max_train_samples: 32
  synthetic_size: 64
  batch_size: 16
"""


@pytest.fixture(autouse=True)
def _here(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(FAKE_GPUS_ENV, raising=False)


def _gpus(plan):
    return [p.gpu for p in plan]


@pytest.mark.parametrize(("workers", "gpus", "per_gpu", "device", "expected"), [
    (4, ("0", "1"), None, "auto", ["0", "1", "0", "1"]),
    ("auto", None, None, "auto", ["0", "1", "2"]),
    ("auto", None, None, "cuda", ["0", "1", "2"]),
    ("auto", ("1", "2"), 2, "cuda", ["1", "2", "1", "2"]),
    (4, ("2", "0"), 2, "auto", ["2", "0", "2", "0"]),
    (2, None, None, "auto", ["0", "1"]),          # fewer workers than visible GPUs: the first
    (6, None, None, "auto", ["0", "1", "2"] * 2),
    (2, None, None, "cuda:1", ["1", "1"]),        # cuda:N: that GPU, shared
    (1, ("2",), None, "cuda", ["2"]),
])
def test_device_plan_spreads_workers_over_the_gpus(workers, gpus, per_gpu, device, expected):
    plan = device_plan(workers, gpus, per_gpu, device, visible=THREE)
    assert _gpus(plan) == expected
    assert [p.index for p in plan] == list(range(len(expected)))
    assert all(p.device == ("cuda" if device.startswith("cuda") else device) for p in plan)
    assert plan[0].env() == {"CUDA_VISIBLE_DEVICES": expected[0], GPU_ENV: expected[0]}


@pytest.mark.parametrize(("workers", "device", "visible", "cpu_workers", "n"), [
    (3, "cpu", THREE, 1, 3),
    ("auto", "cpu", THREE, 2, 2),      # the CPU rule: one 1-thread worker per idle core
    ("auto", "auto", (), 2, 2),        # auto device without a GPU is the CPU
    (1, "mps", (), 1, 1),
])
def test_device_plan_on_the_cpu_gives_no_gpu(workers, device, visible, cpu_workers, n):
    plan = device_plan(workers, None, None, device, visible=visible, cpu_workers=cpu_workers)
    assert len(plan) == n and all(p.gpu is None and p.env() == {} for p in plan)


@pytest.mark.parametrize(("args", "flag", "words"), [
    ((2, ("0", "5"), None, "auto"), "--gpus", "GPU 5 is not visible here"),
    ((4, ("0", "1", "2", "3"), None, "cuda"), "--gpus", "GPU 3 is not visible"),
    ((2, ("0",), None, "cpu"), "--gpus", "needs a CUDA device"),
    ((2, None, 2, "cpu"), "--workers-per-gpu", "needs a CUDA device"),
    ((3, ("0", "1"), None, "auto"), "--workers", "multiple of the 2 GPU(s)"),
    ((3, ("0", "1"), 2, "auto"), "--workers", "fill 2 GPU(s) x --workers-per-gpu 2 = 4"),
    ((2, ("0", "1", "2"), None, "auto"), "--workers", "cannot use the 3 GPUs"),
    ((2, None, None, "cuda:7"), "--device", "must be a visible CUDA GPU"),
    ((2, ("0",), None, "cuda:0"), "--gpus", "conflicts with --device cuda:0"),
    ((0, None, None, "auto"), "--workers", "must be a number >= 1"),
    ((2, None, 0, "cuda"), "--workers-per-gpu", "must be a number >= 1"),
])
def test_device_plan_refuses_with_one_line(args, flag, words):
    with pytest.raises(ConfigError) as err:
        device_plan(*args, visible=THREE)
    text = str(err.value)
    assert text.startswith(flag + ":") and words in text and "\n" not in text


def test_device_plan_refuses_cuda_without_gpus():
    with pytest.raises(ConfigError, match="--device: must name a visible CUDA GPU"):
        device_plan(2, None, None, "cuda", visible=())


def test_parse_gpus():
    assert parse_gpus("0, 1,3") == ("0", "1", "3")
    assert parse_gpus(None) is None
    with pytest.raises(ConfigError, match="names GPU 1 twice"):
        parse_gpus("1,1")
    with pytest.raises(ConfigError, match="GPU ids separated by commas"):
        parse_gpus("0,,1")


def test_visible_gpus_reads_the_fake_hook_then_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv(FAKE_GPUS_ENV, "3")
    assert visible_gpus() == THREE
    monkeypatch.setenv(FAKE_GPUS_ENV, "three")
    with pytest.raises(ConfigError, match=r"\$VCR_HPO_FAKE_GPUS: must be a whole number"):
        visible_gpus()
    monkeypatch.delenv(FAKE_GPUS_ENV)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == ()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    expected = ("2", "3")[: torch.cuda.device_count()]  # this machine: no GPU, so none
    assert visible_gpus() == expected


@pytest.mark.parametrize(("argv", "words"), [
    (["--gpus", "0", "--device", "cpu"], "--gpus: needs a CUDA device"),
    (["--workers", "4", "--gpus", "0,5"], "--gpus: GPU 5 is not visible here"),
    (["--workers", "3", "--gpus", "0,1"], "--workers: must be a multiple of the 2 GPU(s)"),
    (["--workers-per-gpu", "2", "--device", "cpu"], "--workers-per-gpu: needs a CUDA device"),
])
def test_cli_refusals_exit_2_with_nothing_written(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(FAKE_GPUS_ENV, "3")
    Path("s.yaml").write_text(_SPACE)
    code = main(["run", "--space", "s.yaml", "--storage", "sqlite:///out.db", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and words in err[0], err
    assert not Path("out.db").exists() and not Path("studies").exists()


_RECORD = ("import json, os, sys; json.dump({'index': int(sys.argv[2]), "
           "'cuda': os.environ.get('CUDA_VISIBLE_DEVICES'), 'gpu': os.environ.get('VCR_HPO_GPU'), "
           "'fake': os.environ.get('VCR_HPO_FAKE_GPUS')}, open(sys.argv[1] + sys.argv[2], 'w'))")


def _recorded(tmp_path, placements) -> list[dict]:
    def command(spec_file, index):
        return [sys.executable, "-c", _RECORD, str(tmp_path / "env"), str(index)]

    procs = start_workers(placements, tmp_path / "unused.pickle", {"PATH": "/usr/bin:/bin",
                                                                   FAKE_GPUS_ENV: "3"}, command)
    assert [p.wait(timeout=60) for p in procs] == [0] * len(placements)
    return [json.loads((tmp_path / f"env{i}").read_text()) for i in range(len(placements))]


@pytest.mark.slow
@pytest.mark.parametrize(("workers", "gpus", "expected"), [
    (4, "0,1", ["0", "1", "0", "1"]),
    ("auto", None, ["0", "1", "2"]),
])
def test_each_worker_process_receives_its_cuda_visible_devices(
        workers, gpus, expected, tmp_path, monkeypatch):
    monkeypatch.setenv(FAKE_GPUS_ENV, "3")  # three GPUs, simulated by the inventory's test hook
    Path("s.yaml").write_text(_SPACE)
    plan = plan_run("s.yaml", storage=f"sqlite:///{tmp_path / 'x.db'}", preflight=False,
                    workers=workers, gpus=gpus)
    placements = plan.placements
    seen = _recorded(tmp_path, placements)
    assert [s["index"] for s in seen] == list(range(len(expected)))
    assert [s["cuda"] for s in seen] == expected
    assert [s["gpu"] for s in seen] == expected
    assert all(s["fake"] is None for s in seen)  # a worker sees its one GPU, not the simulation


# Loaded by every worker process through PYTHONPATH: records the process's environment once and,
# on each trial, which process ran it. It only observes; the run is vcr-hpo's own.
_OBSERVER = """\
import json, os
_out = os.environ["VCR_HPO_TEST_OBSERVE"]
_env = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "VCR_HPO_GPU", "VCR_HPO_FAKE_GPUS")}
with open(os.path.join(_out, f"{os.getpid()}.json"), "w") as f:
    json.dump(_env, f)
import hpo.trial.objective
_call = hpo.trial.objective.Objective.__call__
def _observed(self, trial):
    trial.set_user_attr("test_worker", [os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")])
    return _call(self, trial)
hpo.trial.objective.Objective.__call__ = _observed
"""


@pytest.mark.slow
def test_run_with_workers_auto_on_simulated_gpus_places_one_worker_per_gpu(tmp_path, monkeypatch,
                                                                          observe_workers):
    """Two simulated GPUs: two real worker processes, each with its own CUDA_VISIBLE_DEVICES
    (and VCR_HPO_GPU, never the simulation); every trial ran in one of them. torch finds no GPU
    in them, so they train on the CPU, and the study still finishes."""

    import hpo

    seen = observe_workers(_OBSERVER)
    monkeypatch.setenv(FAKE_GPUS_ENV, "2")
    Path("s.yaml").write_text(_SPACE)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    result = hpo.run_study("s.yaml", storage=url, n_trials=3, workers="auto", threads=1)
    assert result.finished >= 3
    workers = {int(f.stem): json.loads(f.read_text()) for f in seen.glob("*.json")}
    assert sorted(w["CUDA_VISIBLE_DEVICES"] for w in workers.values()) == ["0", "1"], workers
    assert all(w["VCR_HPO_GPU"] == w["CUDA_VISIBLE_DEVICES"] and w["VCR_HPO_FAKE_GPUS"] is None
               for w in workers.values()), workers
    study = optuna.load_study(study_name="gpus", storage=url)
    for t in study.trials:
        pid, cuda = t.user_attrs["test_worker"]
        assert workers[pid]["CUDA_VISIBLE_DEVICES"] == cuda  # ran in a worker, under its GPU
    assert all(t.user_attrs.get("device") == "cpu" for t in study.trials if t.values)


def test_host_batches_gather_into_reused_buffers_equal_plain_indexing():
    """The CUDA path's gather (pinned there, plain here): every batch equals source[idx], the
    two buffers are reused, and a batch stays intact after the next two are taken."""
    from hpo.train._loop import HostBatches

    source = torch.randint(0, 255, (50, 3, 8, 8), dtype=torch.uint8)
    host = HostBatches(source, 16, torch.device("cpu"))
    order = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    ptrs = [b.data_ptr() for b in host.buffers]
    first = host.take(order[:16])
    for step in range(4):
        idx = order[step * 16 : (step + 1) * 16]  # the last one is ragged (2 images)
        assert torch.equal(host.take(idx), source[idx])
    assert torch.equal(first, source[order[:16]])
    assert [b.data_ptr() for b in host.buffers] == ptrs  # reused, not reallocated
    assert all(b.shape == (16, 3, 8, 8) for b in host.buffers)
