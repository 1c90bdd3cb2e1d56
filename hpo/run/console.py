"""Terminal output of the runner: the progress bar on stderr and the end-of-run summary."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..attrs import FAIL_REASON, GPU, INFEASIBLE
from ..metrics import rank_trials
from ..trial.record_store import study_default_comparison

__all__ = ["Progress", "format_params", "format_table", "summary_lines"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def format_params(params: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    return out


#: One status line: finished/target trials, bar, times, then the running epoch and the best.
_FORMAT = "{n_fmt}/{total_fmt} trials |{bar:20}| [{elapsed}<{remaining}{postfix}]"


class Progress:
    """A tqdm bar on stderr: finished/target trials, the running trial's epoch, the best so far.

    On a terminal the bar redraws in place; otherwise (logs, pipes) tqdm's line is printed once
    per finished trial, with the trial's state and any fail reason. `enabled=False` (--quiet)
    prints nothing.
    """

    def __init__(self, *, target: int, metric: str, maximize: bool, finished: int = 0,
                 best: tuple[int, float] | None = None, epochs: int | None = None,
                 stream: TextIO | None = None, enabled: bool = True) -> None:
        from tqdm import tqdm

        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.target, self.metric, self.maximize = target, metric, maximize
        self.finished, self.best, self.epochs = finished, best, epochs
        self.current = ""
        self._start = time.monotonic()
        self._bar = tqdm(total=target, initial=finished, file=self.stream, disable=not self.tty,
                         bar_format=_FORMAT, dynamic_ncols=True, leave=True, mininterval=0.2)

    def _postfix(self) -> str:
        best = f"best {self.best[1]:.4f} (#{self.best[0]})" if self.best else "best -"
        return " | ".join([self.current, best] if self.current else [best])

    def line(self) -> str:
        """The bar as one line of text (what a log gets)."""
        from tqdm import tqdm

        return tqdm.format_meter(min(self.finished, self.target), self.target,
                                 time.monotonic() - self._start, bar_format=_FORMAT,
                                 postfix=self._postfix(), ncols=None)

    def _draw(self) -> None:
        if self.tty:
            self._bar.n = min(self.finished, self.target)
            self._bar.set_postfix_str(self._postfix(), refresh=True)

    def epoch(self, trial_number: int, metrics: Any) -> None:
        """Objective callback: after each epoch of the running trial."""
        if not self.enabled:
            return
        total = f"/{self.epochs}" if self.epochs else ""
        value = getattr(metrics, self.metric, None)
        shown = f" {self.metric} {value:.4f}" if isinstance(value, float) else ""
        self.current = f"trial {trial_number} epoch {metrics.epoch + 1}{total}{shown}"
        self._draw()

    def _better(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best[1] if self.maximize else value < self.best[1]

    def trial(self, trial: FrozenTrial) -> None:
        """Run-loop callback: after each trial of this process."""
        if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            self.finished += 1
        infeasible = trial.user_attrs.get(INFEASIBLE)
        if (trial.state == TrialState.COMPLETE and trial.values and not infeasible
                and self._better(trial.values[0])):
            self.best = (trial.number, trial.values[0])
        self.current = ""
        if not self.enabled:
            return
        if self.tty:
            self._draw()
            return
        value = f" {self.metric}={trial.values[0]:.4f}" if trial.values else ""
        failed = trial.state == TrialState.FAIL or infeasible
        reason = trial.user_attrs.get(FAIL_REASON) if failed else None
        why = f" ({reason})" if reason else ""
        state = "INFEASIBLE" if infeasible else trial.state.name
        gpu = trial.user_attrs.get(GPU)
        where = f" on GPU {gpu}" if gpu is not None else ""
        print(f"{self.line()} | trial {trial.number} {state}{value}{where}{why}",
              file=self.stream, flush=True)

    def poll(self, finished: int, best: tuple[int, float] | None, running: int) -> None:
        """Multi-worker mode: the parent redraws from storage counts."""
        changed = (finished, best) != (self.finished, self.best)
        self.finished, self.best = finished, best
        self.current = f"{running} running"
        if not self.enabled:
            return
        if self.tty:
            self._draw()
        elif changed:
            print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        self._bar.close()


def _choice(study: optuna.Study) -> str | None:
    """Why `vcr-hpo best` exports the trial it does, under study.choose other than best."""
    from ..outputs.configs import chosen_trial

    try:
        return chosen_trial(study)[1]
    except Exception:  # noqa: BLE001 - the summary informs, it never fails a run
        return None


def summary_lines(study: optuna.Study, *, top: int = 5, per: str = "backbone") -> list[str]:
    """End-of-run summary: counts, the best trial and how it compares with the default (a paired
    interval, `hpo.paired`), the top `top`, the best per backbone."""
    trials = study.get_trials(deepcopy=False)
    counts = {s: 0 for s in TrialState}
    for t in trials:
        counts[t.state] += 1
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    lines = [(
        f"study {study.study_name}: {counts[TrialState.COMPLETE]} complete, "
        f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed, "
        f"{counts[TrialState.RUNNING]} running, {counts[TrialState.WAITING]} waiting"
        + (f" ({n} complete but infeasible: out of memory)"
           if (n := sum(1 for t in trials if t.user_attrs.get(INFEASIBLE))) else "")
    )]
    ranked = rank_trials(trials, study.directions)
    if not ranked:
        return lines + ["no COMPLETE trial yet"]
    best = ranked[0]
    scores = " ".join(f"{n}={v:.4f}" for n, v in zip(names, best.values))
    lines += [f"best trial #{best.number}: {scores}", f"  {format_params(best.params)}",
              f"  {study_default_comparison(study, best)}"]
    why = _choice(study)
    if why is not None:
        lines += [f"to train (study.choose: cheapest_within_1se): {why}"]
    lines += ["", f"top {min(top, len(ranked))}:"]
    keys = sorted({k for t in ranked[:top] for k in t.params})
    rows = [[t.number, *(t.values), *(t.params.get(k, "") for k in keys)] for t in ranked[:top]]
    lines += ["  " + r for r in format_table(["#", *names, *keys], rows)]
    groups: dict[Any, FrozenTrial] = {}
    for t in ranked:
        if per in t.params:
            groups.setdefault(t.params[per], t)
    if len(groups) > 1 or (groups and len(ranked) > 1):
        lines += ["", f"best per {per}:"]
        rows = [[k, t.number, t.values[0]] for k, t in groups.items()]
        lines += ["  " + r for r in format_table([per, "#", names[0]], rows)]
    return lines
