"""What a GPU changes: training throughput of `train_model` in fp32, AMP and AMP + channels_last.

Each row trains one backbone at one image size on the synthetic set through the project's own
`train_model` (the code every trial runs), with `amp` and `channels_last` switched per variant,
and reports the last epoch's training images/s (the first epoch pays cuDNN's kernel search and
the allocator's warm-up), the epoch time and, on CUDA, the peak GPU memory. On a machine without
CUDA only the fp32 row is run: `train_model` applies AMP and channels_last on CUDA alone.

    python bench/gpu.py                            # resnet18, resnet50, efficientnet_b0 at 64 and 224 px
    python bench/gpu.py --image-sizes 224 384 --batch-size 128 --train 4096
    python bench/gpu.py --quick                    # smoke-sized (seconds, CPU)
    python bench/gpu.py --quick --preflight        # + memory preflight per batch, one that OOMs
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C

from hpo.study import cpu_threads

#: (label, amp, channels_last): what a user switches in the space's `fixed:` block.
VARIANTS = [("fp32", False, False), ("amp", True, False), ("amp+channels_last", True, True)]


def measure(backbone: str, image_size: int, amp: bool, channels_last: bool, args):
    """(train images/s of the last epoch, its seconds, peak GPU GiB or None, device, precision,
    best val_acc)."""
    import torch

    from hpo.config import TrainConfig
    from hpo.train import resolve_device, train_model

    cfg = TrainConfig.from_dict({
        "backbone": backbone, "lr": 1e-3, "batch_size": args.batch_size, "optimizer": "adamw",
        "scheduler": "cosine", "pretrained": False, "data": "synthetic", "seed": 0,
        "amp": amp, "channels_last": channels_last,
        **C.tiny_overrides(epochs=args.epochs, image_size=image_size, train=args.train,
                           val=args.val),
        "device": args.device})
    cuda = resolve_device(cfg.device).type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    seen = {}
    result = train_model(cfg, on_start=lambda info: seen.update(info=info))
    last = result.history[-1]
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    info = seen["info"]
    return last.images_per_s, last.seconds, peak, info.device, info.amp or "fp32", result.best.val_acc


def run(args) -> int:
    C.print_header("gpu: training throughput of train_model, fp32 vs AMP vs AMP + channels_last")
    from hpo.train import resolve_device

    cuda = resolve_device(args.device).type == "cuda"
    variants = VARIANTS if cuda else VARIANTS[:1]
    print(f"# {args.train} train / {args.val} val synthetic images, batch {args.batch_size}, "
          f"{args.epochs} epochs (the last one is timed), device {args.device}"
          + ("" if cuda else "; no CUDA here: AMP and channels_last apply on CUDA only, so only "
                             "fp32 runs"))
    sys.stdout.flush()
    rows = []
    for backbone in args.backbones:
        for size in args.image_sizes:
            base = None
            for label, amp, channels_last in variants:
                ips, secs, peak, device, precision, acc = measure(backbone, size, amp,
                                                                 channels_last, args)
                base = base or ips
                rows.append([backbone, size, label, device, precision, round(ips), round(secs, 2),
                             "-" if peak is None else round(peak, 2), round(ips / base, 2),
                             round(acc, 3)])
    print()
    C.print_table(["backbone", "px", "variant", "device", "precision", "train_img_per_s",
                   "epoch_s", "peak_gib", "x_fp32", "val_acc"], rows)
    if args.preflight:
        preflight_rows(args)
    return 0


def preflight_rows(args) -> None:
    """The memory preflight (`hpo.trial.memory.memory_preflight`, one step + one validation
    batch) per batch size: its seconds, the peak it measured, or how fast an out-of-memory config fails."""
    import time

    import torch

    from hpo.config import TrainConfig
    from hpo.constraints import is_out_of_memory
    from hpo.train import build_state
    from hpo.trial.memory import memory_preflight

    print(f"\n# memory preflight: {args.preflight_backbone} at {args.preflight_size} px, AMP on, "
          f"batch sizes {args.preflight_batches} ({max(args.preflight_batches)} training images)")
    sys.stdout.flush()
    rows = []
    for batch in args.preflight_batches:
        cfg = TrainConfig.from_dict({
            "backbone": args.preflight_backbone, "lr": 1e-3, "batch_size": batch,
            "pretrained": False, "data": "synthetic", "seed": 0, "amp": True,
            "channels_last": True, "device": args.device,
            **C.tiny_overrides(epochs=1, image_size=args.preflight_size,
                               train=max(args.preflight_batches), val=64)})
        t0 = time.perf_counter()
        built = float("nan")
        try:
            state = build_state(cfg)
            built = time.perf_counter() - t0
            measured = memory_preflight(state)
            outcome = f"fits, peak {measured.get('peak_mb', 0) / 1024:.2f} GiB"
        except Exception as exc:  # noqa: BLE001 (the row says what happened)
            outcome = ("OUT OF MEMORY (infeasible)" if is_out_of_memory(exc)
                       else f"error {type(exc).__name__}: {exc}"[:80])
        state = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        rows.append([batch, round(built, 2), round(time.perf_counter() - t0 - built, 2), outcome])
    C.print_table(["batch", "build_s", "preflight_s", "outcome"], rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50", "efficientnet_b0"])
    ap.add_argument("--image-sizes", type=int, nargs="+", default=[64, 224])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--train", type=int, default=1024, help="synthetic training images")
    ap.add_argument("--val", type=int, default=256, help="synthetic validation images")
    ap.add_argument("--epochs", type=int, default=2, help="the last epoch is timed")
    ap.add_argument("--device", default="auto", help="auto, cuda, cuda:N or cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: the runner's rule for one worker)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: resnet18 at 32 px, 64/32 images, batch 16, 2 epochs")
    ap.add_argument("--preflight", action="store_true",
                    help="also time the memory preflight per batch size, up to one that cannot "
                         "fit (it must fail in seconds, as an infeasible trial)")
    ap.add_argument("--preflight-backbone", default="resnet50")
    ap.add_argument("--preflight-size", type=int, default=384)
    ap.add_argument("--preflight-batches", type=int, nargs="+", default=[32, 256, 2048])
    args = ap.parse_args(argv)
    if args.quick:
        args.backbones, args.image_sizes, args.batch_size = ["resnet18"], [32], 16
        args.train, args.val, args.epochs = 64, 32, 2
    import torch

    torch.set_num_threads(args.threads or cpu_threads(1))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
