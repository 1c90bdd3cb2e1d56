"""Data memory per worker: RSS and PSS of 1 and of N processes loading the same cached data set.

Builds the synthetic set once into a fresh disk cache (one process, not measured), then for each
--workers value starts that many processes at once. Each loads the set through the library's
normal path (`hpo.data.load_dataset`, as a trial does), runs one training-like pass over it
(random batches -> augment -> normalise, then the val split in slices; no model) and waits. While
all of them are alive the parent reads each one's RSS (anonymous and file-backed parts) and PSS
(/proc/PID/smaps_rollup: shared pages divided among the processes that map them) and the
machine's used memory (MemTotal - MemAvailable, other agents' use included: read its change).
dRSS_load / dRSS_pass: RSS added by loading the set / by the end of the pass, over the process's
RSS after its imports (about 0.75 GB of torch and libraries, partly shared). Page cache holding a
mapped file counts as available memory in MemAvailable: the kernel can drop and re-read it.

Before/after: the children import `hpo` from PYTHONPATH, so the same script measures any checkout.

    PYTHONPATH=/work/main python bench/data_memory.py --images 3000 --image-size 224   # before
    PYTHONPATH=$PWD       python bench/data_memory.py --images 3000 --image-size 224   # after
"""

from __future__ import annotations

import argparse
import json
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


def _process(pid: int | str) -> dict[str, int]:
    status, rollup = C.proc_kb(f"/proc/{pid}/status"), C.proc_kb(f"/proc/{pid}/smaps_rollup")
    return {
        "rss": status["VmRSS"],
        "anon": status["RssAnon"],
        "file": status["RssFile"] + status.get("RssShmem", 0),
        "peak": status["VmHWM"],
        "pss": rollup["Pss"],
    }


def _used() -> int:
    m = C.proc_kb("/proc/meminfo")
    return m["MemTotal"] - m["MemAvailable"]


# --------------------------------------------------------------------------- worker


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)  # several of these share two cores
    from hpo.config import TrainConfig
    from hpo.data import load_dataset
    from hpo.train import augment, normalise

    start = _process("self")
    t0 = time.perf_counter()
    data = load_dataset(TrainConfig(synthetic_size=args.images, image_size=args.image_size))
    load_s = time.perf_counter() - t0
    loaded = _process("self")
    if args.build_only:
        print(json.dumps({"load_s": load_s, "start": start, "loaded": loaded}), flush=True)
        return
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data.train_labels), generator=gen)
    sink = 0.0
    for i in range(0, len(order) - args.batch + 1, args.batch):
        idx = order[i : i + args.batch]
        x = normalise(augment(data.train_images[idx], gen))
        sink += float(x[:, :, 0, 0].sum()) + float(data.train_labels[idx].sum())
    for i in range(0, len(data.val_labels), 256):
        sink += float(normalise(data.val_images[i : i + 256])[:, :, 0, 0].sum())
    report = {
        "load_s": load_s,
        "pass_s": time.perf_counter() - t0,
        "start": start,
        "loaded": loaded,
        "hpo": str(Path(sys.modules["hpo"].__file__).parent.parent),
        "sink": sink,
    }
    print(json.dumps(report), flush=True)
    sys.stdin.readline()  # stay alive until the parent has measured everyone


# --------------------------------------------------------------------------- parent


def _command(args: argparse.Namespace, *extra: str) -> list[str]:
    cmd = [sys.executable, __file__, "--child", "--images", str(args.images)]
    return cmd + ["--image-size", str(args.image_size), "--batch", str(args.batch), *extra]


def _spawn(args: argparse.Namespace, env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(_command(args, *extra), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env, text=True)


def _round(args: argparse.Namespace, env: dict[str, str], n: int) -> tuple[list, int, int]:
    before = _used()
    with C.held_processes(_command(args), n, env, timeout=60) as (kids, reports):  # all passed
        now = [_process(k.pid) for k in kids]
        used = _used()
    return [(r, m) for r, m in zip(reports, now)], before, used


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=3000)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return


    C.print_header("Data memory per worker: the same cached synthetic set in 1 and N processes")
    raw = args.images * 3 * args.image_size**2
    print(f"# {args.images} images at {args.image_size} px = {raw / MB:.0f} MB as uint8")
    cache = Path(tempfile.mkdtemp(prefix="vcr-datamem-"))
    env = {**os.environ, "VCR_HPO_CACHE": str(cache)}
    try:
        t0 = time.perf_counter()
        build = _spawn(args, env, "--build-only")
        built = json.loads(build.communicate(timeout=1800)[0])
        files = sorted(f.name for f in cache.iterdir())
        size = sum(f.stat().st_size for f in cache.iterdir())
        print(
            f"# cache built in {time.perf_counter() - t0:.0f} s by one process (peak RSS "
            f"{built['loaded']['peak'] / MB:.0f} MB): {size / MB:.0f} MB in {', '.join(files)}"
        )
        rows = []
        for n in args.workers:
            got, before, used = _round(args, env, n)
            for i, (rep, m) in enumerate(got):
                rows.append([
                    n, i, round(rep["load_s"], 1), round(rep["pass_s"], 1),
                    round((rep["loaded"]["rss"] - rep["start"]["rss"]) / MB),
                    round((m["rss"] - rep["start"]["rss"]) / MB),
                    round(m["rss"] / MB), round(m["anon"] / MB), round(m["file"] / MB),
                    round(m["pss"] / MB), round(m["peak"] / MB),
                ])
            pss = sum(m["pss"] for _, m in got)
            print(f"# {n} worker(s) from {got[0][0]['hpo']}: sum of PSS {pss / MB:.0f} MB, "
                  f"machine used {before / MB:.0f} -> {used / MB:.0f} MB "
                  f"(+{(used - before) / MB:.0f} MB)")
        C.print_table(
            ["workers", "proc", "load_s", "pass_s", "dRSS_load_MB", "dRSS_pass_MB", "RSS_MB", "anon_MB",
             "file_MB", "PSS_MB", "peak_MB"],
            rows,
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
