"""The `vcr-hpo` command line: parses arguments, builds objects, calls the library.

Each subcommand is a function registered with `@command(...)`; its `args` callback adds its
options. Usage and configuration errors print one line on stderr and exit 2; runtime errors
exit 1; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backbones.errors import ConfigError, UnknownNameError, VcrHpoError

__all__ = ["command", "main"]


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_COMMANDS: dict[str, _Command] = {}


def command(name: str, help: str, args: Callable[[argparse.ArgumentParser], None] = lambda p: None):
    """Register `fn(ns) -> exit code` as the subcommand `name`."""

    def deco(fn: Callable[[argparse.Namespace], int]):
        if name in _COMMANDS:
            raise ValueError(f"command {name!r} is already registered")
        _COMMANDS[name] = _Command(name, help, args, fn)
        return fn

    return deco


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str):
        raise _UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vcr-hpo", description="Hyperparameter search for vehicle-colour CNNs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd in _COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        cmd.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vcr-hpo` console script. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        ns = build_parser().parse_args(argv)
        if not ns.command:
            build_parser().print_help()
            return 2
        code = _COMMANDS[ns.command].run(ns)
        sys.stdout.flush()  # a closed pipe fails here, inside the handlers below, not at exit
        return code
    except _UsageError as exc:
        if debug:
            raise
        print(str(exc), file=sys.stderr)
        return 2
    except (ConfigError, UnknownNameError) as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except VcrHpoError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vcr-hpo status | head`: the reader left; no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # flush at exit can't fail
        return 141


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


# --------------------------------------------------------------------------- backbones


@command("backbones", "list registered backbones: family, channels and strides of c2..c5, parameters")
def _cmd_backbones(ns: argparse.Namespace) -> int:
    import torch

    from backbones import BACKBONES, create_backbone

    rows = []
    for name in BACKBONES.names():
        with torch.device("meta"):  # shapes and counts only: no weight init, no memory
            b = create_backbone(name)
        ch, st = b.get_feature_channels(), b.get_feature_strides()
        rows.append([
            name, BACKBONES.get(name).family,
            "/".join(str(ch[k]) for k in ch), "/".join(str(st[k]) for k in st),
            f"{b.num_params() / 1e6:.2f}M",
        ])
    _print_table(["name", "family", "channels c2/c3/c4/c5", "strides", "params"], rows)
    return 0


# --------------------------------------------------------------------------- validate


def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, metavar="FILE",
                   help="search-space YAML (a bare name is also looked up in search_spaces/)")


@command("validate", "check a search space and print its parameters, or every error", args=_validate_args)
def _cmd_validate(ns: argparse.Namespace) -> int:
    import json

    from .api import grid_note
    from .preflight import preflight
    from .space import SearchSpaceError, load_search_space

    try:
        space = load_search_space(ns.space)
    except SearchSpaceError as exc:
        if getattr(ns, "debug", False):
            raise
        for line in exc.errors:
            print(line, file=sys.stderr)
        if len(exc.errors) > 1:  # a single error stays a single line
            print(f"{len(exc.errors)} errors; nothing was written to any study", file=sys.stderr)
        return 2
    baseline = space.default_params() or {p.name: p.baseline() for p in space.params if p.enabled({})}
    preflight(space.config_for(baseline), space=space, where=str(space.source))  # this machine
    st = space.study
    objectives = ", ".join(f"{d} {m}" for d, m in zip(st.directions, st.metrics))
    print(f"space:    {space.source}")
    print(f"study:    {st.name}: {objectives}; n_trials {st.n_trials if st.n_trials else 'unlimited'}; "
          f"timeout {f'{st.timeout:g} s' if st.timeout else 'none'}")
    print(f"sampler:  {st.sampler.describe()}")
    print(f"pruner:   {st.pruner.describe() if st.pruner else 'none'}")
    def scalars(values: dict) -> str:  # YAML spelling: true/false/null, as in the file
        return ", ".join(f"{k}={json.dumps(v) if v is None or isinstance(v, bool) else v}"
                         for k, v in values.items())

    print(f"fixed:    {scalars(dict(space.fixed)) or '-'}")
    print(f"baseline: {scalars(space.default_params() or {}) or 'none (no defaults)'}")
    print(f"fingerprint: {space.fingerprint[:16]}")
    if note := grid_note(space, st.n_trials):
        print(note)
    print()
    _print_table(["name", "type", "range / choices", "log/step", "condition"], space.describe())
    return 0


# --------------------------------------------------------------------------- run, status, best, train, dashboard, report
# Heartbeat settings come from the environment so tests (and impatient users) can shorten them.

_RESUME_HINT = "resume with: "


def _env_seconds(name: str, default: int) -> int:
    from .api import env_seconds

    return env_seconds(name, default)


def _positive(kind: type, what: str):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value

    parse.__name__ = what
    return parse


def _workers(text: str):
    """`--workers N` or `--workers auto`."""
    if text == "auto":
        return "auto"
    try:
        return _positive(int, "workers")(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a number > 0 or auto, got {text!r}") from None


def _parse_sets(items: Sequence[str]) -> dict[str, object]:
    """`--set key=value` pairs; values are read as YAML scalars, then checked like TrainConfig fields."""
    import yaml

    from .config import check_field

    out: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set: must be key=value, got {item!r}. Write e.g. --set epochs=2")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        if isinstance(value, str):
            try:  # YAML 1.1 reads 1e-3 as a string; a number is what anyone means here
                value = float(value) if value.strip().lower() not in ("nan", "inf", "-inf") else value
            except ValueError:
                pass
        out[key] = check_field(key, value, where=f"--set {key}")
    return out


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, metavar="FILE",
                   help="search-space YAML (a bare name is also looked up in search_spaces/)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna RDB URL (default sqlite:///studies/<study>.db; postgresql://... for many machines)")
    p.add_argument("--study-name", metavar="NAME", help="default: study.name of the space")
    p.add_argument("--n-trials", type=_positive(int, "n_trials"), metavar="N",
                   help="finished (complete + pruned) trials the study should hold; a rerun tops up")
    p.add_argument("--timeout", type=_positive(float, "timeout"), metavar="S",
                   help="stop starting trials after S seconds of this run")
    p.add_argument("--data", metavar="D", help="synthetic, an ImageFolder directory or a .jsonl manifest")
    p.add_argument("--device", metavar="D", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=_workers, default=1, metavar="N",
                   help="N worker processes on one storage (the idle cores split between them); "
                        "auto: one per visible GPU, else one per idle core")
    p.add_argument("--gpus", metavar="IDS",
                   help="GPUs the workers use, e.g. 0,1,3 (default: every visible GPU); each "
                        "worker process gets its own CUDA_VISIBLE_DEVICES")
    p.add_argument("--workers-per-gpu", type=_positive(int, "workers_per_gpu"), metavar="K",
                   help="workers sharing one GPU (a large GPU and small models)")
    p.add_argument("--trial-isolation", choices=["none", "process"], default=None,
                   help="process: each trial in a fresh forked child (default: the space's "
                        "study.trial_isolation, else none)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a fixed TrainConfig field for every trial (repeatable)")
    p.add_argument("--allow-space-change", action="store_true",
                   help="resume even though the search space changed since the study started")
    _artifacts_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=_positive(int, "threads"), default=None, metavar="N",
                   help="torch CPU threads per worker (default: idle cores // workers, at least 1)")
    p.add_argument("--warm-start", metavar="SOURCE[:k]",
                   help="enqueue the top k (default 5) configs of an earlier study that fit this "
                        "space, once: NAME[:k] (in --storage, else studies/NAME.db), "
                        "URL#NAME[:k], or a best.yaml")


def _artifacts_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts", metavar="LOCATION",
                   help="checkpoints, kept weights and trial files: a folder, s3://bucket/prefix "
                        "or gs://bucket/prefix (default: the study's, else studies/<study>-artifacts)")


def _resume_command(ns: argparse.Namespace, storage: str, study_name: str) -> str:
    import shlex

    argv = ["vcr-hpo", "run", "--space", ns.space, "--storage", storage, "--study-name", study_name]
    for flag, value in (("--n-trials", ns.n_trials), ("--timeout", ns.timeout), ("--data", ns.data),
                        ("--device", ns.device)):
        if value is not None:
            argv += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    if ns.workers != 1:
        argv += ["--workers", str(ns.workers)]
    for flag, value in (("--gpus", ns.gpus), ("--workers-per-gpu", ns.workers_per_gpu),
                        ("--trial-isolation", ns.trial_isolation)):
        if value is not None:
            argv += [flag, str(value)]
    for item in ns.set:
        argv += ["--set", item]
    if ns.allow_space_change:
        argv.append("--allow-space-change")
    if ns.artifacts:
        argv += ["--artifacts", ns.artifacts]
    return shlex.join(argv)


def _run_overrides(ns: argparse.Namespace) -> dict[str, object]:
    from .config import check_field

    overrides = _parse_sets(ns.set)
    if ns.data is not None:
        overrides["data"] = check_field("data", ns.data, where="--data")
    if ns.device is not None:
        overrides["device"] = check_field("device", ns.device, where="--device")
    return overrides


@command("run", "run or resume a study: same command again resumes; --workers N for parallel",
         args=_run_args)
def _cmd_run(ns: argparse.Namespace) -> int:
    from .api import grid_note, plan_devices, plan_run, run_study
    from .console import summary_lines
    from .study import RunInterrupted

    plan = plan_run(ns.space, storage=ns.storage, study_name=ns.study_name, n_trials=ns.n_trials,
                    timeout=ns.timeout, overrides=_run_overrides(ns), artifacts=ns.artifacts,
                    warm_start=ns.warm_start if ns.worker_index == 0 else None)
    placements = plan_devices(plan, ns.workers, ns.gpus, ns.workers_per_gpu)  # before storage
    if ns.worker_index == 0 and any(p.gpu is not None for p in placements) and not ns.quiet:
        print("devices: " + "; ".join(p.describe() for p in placements), file=sys.stderr)
    if ns.worker_index == 0 and (note := grid_note(plan.space, plan.n_trials)):
        print(note, file=sys.stderr)
    if plan.warm_start is not None:
        from .warm_start import describe

        lines = describe(plan.warm_start)  # the first says what was enqueued, the rest warn
        print("\n".join(lines[1:] if ns.quiet else lines), file=sys.stderr)
    if len(placements) > 1 and plan.url.startswith("sqlite") and ns.worker_index == 0:
        print(f"warning: {len(placements)} workers share SQLite: fine on one machine; for "
              "several machines use a PostgreSQL --storage URL", file=sys.stderr)
    hint = _RESUME_HINT + _resume_command(ns, plan.url, plan.study_name)
    try:
        result = run_study(plan.space, plan=plan, storage=ns.storage, workers=ns.workers,
                           gpus=ns.gpus, workers_per_gpu=ns.workers_per_gpu,
                           trial_isolation=ns.trial_isolation,
                           allow_space_change=ns.allow_space_change, threads=ns.threads,
                           progress=not ns.quiet, worker_index=ns.worker_index)
    except RunInterrupted as exc:
        print(f"interrupted by {exc}: the running trial is marked interrupted and will be "
              f"retried; {hint}", file=sys.stderr)
        return exc.exit_code
    if not ns.quiet:
        print("\n".join(summary_lines(result.study)))
    if result.reason != "target reached" and not ns.quiet:
        print(result.detail)
    return 0


def _study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="URL", help="default: the files in studies/")
    p.add_argument("--study-name", metavar="NAME", help="default: every study in the storage")


def _storages(ns: argparse.Namespace) -> list[str]:
    from pathlib import Path

    from .study import check_storage_url, default_storage_url

    if ns.storage:
        return [check_storage_url(ns.storage)]
    if ns.study_name:
        url = default_storage_url(ns.study_name)
        if not Path(f"studies/{ns.study_name}.db").is_file():
            raise ConfigError(f"--study-name: no file studies/{ns.study_name}.db, got "
                              f"{ns.study_name!r}. Pass --storage URL or run the study first")
        return [url]
    files = sorted(Path("studies").glob("*.db"))
    if not files:
        raise ConfigError("--storage: no study files in studies/, got none. Pass --storage URL "
                          "or run `vcr-hpo run --space hyperparameters.yaml` first")
    return [f"sqlite:///{f}" for f in files]


def _open_existing(url: str):
    """Storage without heartbeats (reading must not fail anyone's trials); the file must exist."""
    from .study import build_storage, sqlite_path

    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise ConfigError(f"--storage: no such SQLite file, got {url!r}. Check the path")
    return build_storage(url, heartbeat_interval=None, grace_period=None)


def _load_one(ns: argparse.Namespace):
    """The one study `best`, `report` and `dashboard` act on."""
    import optuna

    urls = _storages(ns)
    found = []
    for url in urls:
        storage = _open_existing(url)
        names = [s.study_name for s in storage.get_all_studies()]
        if ns.study_name:
            if ns.study_name in names:
                found.append((url, storage, ns.study_name))
        else:
            found += [(url, storage, n) for n in names]
    if len(found) != 1:
        listing = ", ".join(f"{n} ({u})" for u, _, n in found) or "(none)"
        rule = "no such study" if not found else "several studies match"
        raise ConfigError(f"--study-name: {rule}, got {ns.study_name!r}. Studies: {listing}")
    url, storage, name = found[0]
    return url, optuna.load_study(study_name=name, storage=storage)


def _status_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument("--top", type=_positive(int, "top"), default=5, metavar="K", help="best K trials")


@command("status", "studies: trial counts by state, best, top K, orphaned RUNNING trials",
         args=_status_args)
def _cmd_status(ns: argparse.Namespace) -> int:
    from .console import format_params, format_table
    from .study import GRACE_PERIOD, study_status

    grace = _env_seconds("VCR_HPO_GRACE", GRACE_PERIOD)
    shown = 0
    for url in _storages(ns):
        storage = _open_existing(url)
        names = [s.study_name for s in storage.get_all_studies()]
        if ns.study_name:
            names = [n for n in names if n == ns.study_name]
        for name in names:
            st = study_status(storage, name, top=ns.top, grace_period=grace)
            shown += 1
            metrics = st.metric_names or tuple(f"value{i}" for i in range(len(st.directions)))
            counts = ", ".join(f"{n} {s.lower()}" for s, n in st.counts.items() if n)
            finished = st.counts.get("COMPLETE", 0) + st.counts.get("PRUNED", 0)
            target = f"/{st.target}" if st.target else ""
            print(f"study {name}  ({url})")
            infeasible = f" ({st.infeasible} infeasible: out of memory)" if st.infeasible else ""
            print(f"  {' '.join(f'{d} {m}' for d, m in zip(st.directions, metrics))}; "
                  f"finished {finished}{target}; {counts or 'no trials'}{infeasible}")
            if st.top:
                best = st.top[0]
                print(f"  best #{best.number}: "
                      + " ".join(f"{m}={v:.4f}" for m, v in zip(metrics, best.values))
                      + f"  {format_params(best.params)}")
                keys = sorted({k for t in st.top for k in t.params})
                rows = [[t.number, *t.values, *(t.params.get(k, "") for k in keys), _ran_on(t)]
                        for t in st.top]
                print(f"  top {len(st.top)}:")
                for line in format_table(["#", *metrics, *keys, "device"], rows):
                    print("    " + line)
            for number, age in st.orphans:
                when = "no heartbeat" if age is None else f"last heartbeat {age:.0f} s ago"
                print(f"  orphaned RUNNING trial #{number} ({when}): the next `vcr-hpo run` on this "
                      "study marks it FAIL and retries it")
            print()
    if not shown:
        raise ConfigError(f"--study-name: no such study, got {ns.study_name!r}. "
                          "Run `vcr-hpo status` without it to list the studies")
    return 0


def _ran_on(trial) -> str:
    """Where a trial ran: "GPU 3" (physical id, hpo.devices) or its device user attr."""
    gpu = trial.user_attrs.get("gpu")
    return f"GPU {gpu}" if gpu is not None else str(trial.user_attrs.get("device", "-"))


def _best_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument("--per", metavar="PARAM", help="one file per value of PARAM (e.g. backbone)")
    p.add_argument("-o", "--output", default="best.yaml", metavar="FILE",
                   help="config file for `vcr-hpo train --config` (default best.yaml); the "
                        "trial's final weights, when kept, go beside it as FILE.pt")
    _artifacts_arg(p)


@command("best", "export the best trial's TrainConfig as YAML (optionally best per backbone)",
         args=_best_args)
def _cmd_best(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .artifacts import artifact_store, study_location
    from .checkpoint import read_weights
    from .console import format_params
    from .export import best_per, best_trial, config_paths, trial_config, write_config

    url, study = _load_one(ns)
    store = artifact_store(url, study.study_name, study_location(study, url, ns.artifacts))
    if ns.per:
        chosen = best_per(study, ns.per)
        targets = config_paths(Path(ns.output), list(chosen))
    else:
        chosen = {None: best_trial(study)}
        targets = {None: Path(ns.output)}
    names = study.metric_names or ["value"]
    for key, trial in chosen.items():
        scores = " ".join(f"{n}={v:.4f}" for n, v in zip(names, trial.values))
        header = (f"vcr-hpo best: study {study.study_name} ({url}), trial #{trial.number}: {scores}\n"
                  f"train it with: vcr-hpo train --config {targets[key]}")
        weights = read_weights(store, study, trial.number, targets[key].with_suffix(".pt"))
        if weights is not None:
            header += f" --init-weights {weights}"
        path = write_config(trial_config(study, trial), targets[key], header=header)
        label = f"{ns.per}={key}: " if ns.per else ""
        print(f"{label}trial #{trial.number} {scores} -> {path}  ({format_params(trial.params)})")
        if weights is not None:
            print(f"{label}weights of trial #{trial.number} -> {weights}  (train from them with "
                  f"--init-weights {weights})")
        else:
            print(f"{label}no weights kept for trial #{trial.number} (only the top trials' are; "
                  "study.keep_weights): train starts from scratch")
    return 0


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE", help="a file written by `vcr-hpo best`")
    p.add_argument("--out", metavar="DIR", help="where model.pt, metrics.json and config.yaml go "
                                                "(default runs/<experiment_name>-<config stem>)")
    p.add_argument("--device", metavar="D", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field (e.g. --set epochs=20)")
    p.add_argument("--init-weights", metavar="FILE",
                   help="start from these weights (the .pt `vcr-hpo best` writes); default: scratch")


@command("train", "full training of an exported config; saves the model and its metrics",
         args=_train_args)
def _cmd_train(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .api import set_cpu_threads
    from .config import check_field
    from .export import read_config
    from .preflight import preflight

    cfg = read_config(Path(ns.config))
    changes = _parse_sets(ns.set)
    if ns.device is not None:
        changes["device"] = check_field("device", ns.device, where="--device")
    if changes:
        cfg = cfg.replace(**changes)
    preflight(cfg, overrides=changes, where=str(ns.config))
    init = None
    if ns.init_weights:
        from .checkpoint import load_init_weights

        init = load_init_weights(ns.init_weights, cfg)
    out = Path(ns.out) if ns.out else Path("runs") / f"{cfg.experiment_name}-{Path(ns.config).stem}"

    from .train import build_state, save_run, train_model

    def show(m) -> None:
        print(f"epoch {m.epoch + 1}/{cfg.epochs}: train_loss {m.train_loss:.4f}  val_loss "
              f"{m.val_loss:.4f}  val_acc {m.val_acc:.4f}  val_macro_f1 {m.val_macro_f1:.4f}  "
              f"({m.seconds:.1f} s, {m.images_per_s:.0f} img/s)", file=sys.stderr, flush=True)

    set_cpu_threads(cfg.device, None, 1)
    start = None
    if init is not None:
        start = build_state(cfg)
        try:
            start.model.load_state_dict(init)
        except RuntimeError as exc:  # shapes or keys differ: another head, classes or backbone
            first = str(exc).strip().splitlines()
            raise ConfigError(f"--init-weights: must fit the model {cfg.backbone}/{cfg.fusion} "
                              f"this config builds, got {first[-1].strip()[:160] if first else exc}"
                              f" in {ns.init_weights!r}. Use the weights `vcr-hpo best` wrote "
                              "with this config, or drop --init-weights") from None
        print(f"starting from {ns.init_weights}", file=sys.stderr)
    result = train_model(cfg, on_epoch=show, start=start)
    path = save_run(result, cfg, out)
    print(f"best epoch {result.best_epoch + 1}: val_acc {result.best.val_acc:.4f}  "
          f"val_macro_f1 {result.best.val_macro_f1:.4f} -> {path}/model.pt, metrics.json, config.yaml")
    return 0


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR",
                   help="a folder written by `vcr-hpo train` (model.pt, config.yaml, metrics.json)")
    p.add_argument("--images", required=True, metavar="DIR_OR_JSONL",
                   help="an image folder (class sub-folders give labels) or a .jsonl manifest")
    p.add_argument("-o", "--output", default="preds.csv", metavar="FILE",
                   help="CSV path,predicted,probability[,label,correct] (default preds.csv)")
    p.add_argument("--device", default="auto", metavar="D", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=_positive(int, "batch_size"), default=64, metavar="N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@command("predict", "predict the colour of images with a trained model; CSV out, accuracy when "
         "labelled", args=_predict_args)
def _cmd_predict(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .config import check_field
    from .predict import accuracy, list_images, load_trained, predict_images, write_predictions

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


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _dashboard_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (the dashboard has no authentication)")
    _artifacts_arg(p)


@command("dashboard", "optuna-dashboard on the study storage (127.0.0.1 unless --allow-remote)",
         args=_dashboard_args)
def _cmd_dashboard(ns: argparse.Namespace) -> int:
    if ns.host not in _LOOPBACK and not ns.allow_remote:
        raise ConfigError(f"--host: a non-loopback address exposes every study without "
                          f"authentication, got {ns.host!r}. Add --allow-remote if you mean it, or "
                          "use an SSH tunnel (ssh -L 8080:127.0.0.1:8080 host)")
    if not 0 < ns.port < 65536:
        raise ConfigError(f"--port: must lie in [1, 65535], got {ns.port}. Choose a free port")
    urls = _storages(ns)
    if len(urls) > 1:
        raise ConfigError(f"--storage: the dashboard serves one storage, got {len(urls)} files in "
                          f"studies/. Pass --storage or --study-name")
    if ns.host not in _LOOPBACK:
        print(f"warning: optuna-dashboard has no authentication; anyone who reaches "
              f"{ns.host}:{ns.port} can read and change these studies", file=sys.stderr)
    from optuna_dashboard import run_server

    storage = _open_existing(urls[0])
    store = _dashboard_store(ns, urls[0], storage)
    print(f"optuna-dashboard on http://{ns.host}:{ns.port}/dashboard  ({urls[0]}; artifacts "
          f"{store}); Ctrl-C stops it", file=sys.stderr, flush=True)
    run_server(storage, host=ns.host, port=ns.port, artifact_store=store)
    return 0


def _dashboard_store(ns: argparse.Namespace, url: str, storage):
    """The artifact store the dashboard serves: --artifacts, else the (one) study's location."""
    import optuna

    from .artifacts import artifact_store, check_location, study_location

    names = [s.study_name for s in storage.get_all_studies()]
    if ns.study_name:
        names = [n for n in names if n == ns.study_name]
    if ns.artifacts:
        return artifact_store(url, names[0] if names else "", check_location(ns.artifacts))
    locations = {n: study_location(optuna.load_study(study_name=n, storage=storage), url)
                 for n in names}
    if not locations:
        return None
    if len(set(locations.values())) > 1:
        print(f"warning: the studies of {url} keep artifacts in {len(set(locations.values()))} "
              f"places; the dashboard shows those of {names[0]} only. Pass --study-name or "
              "--artifacts", file=sys.stderr)
    return artifact_store(url, names[0], locations[names[0]])


def _proxy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", required=True, metavar="URL",
                   help="the database the workers share: postgresql://user:pass@host:5432/db")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; 0.0.0.0 for workers on other machines (no auth)")
    p.add_argument("--port", type=int, default=13000, help="default 13000")
    p.add_argument("--threads", type=int, default=16, metavar="N",
                   help="gRPC handler threads (each may hold one database connection); default 16")


@command("storage-proxy", "Optuna's gRPC storage proxy: many workers use --storage grpc://HOST:PORT",
         args=_proxy_args)
def _cmd_storage_proxy(ns: argparse.Namespace) -> int:
    from .proxy import serve_storage_proxy

    serve_storage_proxy(ns.storage, host=ns.host, port=ns.port, threads=ns.threads)
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    _study_args(p)
    p.add_argument("-o", "--out", default="report", metavar="DIR", help="default report/")
    p.add_argument("--format", choices=["png", "html", "both"], default="both",
                   help="png (matplotlib), html (plotly, interactive) or both (default; png "
                        "only when plotly is not installed)")


@command("report", "plots + index.html: history, importances, intermediate values, best "
         "trial's confusion matrix, best per backbone, accuracy vs size/latency (Pareto), "
         "parallel coordinates", args=_report_args)
def _cmd_report(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from .report import html_available, write_full_report

    formats = ("png", "html") if ns.format == "both" else (ns.format,)
    if ns.format == "both" and not html_available():
        formats = ("png",)
        print("note: HTML plots skipped: plotly is not installed (pip install plotly)",
              file=sys.stderr)
    _, study = _load_one(ns)
    report = write_full_report(study, Path(ns.out), formats=formats)
    for path in report.files:
        print(path)
    print(report.index)
    for name, why in report.skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- spaces


def _spaces_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--copy", metavar="NAME", help="copy the shipped space NAME as a starting point")
    p.add_argument("dest", nargs="?", metavar="DEST",
                   help="with --copy: the new file or a folder (default: NAME here); never overwrites")


@command("spaces", "list the search spaces shipped with vcr-hpo, or copy one (--copy NAME [DEST])",
         args=_spaces_args)
def _cmd_spaces(ns: argparse.Namespace) -> int:
    from .space import copy_shipped_space, shipped_spaces

    if ns.copy is None:
        if ns.dest is not None:
            raise ConfigError(f"DEST: only with --copy NAME, got {ns.dest!r}. "
                              f"Write vcr-hpo spaces --copy NAME {ns.dest}")
        _print_table(["name", "description"], [(s.name, s.description) for s in shipped_spaces()])
        print("\nuse one by name (vcr-hpo run --space NAME), or copy it: vcr-hpo spaces --copy NAME")
        return 0
    path = copy_shipped_space(ns.copy, ns.dest)
    print(f"{path}: copied from the shipped {ns.copy}; edit it, then vcr-hpo validate --space {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
