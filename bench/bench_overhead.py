"""Trial overhead: a `vcr-hpo run` trial (defaults) vs a bare PyTorch loop, same work; start-up.

Both sides train the same model (backbone + head from hpo.train.heads) on the same cached uint8
tensors for the same steps, evaluate after each epoch, and use the same optimizer and schedule;
augmentation is off so only the machinery differs. The bare loop saves the trained model's
weights once at the end (what a hand-written script keeps).

The objective side (default `--mode run`) is `hpo.run_study` as `vcr-hpo run` calls it, one
trial on a fresh SQLite study with an artifact store in a temporary folder: so it pays the
defaults (a checkpoint after every epoch by the rule of `hpo.trial.checkpoint`, confusion-matrix and
curve figures, the kept weights of the best trial, which a fresh study's only trial always is)
besides the objective's suggest, reports, pruning checks, user attrs and SQLite writes.
`--mode objective` is the older, lighter comparison: the Objective on a study without store.

Runs alternate (bare, objective, bare, ...); medians of wall and CPU seconds (process_time:
every thread of this process) are compared. Start-up is separate: `vcr-hpo run` in a fresh
process (a child) until its first trial's first backward pass, wall and child CPU.

    python bench/bench_overhead.py --image-size 32 --train 1024 --epochs 3 --repeats 3 --threads 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import optuna
import torch
import torch.nn.functional as F
import yaml
from _common import load_text, print_header

from backbones import create_backbone
from hpo.attrs import CHECKPOINT_ERROR
from hpo.config import TrainConfig
from hpo.data import load_dataset
from hpo.space import parse_search_space
from hpo.train import normalise
from hpo.train.heads import VcrClassifier, build_head
from hpo.train.optim import build_optimizer, build_scheduler


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def bare_loop(cfg: TrainConfig, out: Path) -> tuple[float, float]:
    """The loop a user would write by hand; returns (wall, process CPU) seconds."""
    t0, c0 = _clock()
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg)
    backbone = create_backbone(cfg.backbone)
    model = VcrClassifier(
        backbone,
        build_head(cfg.fusion, backbone.get_feature_channels(), data.num_classes, cfg.dropout),
    )
    opt = build_optimizer(cfg.optimizer, model.parameters(), lr=cfg.lr,
                          weight_decay=cfg.weight_decay, momentum=cfg.momentum)
    n = len(data.train_labels)
    steps = n // cfg.batch_size
    sched = build_scheduler(cfg.scheduler, opt, epochs=cfg.epochs, steps_per_epoch=steps,
                            warmup_epochs=cfg.warmup_epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        for s in range(steps):
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
            loss = F.cross_entropy(model(normalise(data.train_images[idx])), data.train_labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss.item()
        model.eval()
        with torch.no_grad():
            logits = torch.cat(
                [
                    model(normalise(data.val_images[i : i + 256]))
                    for i in range(0, len(data.val_labels), 256)
                ]
            )
            F.cross_entropy(logits, data.val_labels).item()
            (logits.argmax(1) == data.val_labels).float().mean().item()
    torch.save(model.state_dict(), out / "bare-weights.pt")
    return time.perf_counter() - t0, time.process_time() - c0


# ------------------------------------------------------------------ where the trial's time goes

_PARTS: dict[str, list[float]] = {}  # part -> [wall, cpu] summed over objective trials


def _timed(owner, name: str, label: str) -> None:
    fn = getattr(owner, name)

    def wrapper(*args, **kwargs):
        t, c = _clock()
        try:
            return fn(*args, **kwargs)
        finally:
            acc = _PARTS.setdefault(label, [0.0, 0.0])
            acc[0] += time.perf_counter() - t
            acc[1] += time.process_time() - c

    setattr(owner, name, wrapper)


def _instrument() -> None:
    """Wall and CPU of the machinery's parts (bench only; the wrappers cost microseconds)."""
    from optuna.trial import Trial

    import hpo.trial.checkpoint as ck
    from hpo.trial.objective import Objective

    for name in ("report", "should_prune", "set_user_attr", "suggest_float"):
        _timed(Trial, name, "Optuna trial calls")
    _timed(Objective, "_explain", "figures (draw + upload)")
    _timed(ck, "_promote", "kept weights (promote)")
    _timed(ck, "drop_checkpoints", "drop checkpoints")
    for name in ("save_checkpoint", "CheckpointWriter.submit", "CheckpointWriter.close"):
        owner_name, _, attr = name.rpartition(".")
        owner = getattr(ck, owner_name, None) if owner_name else ck
        if owner is not None and hasattr(owner, attr):
            _timed(owner, attr, f"checkpoint {attr} (training thread)")


def objective_trial(space, folder: Path, i: int, mode: str, threads: int) -> tuple[float, float]:
    """One trial on a fresh SQLite study; returns (wall, CPU) seconds."""
    url = f"sqlite:///{folder / f'bench{i}.db'}"
    if mode == "run":
        import hpo

        t0, c0 = _clock()
        result = hpo.run_study(space, storage=url, n_trials=1, threads=threads,
                               artifacts=str(folder / f"bench{i}-artifacts"))
        seconds = time.perf_counter() - t0, time.process_time() - c0
        trials = result.study.trials
    else:
        from hpo.study import build_storage
        from hpo.trial.objective import Objective

        study = optuna.create_study(storage=build_storage(url), study_name="bench",
                                    direction="maximize", pruner=optuna.pruners.MedianPruner())
        t0, c0 = _clock()
        study.optimize(Objective(space), n_trials=1)
        seconds = time.perf_counter() - t0, time.process_time() - c0
        trials = study.trials
    if trials[0].state != optuna.trial.TrialState.COMPLETE:
        raise SystemExit(f"objective trial ended {trials[0].state}: {trials[0].user_attrs}")
    if mode == "run" and CHECKPOINT_ERROR in trials[0].user_attrs:
        raise SystemExit(f"checkpoint failed: {trials[0].user_attrs[CHECKPOINT_ERROR]}")
    return seconds


# ------------------------------------------------------------------ start-up

_FIRST_BATCH = r"""
import os, sys, time, resource
import torch
_backward = torch.Tensor.backward
def _first(self, *a, **k):
    ru = resource.getrusage(resource.RUSAGE_SELF)
    print(f"FIRST_BATCH {time.time():.6f} {ru.ru_utime + ru.ru_stime:.3f}", flush=True)
    os._exit(0)
torch.Tensor.backward = _first
from hpo.cli import main
sys.exit(main(sys.argv[1:]))
"""


def startup(space_file: Path, folder: Path, i: int, threads: int) -> tuple[float, float]:
    """`vcr-hpo run` in a fresh process until the first trial's first backward: (wall, CPU).

    torch is imported before `main` only to hook its backward; the run imports it anyway.
    """
    args = ["run", "--space", str(space_file), "--storage", f"sqlite:///{folder / f'up{i}.db'}",
            "--n-trials", "1", "--threads", str(threads), "--quiet",
            "--artifacts", str(folder / f"up{i}-artifacts")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-c", _FIRST_BATCH, *args], capture_output=True,
                          text=True, env=env, check=False)
    line = [x for x in proc.stdout.splitlines() if x.startswith("FIRST_BATCH")]
    if not line:
        raise SystemExit(f"start-up run gave no first batch (exit {proc.returncode}): "
                         f"{proc.stderr[-2000:]}")
    _, when, cpu = line[0].split()
    return float(when) - t0, float(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("run", "objective"), default="run",
                    help="run: hpo.run_study with the defaults (artifact store, checkpoints, "
                         "figures, kept weights); objective: the Objective alone, no store")
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--train", type=int, default=1024, help="training images (synthetic set)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--startup-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print_header(f"trial overhead, mode {args.mode}: vcr-hpo vs a bare PyTorch loop")

    fixed = {
        "backbone": args.backbone,
        "image_size": args.image_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "synthetic_size": int(args.train / 0.8) + 1,
        "max_train_samples": args.train,
        "augment": False,
        "device": "cpu",
        "optimizer": "adamw",
        "scheduler": "cosine",
        "fusion": "last",
        "seed": 0,
    }
    doc = {
        "study": {"name": "bench", "metric": "val_acc"},
        "hyperparameters": {"lr": {"type": "float", "low": 1e-3, "high": 1.0001e-3}},
        "fixed": fixed,
    }
    text = yaml.safe_dump(doc)
    space = parse_search_space(text, source="bench")
    cfg = TrainConfig.from_dict({**fixed, "lr": 1e-3})
    load_dataset(cfg)  # both sides start from the in-process cache
    bare, obj, up = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        space_file = folder / "bench.yaml"
        space_file.write_text(text)
        bare_loop(cfg.replace(epochs=1), folder)  # warm-up: allocator, kernels, lazy imports
        objective_trial(space, folder, -1, args.mode, args.threads)  # warm-up: lazy imports
        _PARTS.clear()
        _instrument()
        loads = [load_text()]
        for i in range(args.repeats):
            bare.append(bare_loop(cfg, folder))
            obj.append(objective_trial(space, folder, i, args.mode, args.threads))
            loads.append(load_text())
        for i in range(args.startup_repeats):
            up.append(startup(space_file, folder, i, args.threads))
    print(
        f"{args.backbone} {args.image_size}px, {args.train} train images, {args.epochs} epochs, "
        f"batch {args.batch_size}, {args.threads} thread(s); loads during the runs: "
        f"{', '.join(loads)}"
    )
    print(f"{'run':<30}{'wall s':>8}{'cpu s':>8}  wall / cpu of each run")
    med = {}
    for name, runs in (("bare PyTorch loop", bare), (f"vcr-hpo trial ({args.mode})", obj)):
        med[name] = [statistics.median(r[k] for r in runs) for k in (0, 1)]
        print(f"{name:<30}{med[name][0]:>8.2f}{med[name][1]:>8.2f}  "
              f"{', '.join(f'{w:.2f}/{c:.2f}' for w, c in runs)}")
    (bw, bc), (ow, oc) = med.values()
    print(f"cpu s per epoch (bare): {bc / args.epochs:.2f}")
    print(f"ratio vcr-hpo / bare (medians): wall {ow / bw:.3f}, cpu {oc / bc:.3f}  (goal <= 1.05)")
    print(f"per-trial overhead (medians): wall {ow - bw:+.2f} s, cpu {oc - bc:+.2f} s")
    print("where the machinery's time goes, per trial (wall / cpu s, mean of the timed trials):")
    for label, (w, c) in sorted(_PARTS.items()):
        print(f"  {label:<44}{w / args.repeats:>7.3f} / {c / args.repeats:.3f}")
    if up:
        uw = statistics.median(r[0] for r in up)
        uc = statistics.median(r[1] for r in up)
        print(f"start-up, `vcr-hpo run` to the first trial's first batch (median of {len(up)}): "
              f"wall {uw:.2f} s, cpu {uc:.2f} s; each: "
              f"{', '.join(f'{w:.2f}/{c:.2f}' for w, c in up)}")
    print(f"# {load_text()} at the end")


if __name__ == "__main__":
    main()
