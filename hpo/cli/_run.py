"""`vcr-hpo run`: plan once (workers placed on devices), print its notes, run or resume it, print the summary."""

from __future__ import annotations

import argparse
import sys

from ._common import artifacts_arg, positive, read_sets
from ._registry import command

_RESUME_HINT = "resume with: "


def _workers(text: str):
    """`--workers N` or `--workers auto`."""
    if text == "auto":
        return "auto"
    try:
        return positive(int, "workers")(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be a number > 0 or auto, got {text!r}") from None


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, metavar="FILE",
                   help="search-space YAML (a bare name is also looked up in search_spaces/)")
    p.add_argument("--storage", metavar="URL",
                   help="Optuna RDB URL (default sqlite:///studies/<study>.db; postgresql://... for many machines)")
    p.add_argument("--study-name", metavar="NAME", help="default: study.name of the space")
    p.add_argument("--n-trials", type=positive(int, "n_trials"), metavar="N",
                   help="finished (complete + pruned) trials the study should hold; a rerun tops up")
    p.add_argument("--timeout", type=positive(float, "timeout"), metavar="S",
                   help="stop starting trials after S seconds of this run")
    p.add_argument("--data", metavar="D", help="synthetic, an ImageFolder directory or a .jsonl manifest")
    p.add_argument("--device", metavar="D", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=_workers, default=1, metavar="N",
                   help="N worker processes on one storage (the idle cores split between them); "
                        "auto: one per visible GPU, else one per idle core")
    p.add_argument("--gpus", metavar="IDS",
                   help="GPUs the workers use, e.g. 0,1,3 (default: every visible GPU); each "
                        "worker process gets its own CUDA_VISIBLE_DEVICES")
    p.add_argument("--workers-per-gpu", type=positive(int, "workers_per_gpu"), metavar="K",
                   help="workers sharing one GPU (a large GPU and small models)")
    p.add_argument("--trial-isolation", choices=["none", "process"], default=None,
                   help="process: each trial in a fresh forked child (default: the space's "
                        "study.trial_isolation, else none)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a fixed TrainConfig field for every trial (repeatable)")
    p.add_argument("--allow-space-change", action="store_true",
                   help="resume even though the search space changed since the study started")
    artifacts_arg(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.add_argument("--threads", type=positive(int, "threads"), default=None, metavar="N",
                   help="torch CPU threads per worker (default: idle cores // workers, at least 1)")
    p.add_argument("--warm-start", metavar="SOURCE[:k]",
                   help="enqueue the top k (default 5) configs of an earlier study that fit this "
                        "space, once: NAME[:k] (in --storage, else studies/NAME.db), "
                        "URL#NAME[:k], or a best.yaml")


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


def _run_overrides(ns: argparse.Namespace) -> tuple[dict[str, object], dict[str, str]]:
    """The overrides as given (`plan_run` checks them) and the flag each came from."""
    overrides, flags = read_sets(ns.set), {}
    for key, value in (("data", ns.data), ("device", ns.device)):
        if value is not None:
            overrides[key], flags[key] = value, f"--{key}"
    return overrides, flags


@command("run", "run or resume a study: same command again resumes; --workers N for parallel",
         args=_run_args)
def _cmd_run(ns: argparse.Namespace) -> int:
    from ..run.api import grid_note, plan_run, run_study
    from ..run.console import summary_lines
    from ..study import RunInterrupted, storage_backend

    overrides, flags = _run_overrides(ns)
    plan = plan_run(ns.space, storage=ns.storage, study_name=ns.study_name, n_trials=ns.n_trials,
                    timeout=ns.timeout, overrides=overrides, override_flags=flags,
                    artifacts=ns.artifacts, warm_start=ns.warm_start, workers=ns.workers,
                    gpus=ns.gpus, workers_per_gpu=ns.workers_per_gpu,
                    trial_isolation=ns.trial_isolation, threads=ns.threads)
    if any(p.gpu is not None for p in plan.placements) and not ns.quiet:
        print("devices: " + "; ".join(p.describe() for p in plan.placements), file=sys.stderr)
    if note := grid_note(plan.space, plan.n_trials):
        print(note, file=sys.stderr)
    if plan.warm_start is not None:
        from ..run.warm_start import describe

        lines = describe(plan.warm_start)  # the first says what was enqueued, the rest warn
        print("\n".join(lines[1:] if ns.quiet else lines), file=sys.stderr)
    if plan.portfolio is not None and not ns.quiet:
        from ..run.portfolio import describe as describe_portfolio

        print(describe_portfolio(plan.portfolio, plan.space.study.portfolio), file=sys.stderr)
    if plan.neighbours is not None and not ns.quiet:
        from ..run.portfolio import describe_neighbours

        print(describe_neighbours(plan.neighbours, plan.space.study.neighbours), file=sys.stderr)
    if plan.workers > 1 and not storage_backend(plan.url).many_machines:
        print(f"warning: {plan.workers} workers share SQLite: fine on one machine; for "
              "several machines use a PostgreSQL --storage URL", file=sys.stderr)
    hint = _RESUME_HINT + _resume_command(ns, plan.url, plan.study_name)
    try:
        result = run_study(plan, allow_space_change=ns.allow_space_change, progress=not ns.quiet)
    except RunInterrupted as exc:
        print(f"interrupted by {exc}: the running trial is marked interrupted and will be "
              f"retried; {hint}", file=sys.stderr)
        return exc.exit_code
    if not ns.quiet:
        print("\n".join(summary_lines(result.study)))
    if result.reason != "target reached" and not ns.quiet:
        print(result.detail)
    return 0
