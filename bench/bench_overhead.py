"""Trial overhead: the objective on a real SQLite study vs a bare PyTorch loop, same work.

Both sides train the same model (backbone + head from hpo.heads) on the same cached uint8
tensors for the same steps, evaluate after each epoch, and use the same optimizer and schedule;
augmentation is off so only the machinery differs (the objective's suggest, TrainConfig,
data-cache lookup, reports, pruning checks, user attrs, heartbeat and SQLite writes).
Runs alternate (bare, objective, bare, ...) and the medians are compared.

    python bench/bench_overhead.py --image-size 32 --train 400 --epochs 2 --repeats 3
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
import yaml

from backbones import create_backbone
from hpo.config import TrainConfig
from hpo.data import load_dataset
from hpo.heads import VcrClassifier, build_head
from hpo.objective import Objective
from hpo.optim import build_optimizer, build_scheduler
from hpo.space import parse_search_space
from hpo.study import build_storage
from hpo.train import normalise, train_model


def bare_loop(cfg: TrainConfig) -> tuple[float, float]:
    """The loop a user would write by hand; returns (wall, process CPU) seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
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
    return time.perf_counter() - t0, time.process_time() - c0


def trainer_only(cfg: TrainConfig) -> tuple[float, float]:
    """hpo.train.train_model without Optuna; returns (wall, CPU) seconds."""
    t0, c0 = time.perf_counter(), time.process_time()
    train_model(cfg)
    return time.perf_counter() - t0, time.process_time() - c0


_OPTUNA_S = [0.0]  # seconds spent inside Trial methods during objective trials


def _time_trial_methods() -> None:
    """Accumulate the wall time of every Trial method the objective calls (bench only)."""
    from optuna.trial import Trial

    def timed(fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                _OPTUNA_S[0] += time.perf_counter() - t

        return wrapper

    for name in (
        "report",
        "should_prune",
        "set_user_attr",
        "suggest_float",
        "suggest_int",
        "suggest_categorical",
    ):
        setattr(Trial, name, timed(getattr(Trial, name)))


def objective_trial(space, folder: Path, i: int) -> tuple[float, float]:
    """One trial of the real objective on a fresh SQLite study; returns (wall, CPU) seconds."""
    url = f"sqlite:///{folder / f'bench{i}.db'}"
    study = optuna.create_study(
        storage=build_storage(url),
        study_name="bench",
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(),
    )
    objective = Objective(space)
    inside = [0.0]

    def call(trial):
        t = time.perf_counter()
        try:
            return objective(trial)
        finally:
            inside[0] += time.perf_counter() - t

    t0, c0 = time.perf_counter(), time.process_time()
    study.optimize(call, n_trials=1)
    seconds = time.perf_counter() - t0, time.process_time() - c0
    # ask, tell, heartbeat thread start/stop happen outside the objective call
    _OPTUNA_S[0] += seconds[0] - inside[0]
    if study.trials[0].state != optuna.trial.TrialState.COMPLETE:
        raise SystemExit(f"objective trial ended {study.trials[0].state}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--train", type=int, default=400, help="training images (synthetic set)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

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
    space = parse_search_space(yaml.safe_dump(doc), source="bench")
    cfg = TrainConfig.from_dict({**fixed, "lr": 1e-3})
    load_dataset(cfg)  # both sides start from the in-process cache
    bare_loop(cfg.replace(epochs=1))  # warm-up: allocator, kernels, lazy imports

    _time_trial_methods()
    bare, trainer, obj = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            bare.append(bare_loop(cfg))
            trainer.append(trainer_only(cfg))
            obj.append(objective_trial(space, Path(tmp), i))
    print(f"$ python {shlex.join(sys.argv)}")
    print(
        f"{args.backbone} {args.image_size}px, {args.train} train images, {args.epochs} epochs, "
        f"batch {args.batch_size}, {args.threads} thread(s), torch {torch.__version__}, "
        f"optuna {optuna.__version__}"
    )
    print(f"{'run':<26}{'wall s':>8}{'cpu s':>8}  wall of each run")
    med = {}
    for name, runs in (
        ("bare PyTorch loop", bare),
        ("train_model (no Optuna)", trainer),
        ("objective (SQLite trial)", obj),
    ):
        med[name] = [statistics.median(r[k] for r in runs) for k in (0, 1)]
        print(
            f"{name:<26}{med[name][0]:>8.2f}{med[name][1]:>8.2f}  "
            f"{', '.join(f'{r[0]:.2f}' for r in runs)}"
        )
    (bw, bc), _, (ow, oc) = med.values()
    print(f"ratio objective / bare: wall {ow / bw:.3f}, cpu {oc / bc:.3f}  (goal <= 1.03)")
    per_trial = _OPTUNA_S[0] / args.repeats
    mean_obj = statistics.mean(r[0] for r in obj)
    print(
        f"Optuna's own time per trial (ask/tell, heartbeat, suggest, report, prune, user attrs "
        f"on SQLite): {per_trial:.3f} s = {per_trial / mean_obj:.1%} of the trial's wall time"
    )


if __name__ == "__main__":
    main()
