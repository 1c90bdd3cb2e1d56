"""Using a config and its model: `train` (full training), `export` (ONNX, TorchScript), `predict`."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ._common import parse_sets, positive
from ._registry import command


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE", help="a file written by `vcr-hpo best`")
    p.add_argument("--out", metavar="DIR", help="where model.pt, metrics.json and config.yaml go "
                                                "(default runs/<experiment_name>-<config stem>)")
    p.add_argument("--device", metavar="D", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field (e.g. --set epochs=20)")
    p.add_argument("--init-weights", metavar="FILE",
                   help="start from these weights (the .pt `vcr-hpo best` writes); default: scratch")
    p.add_argument("--all-data", action="store_true",
                   help="train on the training and validation images together, for the config's "
                        "epochs (the last step after model selection; no held-out score)")


@command("train", "full training of an exported config; saves the model and its metrics",
         args=_train_args)
def _cmd_train(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from ..config import check_field
    from ..outputs.configs import read_config
    from ..run.api import set_cpu_threads
    from ..run.preflight import preflight

    cfg = read_config(Path(ns.config))
    changes = parse_sets(ns.set)
    if ns.device is not None:
        changes["device"] = check_field("device", ns.device, where="--device")
    if changes:
        cfg = cfg.replace(**changes)
    preflight(cfg, overrides=changes, where=str(ns.config))
    init = None
    if ns.init_weights:
        from ..trial.checkpoint import load_init_weights

        init = load_init_weights(ns.init_weights, cfg)
    stem = f"{cfg.experiment_name}-{Path(ns.config).stem}{'-all-data' if ns.all_data else ''}"
    out = Path(ns.out) if ns.out else Path("runs") / stem

    from ..data import load_dataset
    from ..train import build_state, save_run, train_model

    def show(m) -> None:
        scores = ("(all data, no validation)" if ns.all_data else
                  f"val_loss {m.val_loss:.4f}  val_acc {m.val_acc:.4f}  "
                  f"val_macro_f1 {m.val_macro_f1:.4f}")
        print(f"epoch {m.epoch + 1}/{cfg.epochs}: train_loss {m.train_loss:.4f}  {scores}  "
              f"({m.seconds:.1f} s, {m.images_per_s:.0f} img/s)", file=sys.stderr, flush=True)

    set_cpu_threads(cfg.device, None, 1)
    data = None
    if ns.all_data:
        data = load_dataset(cfg, all_data=True)
        note = (f"; max_train_samples={cfg.max_train_samples} does not apply"
                if cfg.max_train_samples is not None else "")
        print(f"all data: training on all {len(data.train_labels)} images (train and val "
              f"together) for {cfg.epochs} epochs, no held-out score{note}", file=sys.stderr)
    start = None
    if init is not None:
        start = build_state(cfg, data=data)
        try:
            start.model.load_state_dict(init)
        except RuntimeError as exc:  # shapes or keys differ: another head, classes or backbone
            first = str(exc).strip().splitlines()
            raise ConfigError(f"--init-weights: must fit the model {cfg.backbone}/{cfg.fusion} "
                              f"this config builds, got {first[-1].strip()[:160] if first else exc}"
                              f" in {ns.init_weights!r}. Use the weights `vcr-hpo best` wrote "
                              "with this config, or drop --init-weights") from None
        print(f"starting from {ns.init_weights}", file=sys.stderr)
    result = train_model(cfg, on_epoch=show, start=start, data=data)
    path = save_run(result, cfg, out)
    if ns.all_data:
        print(f"trained {cfg.epochs} epochs on all {result.info.num_train} images (all data, no "
              f"validation) -> {path}/model.pt, metrics.json, config.yaml")
        return 0
    print(f"best epoch {result.best_epoch + 1}: val_acc {result.best.val_acc:.4f}  "
          f"val_macro_f1 {result.best.val_macro_f1:.4f} -> {path}/model.pt, metrics.json, config.yaml")
    return 0


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR_OR_FILE",
                   help="a folder written by `vcr-hpo train` (model.pt, config.yaml, metrics.json)"
                        " or a file `vcr-hpo export` wrote (.onnx, .torchscript.pt; CPU)")
    p.add_argument("--images", required=True, metavar="DIR_OR_JSONL",
                   help="an image folder (class sub-folders give labels) or a .jsonl manifest")
    p.add_argument("-o", "--output", default="preds.csv", metavar="FILE",
                   help="CSV path,predicted,probability[,label,correct] (default preds.csv)")
    p.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=positive(int, "batch_size"), default=64, metavar="N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@command("predict", "predict the colour of images with a trained model; CSV out, accuracy when "
         "labelled", args=_predict_args)
def _cmd_predict(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from ..config import check_field
    from ..outputs.predict import (
        accuracy,
        list_images,
        load_trained,
        predict_images,
        write_predictions,
    )

    device = check_field("device", ns.device, where="--device")
    trained = load_trained(Path(ns.model), device=device)
    items = list_images(Path(ns.images), trained.class_names)
    preds = predict_images(trained, items, batch_size=ns.batch_size, progress=not ns.quiet)
    path = write_predictions(preds, Path(ns.output))
    right, labelled = accuracy(preds)
    line = f"{len(preds)} images -> {path}"
    if labelled:
        line += f"; accuracy {right / labelled:.4f} ({right}/{labelled} labelled)"
    print(line)
    return 0


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR",
                   help="a folder written by `vcr-hpo train` (model.pt, config.yaml, metrics.json)")
    p.add_argument("--format", required=True, metavar="NAME",
                   help="onnx (needs the extra vcr-hpo[onnx]) or torchscript")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="the exported file (default DIR/model.onnx or DIR/model.torchscript.pt);"
                        " its metadata goes beside it as FILE.json")
    p.add_argument("--images", metavar="DIR_OR_JSONL",
                   help="images for the parity check (default: the model's own data)")
    p.add_argument("--tolerance", type=positive(float, "tolerance"), default=None, metavar="X",
                   help="largest max |logit difference| the parity check accepts (default 1e-4,"
                        " fp32)")


@command("export", "export a trained model to ONNX or TorchScript, with parity check, measured "
         "latency and metadata", args=_export_args)
def _cmd_export(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from ..outputs.model_export import PARITY_TOLERANCE, export_model

    res = export_model(Path(ns.model), ns.format, Path(ns.output) if ns.output else None,
                       images=Path(ns.images) if ns.images else None,
                       tolerance=PARITY_TOLERANCE if ns.tolerance is None else ns.tolerance,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    par, lat = res.metadata["parity"], res.metadata["latency"]
    for r in lat["runs"]:
        print(f"latency batch {r['batch']:>2}, {r['threads']} thread(s): p50 {r['p50_ms']:.2f} ms"
              f"  p95 {r['p95_ms']:.2f} ms  ({r['p50_ms_per_image']:.2f} ms/image, "
              f"{r['reps']} runs)", file=sys.stderr)
    print(f"{res.metadata['format']} -> {res.path} (+ {res.metadata_path.name}); parity: max "
          f"|logit difference| {par['max_abs_diff']:.2g} <= {par['tolerance']:g} on "
          f"{par['batch']} images")
    return 0
