"""Data pipeline: one epoch of hpo.data's cached tensors vs torchvision ImageFolder + DataLoader.

Writes the synthetic set as JPEG files (an ImageFolder at --source-size px, like camera crops),
then times, on those same files:
  ours       decode + resize once (cold), reload from the disk cache (new process would), and an
             epoch of the training input path (batches of uint8 -> augment -> normalise);
  torchvision ImageFolder + DataLoader(Resize, RandomHorizontalFlip, RandomCrop, ToTensor,
             Normalize) for one epoch, for each --workers value.
The ratio compares an epoch of each (a study reuses the decoded tensors across all its trials).

    python bench/bench_data.py --images 1000 --image-size 64 --workers 0 2
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from hpo.config import TrainConfig
from hpo.data import COLOUR_CLASSES, clear_memory_cache, load_dataset, make_synthetic
from hpo.train import augment, normalise


def write_imagefolder(root: Path, n: int, size: int) -> None:
    images, labels = make_synthetic(n, size, seed=0)
    for i, (img, lab) in enumerate(zip(images, labels)):
        folder = root / COLOUR_CLASSES[int(lab)][0]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.jpg", quality=90)


def our_epoch(cfg: TrainConfig, gen: torch.Generator) -> float:
    t0 = time.perf_counter()
    data = load_dataset(cfg)  # in-process cache hit, as every trial after the first
    n = len(data.train_labels)
    order = torch.randperm(n, generator=gen)
    for s in range(0, n, cfg.batch_size):
        idx = order[s : s + cfg.batch_size]
        normalise(augment(data.train_images[idx], gen))
        data.train_labels[idx]
    return time.perf_counter() - t0


def torchvision_epoch(root: Path, size: int, batch: int, workers: int) -> float:
    from torchvision import datasets, transforms

    tf = transforms.Compose(
        [
            transforms.Resize((size, size)),
            transforms.RandomHorizontalFlip(),
            transforms.RandomCrop(size, padding=size // 8, padding_mode="edge"),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    t0 = time.perf_counter()
    ds = datasets.ImageFolder(str(root), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers)
    for x, y in loader:
        pass
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--source-size", type=int, default=128, help="pixel size of the JPEG files")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "cars", Path(tmp) / "cache"
        write_imagefolder(root, args.images, args.source_size)
        os.environ["VCR_HPO_CACHE"] = str(cache)
        # val_fraction tiny: both sides see (almost) every file in the epoch
        cfg = TrainConfig(
            data=str(root),
            image_size=args.image_size,
            batch_size=args.batch_size,
            val_fraction=0.001,
            num_workers=0,
        )
        t0 = time.perf_counter()
        load_dataset(cfg)
        cold = time.perf_counter() - t0
        clear_memory_cache()
        t0 = time.perf_counter()
        load_dataset(cfg)
        disk = time.perf_counter() - t0
        gen = torch.Generator().manual_seed(0)
        ours = statistics.median(our_epoch(cfg, gen) for _ in range(args.repeats))
        tv = {
            w: statistics.median(
                torchvision_epoch(root, args.image_size, args.batch_size, w)
                for _ in range(args.repeats)
            )
            for w in args.workers
        }

    print(f"$ python {shlex.join(sys.argv)}")
    print(
        f"{args.images} JPEG files of {args.source_size}px -> {args.image_size}px, batch "
        f"{args.batch_size}, {args.threads} thread(s), median of {args.repeats}"
    )
    print(f"{'pipeline':<44}{'seconds':>9}{'img/s':>10}")
    rows = [
        ("ours: decode + resize once (cold)", cold),
        ("ours: load from disk cache", disk),
        ("ours: one epoch (cached tensors, augment)", ours),
    ]
    rows += [(f"torchvision ImageFolder+DataLoader, workers={w}", s) for w, s in tv.items()]
    for name, s in rows:
        print(f"{name:<44}{s:>9.3f}{args.images / s:>10.0f}")
    for w, s in tv.items():
        print(f"ratio torchvision(workers={w}) / ours per epoch: {s / ours:.1f}x  (goal >= 3x)")


if __name__ == "__main__":
    main()
