"""Shared bench helpers: command line, conditions, tables, spaces, /proc rows, child processes."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "ROOT",
    "TrialRecord",
    "algorithm_spec",
    "conditions",
    "format_table",
    "held_processes",
    "load_text",
    "print_header",
    "print_table",
    "proc_kb",
    "run_study_loop",
    "shipped_space",
    "tiny_overrides",
    "warm_up",
    "with_study",
]

ROOT = Path(__file__).resolve().parent.parent


def load_text() -> str:
    """The 1-, 5- and 15-minute load averages: wall times on a shared machine need them beside."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}/{fifteen:.2f}"


def conditions() -> str:
    """One line on the machine a figure was measured on."""
    import optuna
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()}: {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__} "
            f"({torch.get_num_threads()} thread(s)), optuna {optuna.__version__}, python "
            f"{platform.python_version()}, {load_text()}")


def print_header(title: str) -> None:
    """The exact command line that produced the figures below it, then the conditions."""
    script = os.path.relpath(sys.argv[0], os.getcwd()) if sys.argv and sys.argv[0] else "?"
    print(f"# {title}")
    print(f"$ python {shlex.join([script, *sys.argv[1:]])}")
    print(f"# {conditions()}")
    sys.stdout.flush()


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Columns padded to width; numbers right-aligned. The smoke test parses this shape."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    numeric = [all(_is_number(r[i]) for r in rows) if rows else False for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    print("\n".join(format_table(headers, rows)))
    sys.stdout.flush()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


@contextmanager
def held_processes(cmd: Sequence[str], n: int, env: Mapping[str, str], *,
                   timeout: float) -> Iterator[tuple[list[subprocess.Popen], list[dict]]]:
    """Start `n` processes of `cmd` at once and hold them while the block measures them.

    Each process prints one JSON line and then waits for a line on its stdin. Yields
    (processes, their JSON lines); after the block each gets its line and is waited for
    (`timeout` s each).
    """
    kids = [subprocess.Popen(list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             env=dict(env), text=True) for _ in range(n)]
    try:
        yield kids, [json.loads(k.stdout.readline()) for k in kids]
    finally:
        for k in kids:
            if k.poll() is None:
                k.stdin.write("\n")
                k.stdin.flush()
        for k in kids:
            k.wait(timeout=timeout)


def proc_kb(path: str) -> dict[str, int]:
    """The 'Name:  123 kB' rows of a /proc file (status, meminfo, smaps_rollup), in bytes."""
    out = {}
    with open(path) as f:
        for line in f:
            key, sep, rest = line.partition(":")
            parts = rest.split()
            if sep and len(parts) == 2 and parts[1] == "kB":
                out[key] = int(parts[0]) * 1024
    return out


def shipped_space(name: str):
    """A search space shipped in `search_spaces/`, parsed by the project's parser."""
    from hpo.space import load_search_space

    return load_search_space(ROOT / "search_spaces" / name)


def algorithm_spec(kind: str, text: str, flag: str):
    """A sampler or pruner spec from a YAML flow mapping, checked like a space's study block;
    a bad one ends the bench with one line naming `flag` (the command-line option)."""
    import yaml

    from hpo.algorithms import canonical_algorithm_name, check_algorithm_args
    from hpo.space import AlgorithmSpec

    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or "type" not in raw:
        example = "{type: TPE, multivariate: true}" if kind == "sampler" else \
            "{type: MedianPruner, n_warmup_steps: 2}"
        raise SystemExit(f"{flag}: a mapping with a type, got {text!r}. Write e.g. \"{example}\"")
    args = {k: v for k, v in raw.items() if k != "type"}
    name = canonical_algorithm_name(kind, str(raw["type"]))
    problems = check_algorithm_args(kind, name, args)
    if problems:
        p = problems[0]
        raise SystemExit(f"{flag}: {p.arg or 'type'}: {p.rule}. {p.fix}")
    return AlgorithmSpec(name, args)


#: study keys that make every trial train the config's epochs, with no start-up (portfolio or
#: the default's neighbours) before the sampler: benches that compare samplers or pruners at
#: n trials x e epochs set them
FIXED_LENGTH: dict[str, Any] = {"trial_length": "epochs", "portfolio": 0, "neighbours": 0}


def with_study(space, **changes: Any):
    """`space` with its study block changed (pruner, sampler, n_trials): a frozen copy."""
    return dataclasses.replace(space, study=dataclasses.replace(space.study, **changes))


def tiny_overrides(*, epochs: int, image_size: int, train: int, val: int) -> dict[str, Any]:
    """Fixed TrainConfig fields that shrink a shipped space to a bench run on this CPU."""
    total = train + val
    return {"epochs": epochs, "image_size": image_size, "synthetic_size": total,
            "val_fraction": round(val / total, 6), "max_train_samples": train, "device": "auto"}


def warm_up(space, overrides: Mapping[str, Any]) -> None:
    """Draw the dataset and build each searched backbone once, so the first timed run is not
    charged for what every later run gets from a cache (data, lazy imports, kernels)."""
    from backbones import create_backbone
    from hpo.data import load_dataset

    cfg = space.config_for(space.baseline(), overrides)  # bad overrides: ConfigError before any trial
    load_dataset(cfg)
    names = {cfg.backbone}
    if any(p.name == "backbone" for p in space.params):
        names |= set(space.param("backbone").choices or ())
    for name in sorted(names):
        create_backbone(name)


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """What one finished trial cost and scored, in the order the study ran it."""

    number: int
    state: str
    value: float | None
    epochs: int  # epochs trained = values reported to the pruner
    seconds: float  # claim + train + tell, as the runner spends it
    curve: tuple[float, ...] = ()  # the reported metric after each epoch


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna

    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(old)


def run_study_loop(space, url: str, *, overrides: Mapping[str, Any], max_trials: int,
                   stop=None, name: str = "bench", on_trial=None) -> list[TrialRecord]:
    """Run `space` through `hpo.run_study`, the engine `vcr-hpo run` calls.

    Args:
        url: storage URL.
        max_trials: finished trials (complete + pruned) after which the run stops.
        stop: `stop(records) -> bool`, asked after each trial; True ends the run early.
        on_trial: `on_trial(study, frozen_trial)`, called after each trial before `stop`
            (the running study: its params, user attrs and artifact store).

    Returns:
        One record per trial, in the order they ran; `seconds` spans from the end of the
        previous trial (or the study's opening) to the end of this one: claim + train + tell.

    Raises:
        RuntimeError: a trial failed (a bench figure over failed trials would mislead).
    """
    import torch

    import hpo
    from hpo.attrs import FAIL_REASON

    records: list[TrialRecord] = []
    last = [time.perf_counter()]

    def record(study, frozen) -> None:
        if frozen.state.name == "FAIL":
            reason = frozen.user_attrs.get(FAIL_REASON)
            raise RuntimeError(f"trial {frozen.number} failed: {reason}")
        records.append(TrialRecord(
            number=frozen.number, state=frozen.state.name,
            value=frozen.value if frozen.state.name == "COMPLETE" else None,
            epochs=len(frozen.intermediate_values), seconds=time.perf_counter() - last[0],
            curve=tuple(v for _, v in sorted(frozen.intermediate_values.items()))))
        if on_trial is not None:
            on_trial(study, frozen)
        last[0] = time.perf_counter()  # what on_trial spends is no trial's
        if stop is not None and stop(records):
            study.stop()

    with _quiet_optuna():
        hpo.run_study(space, storage=url, study_name=name, n_trials=max_trials,
                      overrides=dict(overrides), callbacks=[record],
                      threads=torch.get_num_threads())
    return records
