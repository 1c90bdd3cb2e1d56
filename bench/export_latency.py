"""Parity and CPU latency of exported models at 224 px: `vcr-hpo train`, then `vcr-hpo export`.

Trains each backbone briefly on the synthetic set (the numbers here are about the export, not
the accuracy), exports it to ONNX and TorchScript, and writes one table of the parity and latency
each export recorded in its metadata, plus those metadata blocks as JSON.

    nice -n 5 python bench/export_latency.py   # ~10 min on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

from hpo.cli import main

RESULTS = Path(__file__).resolve().parent / "results"


def run(backbones: list[str], size: int, out: Path) -> None:
    rows, blocks = [], {}
    with tempfile.TemporaryDirectory(prefix="vcr-export-bench-") as tmp:
        for backbone in backbones:
            config = Path(tmp) / f"{backbone}.yaml"
            config.write_text(yaml.safe_dump({
                "backbone": backbone, "image_size": size, "synthetic_size": 160, "epochs": 1,
                "batch_size": 16, "lr": 0.001, "scheduler": "none", "device": "cpu"}))
            folder = Path(tmp) / backbone
            assert main(["train", "--config", str(config), "--out", str(folder)]) == 0
            for fmt in ("onnx", "torchscript"):
                assert main(["export", "--model", str(folder), "--format", fmt]) == 0
                meta_file = next(folder.glob(f"model.*{'onnx' if fmt == 'onnx' else 'pt'}.json"))
                meta = json.loads(meta_file.read_text())
                blocks[f"{backbone}/{fmt}"] = {k: meta[k] for k in ("parity", "latency")}
                p = meta["parity"]
                for r in meta["latency"]["runs"]:
                    rows.append(f"| {backbone} | {fmt} | {p['max_abs_diff']:.2g} | "
                                f"{r['batch']} | {r['threads']} | {r['p50_ms']:.1f} | "
                                f"{r['p95_ms']:.1f} | {r['p50_ms_per_image']:.2f} | "
                                f"{meta['latency']['load_average_1min']} |")
    head = ("| backbone | format | parity max abs diff | batch | threads | p50 ms | p95 ms | "
            "p50 ms/image | load avg |\n|---|---|---|---|---|---|---|---|---|")
    text = (f"# {' '.join(sys.argv)}\n# {size} px, fp32, CPU; parity on 32 synthetic images\n"
            + head + "\n" + "\n".join(rows) + "\n")
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(blocks, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "mobilenetv3_large_100"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("-o", "--out", type=Path, default=RESULTS / "export_latency.txt")
    ns = ap.parse_args()
    run(ns.backbones, ns.size, ns.out)
