"""Reading a study: `status`, `best` (config and weights out) and `report` (plots)."""

from __future__ import annotations

import argparse
import sys

from ..attrs import DEVICE, GPU
from ..errors import ConfigError
from ._common import artifacts_arg, load_one, open_existing, positive, storages, study_args
from ._registry import command


def _env_seconds(name: str, default: int) -> int:
    """Heartbeat settings come from the environment so tests (and impatient users) can shorten them."""
    from ..run.api import env_seconds

    return env_seconds(name, default)


def _status_args(p: argparse.ArgumentParser) -> None:
    study_args(p)
    p.add_argument("--top", type=positive(int, "top"), default=5, metavar="K", help="best K trials")


@command("status", "studies: trial counts by state, best, top K, orphaned RUNNING trials",
         args=_status_args)
def _cmd_status(ns: argparse.Namespace) -> int:
    from ..run.console import format_params, format_table
    from ..study import GRACE_PERIOD, study_status
    from ..trial.record_store import storage_default_comparison

    grace = _env_seconds("VCR_HPO_GRACE", GRACE_PERIOD)
    shown = 0
    for url in storages(ns):
        storage = open_existing(url)
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
                print("  " + storage_default_comparison(storage, st.study_id, best,
                                                        metrics[0] if st.metric_names else None))
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
    """Where a trial ran: "GPU 3" (physical id, hpo.run.devices) or its device user attr."""
    gpu = trial.user_attrs.get(GPU)
    return f"GPU {gpu}" if gpu is not None else str(trial.user_attrs.get(DEVICE, "-"))


def _best_args(p: argparse.ArgumentParser) -> None:
    study_args(p)
    p.add_argument("--per", metavar="PARAM", help="one file per value of PARAM (e.g. backbone)")
    p.add_argument("-o", "--output", default="best.yaml", metavar="FILE",
                   help="config file for `vcr-hpo train --config` (default best.yaml); the "
                        "trial's final weights, when kept, go beside it as FILE.pt")
    artifacts_arg(p)


@command("best", "export the best trial's TrainConfig as YAML (optionally best per backbone)",
         args=_best_args)
def _cmd_best(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from ..outputs.configs import best_per, chosen_trial, config_paths, trial_config, write_config
    from ..run.console import format_params
    from ..trial.artifacts import artifact_store, study_location
    from ..trial.checkpoint import read_weights
    from ..trial.record_store import study_default_comparison

    url, study = load_one(ns)
    store = artifact_store(url, study.study_name, study_location(study, url, ns.artifacts))
    if ns.per:
        chosen = best_per(study, ns.per)
        targets = config_paths(Path(ns.output), list(chosen))
    else:
        trial, why = chosen_trial(study, store=store)
        if why is not None:
            print(f"study.choose: cheapest_within_1se -> {why}")
        chosen = {None: trial}
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
        print(f"{label}{study_default_comparison(study, trial, store=store)}")
        if weights is not None:
            print(f"{label}weights of trial #{trial.number} -> {weights}  (train from them with "
                  f"--init-weights {weights})")
        else:
            print(f"{label}no weights kept for trial #{trial.number} (only the top trials' are; "
                  "study.keep_weights): train starts from scratch")
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    study_args(p)
    p.add_argument("-o", "--out", default="report", metavar="DIR", help="default report/")
    p.add_argument("--format", choices=["png", "html", "both"], default="both",
                   help="png (matplotlib), html (plotly, interactive) or both (default; png "
                        "only when plotly is not installed)")


@command("report", "plots + index.html: history, importances, intermediate values, best "
         "trial's confusion matrix, best per backbone, accuracy vs size/latency (Pareto), "
         "parallel coordinates", args=_report_args)
def _cmd_report(ns: argparse.Namespace) -> int:
    from pathlib import Path

    from ..report import Format, html_available, write_full_report

    formats: tuple[Format, ...] = ("png", "html") if ns.format == "both" else (ns.format,)
    if ns.format == "both" and not html_available():
        formats = ("png",)
        print("note: HTML plots skipped: plotly is not installed (pip install plotly)",
              file=sys.stderr)
    _, study = load_one(ns)
    report = write_full_report(study, Path(ns.out), formats=formats)
    for path in report.files:
        print(path)
    print(report.index)
    print(report.vs_default, file=sys.stderr)  # stdout lists files only (scripts read it)
    for name, why in report.skipped.items():
        print(f"skipped {name}: {why}", file=sys.stderr)
    return 0
