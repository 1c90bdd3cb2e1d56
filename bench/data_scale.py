"""Data at scale: a long-tailed ImageFolder of JPEG vehicle crops, its cache, memory, throughput and wait.

Makes (once, reused while its version key matches) an ImageFolder of --images JPEG crops of
varied sizes (60-400 px wide, aspect 1.2-2.2), 12 colour classes with a Zipf-like long tail, each
a tinted car-like shape on a noisy background. Then, at --image-size px, through the project's
own code (hpo.data.load_dataset, the `vcr-hpo run` command, hpo.train's normalise):

1. first-trial wait, cold: `vcr-hpo run` (1 trial) in a fresh process with an empty cache
   folder, from the command's start to its first training batch; inside it, the data preflight
   (every file decoded once at 8 px) and the cache build (hpo.data: list, hash, decode with all
   cores, write) are timed. The JPEG files sit in the page cache (just written): no cold disk.
2. first-trial wait, warm: the same command again, the cache file now on disk.
3. disk: the cache file's size against raw, N x 3 x S x S bytes.
4. memory with 1, 2 and 4 reader processes at once, each loading the set as a trial does and
   reading every image once. Data memory per machine = the cache file's pages resident in the
   page cache (`fincore`: shared, counted once) + the sum over readers of their private
   (anonymous) memory grown since their imports (a private copy of the set would show there).
   Beside it: the sum of the readers' PSS of the mapping (/proc/PID/smaps: each shared page
   divided among the processes that map it) and of their whole PSS (smaps_rollup, torch included).
5. one epoch of batches, images/s, on the same files: ours = the trainer's own batches
   (hpo.train._loop: epoch_order, TrainBatches) from the mapped cache (warm, the set loaded once
   in this process) in a shuffled order, as uint8 rows (what a GPU trial copies to the device,
   which then converts), as the float normalised batch a CPU trial reads with augment off, and
   with augment on (the default), torch threads = cores; theirs = torchvision
   ImageFolder + DataLoader(num_workers = cores, shuffle) with Resize((S, S)) + PILToTensor
   (uint8) or + ToTensor + Normalize (float). Not included: model compute (neither side), our
   cache build (1.); included on their side: worker start-up (paid every epoch unless
   persistent_workers) and the JPEG decode and resize that every epoch repeats.

Develop with --images 2000 (--epoch-only: section 5 alone, --repeats N: N interleaved epochs
of each); the committed run is the 50,000 one:

    python bench/data_scale.py --images 50000 | tee bench/results/data_scale-50k.txt
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py
import _common as C

MB = 1 << 20
GB = 1 << 30
VERSION = 1  # bump when the generator changes: the folder is rebuilt
# Traffic colours, most common first; RGB of the paint.
CLASSES = (
    ("white", (235, 235, 232)), ("black", (25, 25, 28)), ("grey", (120, 120, 124)),
    ("silver", (185, 188, 192)), ("blue", (30, 60, 170)), ("red", (180, 25, 30)),
    ("brown", (100, 65, 40)), ("green", (35, 120, 50)), ("beige", (205, 190, 150)),
    ("yellow", (230, 200, 30)), ("orange", (235, 120, 20)), ("purple", (110, 40, 130)),
)
ZIPF_S = 1.3  # class k (1-based) has weight k^-1.3: 42% for the first, 1.7% for the last


# --------------------------------------------------------------------------- the image folder


def class_counts(n: int) -> list[int]:
    """Images per class: Zipf-like, every class at least 1, summing to n."""
    w = [(k + 1) ** -ZIPF_S for k in range(len(CLASSES))]
    counts = [max(1, math.floor(n * x / sum(w))) for x in w]
    counts[0] += n - sum(counts)
    return counts


_NOISE = 416  # side of the noise tile each crop takes a window of
_BANK: list = []


def _noise_bank():
    """A fixed tile of Gaussian noise, sd 4 in int16 (scaled by k/4 per crop), made per process."""
    import numpy as np

    if not _BANK:
        tile = np.random.default_rng(VERSION).standard_normal((_NOISE, _NOISE, 3))
        _BANK.append(np.round(tile * 4).astype(np.int16))
    return _BANK[0]


def _draw(job: tuple[int, int, str]) -> None:
    """Write one crop: a tinted car-like shape (body, cabin, windows, wheels) on noisy ground."""
    import numpy as np
    from PIL import Image, ImageDraw

    index, label, path = job
    rng = np.random.default_rng(1_000_003 * VERSION + index)
    w = round(math.exp(rng.uniform(math.log(60), math.log(400))))
    h = max(24, round(w / rng.uniform(1.2, 2.2)))
    ground = rng.uniform(60, 200) * np.array([1.0, rng.uniform(0.95, 1.05), rng.uniform(0.9, 1.1)])
    ramp = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), h, dtype=np.float32)
    sky = np.clip(ramp[:, None] * ground[None, :], 0, 255).astype(np.uint8)  # (h, 3)
    img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(sky[:, None], (h, w, 3))))
    d = ImageDraw.Draw(img)
    light = rng.uniform(0.65, 1.15)
    paint = np.clip(np.array(CLASSES[label][1]) * light + rng.normal(0, 10, 3), 0, 255)
    body = tuple(int(c) for c in paint)
    dark = tuple(int(c * 0.7) for c in paint)
    x0, x1 = w * rng.uniform(0.03, 0.12), w * rng.uniform(0.88, 0.97)
    yb0, yb1 = h * rng.uniform(0.42, 0.52), h * rng.uniform(0.78, 0.88)
    yc = h * rng.uniform(0.18, 0.3)
    cx0, cx1 = x0 + (x1 - x0) * rng.uniform(0.15, 0.3), x0 + (x1 - x0) * rng.uniform(0.65, 0.8)
    d.rectangle((x0, yb0, x1, yb1), fill=body)
    d.polygon([(cx0, yb0), (cx0 + (cx1 - cx0) * 0.15, yc), (cx1 - (cx1 - cx0) * 0.1, yc),
               (cx1, yb0)], fill=body)
    glass = tuple(int(c) for c in rng.uniform(40, 90) * np.array([0.9, 1.0, 1.15]))
    pad = (yb0 - yc) * 0.2
    mid = (cx0 + cx1) / 2
    d.polygon([(cx0 + pad, yb0 - pad * 0.5), (cx0 + (cx1 - cx0) * 0.2, yc + pad),
               (mid - pad * 0.3, yc + pad), (mid - pad * 0.3, yb0 - pad * 0.5)], fill=glass)
    d.polygon([(mid + pad * 0.3, yb0 - pad * 0.5), (mid + pad * 0.3, yc + pad),
               (cx1 - (cx1 - cx0) * 0.15, yc + pad), (cx1 - pad, yb0 - pad * 0.5)], fill=glass)
    d.line((x0, (yb0 + yb1) / 2, x1, (yb0 + yb1) / 2), fill=dark, width=max(1, h // 40))
    r = (yb1 - yb0) * rng.uniform(0.35, 0.5)
    for wx in (x0 + (x1 - x0) * 0.2, x0 + (x1 - x0) * 0.8):
        d.ellipse((wx - r, yb1 - r, wx + r, yb1 + r), fill=(20, 20, 22))
        d.ellipse((wx - r / 2, yb1 - r / 2, wx + r / 2, yb1 + r / 2), fill=(90, 90, 95))
    oy, ox = rng.integers(0, _NOISE - h + 1), rng.integers(0, _NOISE - w + 1)
    noise = (_noise_bank()[oy : oy + h, ox : ox + w] * int(rng.integers(3, 13))) >> 2  # sd 3-12
    out = Image.fromarray(np.clip(np.asarray(img, np.int16) + noise, 0, 255).astype(np.uint8))
    out.save(path, quality=int(rng.integers(80, 96)))


def make_folder(root: Path, n: int, procs: int) -> tuple[Path, float | None]:
    """The ImageFolder for n images under root (made unless its marker matches); (path, seconds)."""
    folder = root / f"vehicles-{n}-v{VERSION}"
    marker = folder / ".done.json"
    key = {"version": VERSION, "images": n, "counts": class_counts(n)}
    try:
        if json.loads(marker.read_text()) == key:
            return folder, None
    except (OSError, ValueError):
        pass
    shutil.rmtree(folder, ignore_errors=True)
    jobs, index = [], 0
    for label, count in enumerate(class_counts(n)):
        (folder / CLASSES[label][0]).mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            jobs.append((index, label, str(folder / CLASSES[label][0] / f"{index:06d}.jpg")))
            index += 1
    import multiprocessing as mp

    t0 = time.perf_counter()
    with mp.get_context("fork").Pool(procs) as pool:
        for _ in pool.imap_unordered(_draw, jobs, chunksize=64):
            pass
    marker.write_text(json.dumps(key))  # last: a folder cut short is made again
    return folder, time.perf_counter() - t0


# --------------------------------------------------------------------------- /proc readings


def _mapping_of(pid: int, file: Path) -> dict[str, int]:
    """Summed Rss and Pss (bytes) of the mappings of `file` in process `pid`."""
    total = {"Rss": 0, "Pss": 0}
    inside = False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(maxsplit=5)
            if head and "-" in head[0] and ":" not in head[0]:  # a mapping's header line
                inside = len(head) > 5 and head[5].strip() == str(file)
            elif inside and head and head[0] in ("Rss:", "Pss:"):
                total[head[0][:-1]] += int(head[1]) * 1024
    return total


def _resident(file: Path) -> int:
    """Bytes of `file` in the page cache (util-linux fincore)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(file)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


# --------------------------------------------------------------------------- child processes


def _cfg(args: argparse.Namespace, folder: str):
    from hpo.config import TrainConfig

    return TrainConfig(data=folder, image_size=args.image_size, val_fraction=args.val_fraction)


def reader(args: argparse.Namespace) -> None:
    """Load the set as a trial does, read every image once, report, wait for a line on stdin."""
    import torch

    torch.set_num_threads(1)
    from hpo.data import load_dataset

    before = C.proc_kb("/proc/self/status")
    t0 = time.perf_counter()
    data = load_dataset(_cfg(args, args.folder))
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    total = 0
    for part in (data.train_images, data.val_images):  # every byte, as int64 words (a checksum)
        for i in range(0, len(part), 256):
            flat = part[i : i + 256].reshape(-1)
            total += int(flat[: len(flat) // 8 * 8].view(torch.int64).sum())
    after = C.proc_kb("/proc/self/status")
    print(json.dumps({"load_s": load_s, "read_s": time.perf_counter() - t0, "sum": total,
                      "anon_grown": after["RssAnon"] - before["RssAnon"]}), flush=True)
    sys.stdin.readline()


def first_batch(args: argparse.Namespace, run_argv: list[str]) -> None:
    """`vcr-hpo run` with timers: the data preflight, the data load, and the first batch (exit)."""
    import hpo.data
    import hpo.data._load as load
    import hpo.train._loop as loop
    from hpo.cli import main

    marks: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            t0 = time.time()
            try:
                return fn(*a, **k)
            finally:
                marks[name] = marks.get(name, 0.0) + time.time() - t0
        return wrapper

    hpo.data.check_images_decode = timed("preflight_s", hpo.data.check_images_decode)
    load._laid_out = timed("load_s", load._laid_out)
    take = loop.TrainBatches.take

    def first(self, idx):
        out = take(self, idx)
        marks["first_batch_s"] = time.time() - args.t0
        print(json.dumps(marks), flush=True)
        os._exit(0)  # the wait is measured; the trial need not finish
        return out

    loop.TrainBatches.take = first
    sys.exit(main(run_argv))


# --------------------------------------------------------------------------- parent steps


SPACE = """\
study: {{name: scale, n_trials: 1, sampler: {{type: Random, seed: 0}}, pruner: null}}
hyperparameters:
  lr: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true, default: 3.0e-3}}
fixed:
  backbone: resnet18
  pretrained: false
  epochs: 1
  batch_size: 32
  image_size: {size}
  val_fraction: {val}
  data: {data}
"""


def run_wait(args: argparse.Namespace, folder: Path, work: Path, tag: str, env: dict) -> dict:
    """One `vcr-hpo run` to its first batch in a fresh process; the timers of `first_batch`."""
    space = work / "space.yaml"
    space.write_text(SPACE.format(size=args.image_size, val=args.val_fraction, data=folder))
    run_argv = ["run", "--space", str(space), "--storage", f"sqlite:///{work}/{tag}.db",
                "--n-trials", "1", "--quiet", "--artifacts", str(work / f"{tag}-artifacts")]
    t0 = time.time()
    cmd = [sys.executable, __file__, "--first-batch", "--t0", repr(t0), "--", *run_argv]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"run did not reach a batch (rc {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def memory_round(args: argparse.Namespace, folder: Path, env: dict, n: int, file: Path) -> dict:
    cmd = [sys.executable, __file__, "--reader", "--folder", str(folder),
           "--image-size", str(args.image_size), "--val-fraction", str(args.val_fraction)]
    with C.held_processes(cmd, n, env, timeout=120) as (kids, reports):  # each has read all
        maps = [_mapping_of(k.pid, file) for k in kids]
        pss = [C.proc_kb(f"/proc/{k.pid}/smaps_rollup")["Pss"] for k in kids]
        resident = _resident(file)
    if len({r["sum"] for r in reports}) != 1:
        raise SystemExit(f"readers disagree on the pixels: {[r['sum'] for r in reports]}")
    anon = sum(r["anon_grown"] for r in reports)
    return {
        "workers": n,
        "load_s": max(r["load_s"] for r in reports),
        "read_s": max(r["read_s"] for r in reports),
        "resident": resident, "anon": anon, "data": resident + anon,
        "map_pss": sum(m["Pss"] for m in maps), "map_rss": sum(m["Rss"] for m in maps),
        "pss": sum(pss),
    }


KINDS = {  # what one epoch of our batches delivers
    "uint8": "uint8",
    "float": "float, normalised",
    "augmented": "float, augmented + normalised",
}


def our_epoch(args: argparse.Namespace, folder: Path, kind: str) -> tuple[float, int]:
    """One epoch of the trainer's own batches (hpo.train._loop: epoch_order, TrainBatches).

    uint8: the rows gathered into a host buffer as a GPU trial does before its copy to the device
    (which then converts);
    float: TrainBatches on the CPU with augment off; augmented: with augment on (the default).
    """
    import torch

    from hpo.data import load_dataset
    from hpo.train._loop import HostBatches, TrainBatches, epoch_order

    data = load_dataset(_cfg(args, str(folder)))  # mapped: in-process after the first call
    n = len(data.train_labels)
    order_gen = torch.Generator().manual_seed(0)
    augment_gen = torch.Generator().manual_seed(1) if kind == "augmented" else None
    cpu = torch.device("cpu")
    batches = TrainBatches(data.train_images, data.train_labels, args.batch, cpu,
                           augment_gen=augment_gen)
    rows = HostBatches(data.train_images, args.batch, cpu)  # a GPU trial's gather, to the host
    t0 = time.perf_counter()
    order = epoch_order(n, n, None, order_gen)
    for s in range(0, n, args.batch):
        idx = order[s : s + args.batch]
        if kind == "uint8":
            x, y = rows.gather(idx), data.train_labels[idx]
        else:
            x, y = batches.take(idx)
    del x, y
    return time.perf_counter() - t0, n


def their_epoch(args: argparse.Namespace, folder: Path, kind: str, workers: int) -> tuple[float, int]:
    import torch
    from torchvision import datasets, transforms

    s = args.image_size
    steps = [transforms.Resize((s, s))]
    steps += ([transforms.ToTensor(),
               transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
              if kind != "uint8" else [transforms.PILToTensor()])
    t0 = time.perf_counter()
    ds = datasets.ImageFolder(str(folder), transform=transforms.Compose(steps))
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True,
                                         num_workers=workers)
    for x, y in loader:
        pass
    return time.perf_counter() - t0, len(ds)


def epoch_rows(args: argparse.Namespace, folder: Path) -> None:
    """Section 5: ours and torchvision's, interleaved per kind and repeat; median ratios."""
    import statistics

    rows, ratios = [], {k: [] for k in KINDS}
    theirs: dict[str, tuple[float, int]] = {}
    for rep in range(args.repeats):
        for kind, label in KINDS.items():
            s, n = our_epoch(args, folder, kind)
            rows.append([f"ours: trainer's batches, {label}", rep, n, round(s, 1), round(n / s)])
            their_kind = "float" if kind == "augmented" else kind  # ToTensor + Normalize
            if their_kind not in theirs or kind == their_kind:
                theirs[their_kind] = their_epoch(args, folder, their_kind, args.cores)
                ts, tn = theirs[their_kind]
                rows.append([f"torchvision, {args.cores} workers: {KINDS[their_kind]}", rep, tn,
                             round(ts, 1), round(tn / ts)])
            ts, tn = theirs[their_kind]
            ratios[kind].append((n / s) / (tn / ts))
    C.print_table(["one epoch of batches", "repeat", "images", "seconds", "images_per_s"], rows)
    for kind, label in KINDS.items():
        vs = "ToTensor + Normalize" if kind == "augmented" else label
        print(f"# ratio ours / torchvision ({label} vs {vs}): "
              f"{statistics.median(ratios[kind]):.1f}x median of "
              f"{', '.join(f'{r:.1f}' for r in ratios[kind])} (goal >= 3x)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "vcr-data-scale",
                   help="where the image folder is made and kept (default %(default)s)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeats", type=int, default=1,
                   help="epochs of each kind, ours and torchvision's interleaved (section 5)")
    p.add_argument("--epoch-only", action="store_true",
                   help="only section 5 (the cache is built in this process first)")
    p.add_argument("--reader", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--first-batch", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--folder", help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    rest = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.reader:
        reader(args)
        return 0
    if args.first_batch:
        first_batch(args, rest)
        return 0

    import torch

    torch.set_num_threads(args.cores)
    C.print_header(f"Data at scale: {args.images} JPEG vehicle crops at {args.image_size} px")
    print(f"# date {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} cores, "
          f"{C.proc_kb('/proc/meminfo')['MemTotal'] / GB:.1f} GB RAM; other agents share this machine")
    folder, made = make_folder(args.root.expanduser(), args.images, args.cores)
    counts = class_counts(args.images)
    on_disk = sum(f.stat().st_size for f in folder.rglob("*.jpg"))
    print(f"# folder {folder}: {f'made in {made:.0f} s' if made else 'reused'}, "
          f"{on_disk / MB:.0f} MB of JPEG, 12 classes: "
          + ", ".join(f"{c[0]} {k} ({k / args.images:.1%})" for c, k in zip(CLASSES, counts)))
    raw = args.images * 3 * args.image_size**2
    print(f"# raw = {args.images} x 3 x {args.image_size} x {args.image_size} = {raw / MB:.0f} MB")
    sys.stdout.flush()

    work = Path(tempfile.mkdtemp(prefix="vcr-scale-"))
    cache = work / "cache"
    env = {**os.environ, "VCR_HPO_CACHE": str(cache)}
    if args.epoch_only:
        os.environ["VCR_HPO_CACHE"] = str(cache)
        try:
            from hpo.data import load_dataset

            t0 = time.perf_counter()
            load_dataset(_cfg(args, str(folder)))
            print(f"# cache built in this process in {time.perf_counter() - t0:.0f} s")
            epoch_rows(args, folder)
            print(f"# {C.load_text()} after the run")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    try:
        # 1-2. the first trial's wait, cold then warm
        cold = run_wait(args, folder, work, "cold", env)
        files = sorted(cache.glob("*.imgs"))
        if len(files) != 1:
            raise SystemExit(f"expected one cache file, got {[f.name for f in files]}")
        (file,) = files
        warm = run_wait(args, folder, work, "warm", env)
        C.print_table(
            ["first trial (vcr-hpo run)", "to_first_batch_s", "data_preflight_s", "data_load_s"],
            [[name, round(r["first_batch_s"], 1), round(r.get("preflight_s", 0), 1),
              round(r.get("load_s", 0), 1)] for name, r in (("cold cache", cold),
                                                             ("warm cache", warm))])
        print(f"# cache build (cold data_load_s): {cold['load_s']:.0f} s = "
              f"{args.images / cold['load_s']:.0f} images/s over {args.cores} cores")
        # 3. disk
        st = file.stat()
        print(f"# disk: cache file {st.st_size / MB:.0f} MB ({st.st_blocks * 512 / MB:.0f} MB "
              f"allocated) = {st.st_size / raw:.4f} x raw; the JPEG folder is {on_disk / MB:.0f} MB")
        print()
        sys.stdout.flush()
        # 4. memory
        rows = []
        for n in args.workers:
            m = memory_round(args, folder, env, n, file)
            rows.append([n, round(m["load_s"], 2), round(m["read_s"], 1),
                         round(m["resident"] / MB), round(m["anon"] / MB), round(m["data"] / MB),
                         round(m["data"] / raw, 3), round(m["map_pss"] / MB),
                         round(m["map_rss"] / MB), round(m["pss"] / MB)])
        C.print_table(["readers", "load_s", "read_all_s", "page_cache_MB", "anon_grown_MB",
                       "data_MB", "data/raw", "sum_map_PSS_MB", "sum_map_RSS_MB",
                       "sum_PSS_MB"], rows)
        worst = max(r[6] for r in rows)
        print(f"# data memory per machine (page cache of the file + readers' private growth): "
              f"at most {worst:.3f} x raw (goal <= 1.1)")
        print()
        sys.stdout.flush()
        # 5. one epoch
        epoch_rows(args, folder)
        print(f"# {C.load_text()} after the run")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
