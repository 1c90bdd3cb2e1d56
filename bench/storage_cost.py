"""Storage cost: per-trial and per-report overhead of vcr-hpo's storages, and status on 10,000 trials.

Part 1 runs trivial trials (no training) through the runner's own loop (claim_trial under the
claim lock, run_one_trial with its heartbeat thread, tell) on the storage `build_storage` makes:
an SQLite file and, where PostgreSQL binaries exist, a throwaway cluster (hpo.testing). The
trivial objective does what the real Objective does to the storage: suggest the demo space's
parameters, report each epoch and ask the demo's pruner, and write the user attrs a real trial
wrote (recorded from one real tiny trial first). Three runs separate the costs:
  bare      claim + ask + suggest + tell, no reports, no user attrs
  reports   bare + E x (report + should_prune)            -> per report = (reports - bare) / E
  full      reports + the real trial's user attrs           -> the per-trial overhead
Share of a 10 s trial = full / 10 s (goal <= 2%).

Part 2 fills a study with 10,000 finished trials (study.add_trials; params, intermediate values
and user attrs like real ones) and times `vcr-hpo status` three ways: the status query itself
(hpo.study.study_status), the whole command in-process (hpo.cli.main), and the installed
`vcr-hpo` script as a subprocess (wall time, including Python and library imports).

    python bench/storage_cost.py                          # 100 trials per run, 10,000 for status
    python bench/storage_cost.py --quick                  # smoke-sized (seconds)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C  # noqa: E402


def record_real_trial(space, tmp: str, epochs: int) -> dict:
    """The user attrs one real (tiny) trial of `space` writes: the trivial trials replay them."""
    import optuna

    overrides = C.tiny_overrides(epochs=epochs, image_size=32, train=40, val=20)
    C.run_study_loop(C.with_study(space, pruner=None), f"sqlite:///{tmp}/real.db",
                     overrides=overrides, max_trials=1)
    study = optuna.load_study(study_name="bench", storage=f"sqlite:///{tmp}/real.db")
    # "baseline" marks the enqueued first trial: the runner writes it, not every trial
    return {k: v for k, v in study.trials[0].user_attrs.items() if k != "baseline"}


def wal_normal(storage) -> None:
    """Candidate SQLite setting (not what build_storage does today): WAL journal and
    synchronous=NORMAL, so a commit appends to the log without an fsync of its own."""
    import sqlalchemy as sa

    @sa.event.listens_for(storage.engine, "connect")
    def _pragmas(dbapi_conn, _record) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    storage.engine.dispose()  # connections opened by the constructor lack the pragmas


# Attrs the Objective writes when the model is built (before epoch 1); the rest come at the end.
_START_ATTRS = ("feature_channels", "feature_strides", "num_params", "device", "versions")


def trivial_objective(space, overrides, attrs: dict, reports: int):
    """A trial that trains nothing but touches the storage exactly like the Objective."""
    import optuna

    start = {k: v for k, v in attrs.items() if k in _START_ATTRS}
    end = {k: v for k, v in attrs.items() if k not in _START_ATTRS}

    def objective(trial: optuna.Trial) -> float:
        params = space.suggest(trial)
        space.config_for(params, overrides)
        rng = random.Random(trial.number)
        for key, value in start.items():
            trial.set_user_attr(key, value)
        acc = 0.1
        for epoch in range(reports):
            acc += rng.uniform(0.0, 0.2)
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        for key, value in end.items():
            trial.set_user_attr(key, value)
        return acc

    return objective


def time_trials(space, url: str, objective, n: int, tweak=None) -> list[float]:
    """Seconds per trial of the runner loop (claim + run + tell) over `n` trivial trials."""
    from hpo import study as S

    storage = S.build_storage(url)
    if tweak is not None:
        tweak(storage)
    study = S.open_study(space, storage, study_name="bench", n_trials=n)
    out = []
    while True:
        t0 = time.perf_counter()
        trial = S.claim_trial(study, n)
        if trial is None:
            return out
        S.run_one_trial(study, trial, objective)
        out.append(time.perf_counter() - t0)


def overhead_rows(space, urls, attrs: dict, reports: int, n: int, trial_s: float):
    overrides = C.tiny_overrides(epochs=reports, image_size=32, train=40, val=20)
    rows = []
    for label, make_url, tweak in urls:
        runs = {}
        for kind, n_reports, with_attrs in (("bare", 0, False), ("reports", reports, False),
                                            ("full", reports, True)):
            objective = trivial_objective(space, overrides, attrs if with_attrs else {}, n_reports)
            runs[kind] = time_trials(space, make_url(kind), objective, n, tweak)
        bare, rep, full = (statistics.mean(runs[k]) for k in ("bare", "reports", "full"))
        per_report = (rep - bare) / reports if reports else 0.0
        late = runs["full"][-max(1, n // 10):]
        rows.append([label, n, round(bare * 1e3, 1), round(per_report * 1e3, 2),
                     round((full - rep) * 1e3, 1), round(full * 1e3, 1),
                     round(statistics.mean(late) * 1e3, 1),
                     f"{100 * full / trial_s:.2f}%", C.load_text()])
    return rows


def fill_study(url: str, space, attrs: dict, n: int, reports: int) -> float:
    """`n` finished trials (90% COMPLETE, 10% PRUNED) with real-looking content; returns seconds.

    The fill runs with WAL + synchronous=NORMAL (fast commits) and switches the file back to
    SQLite's default rollback journal afterwards, so status reads the file vcr-hpo would write.
    """
    import optuna
    import sqlalchemy as sa

    from hpo import study as S

    storage = S.build_storage(url)
    if url.startswith("sqlite"):
        wal_normal(storage)
    study = S.open_study(space, storage, study_name="big", n_trials=n)
    dists = space.distributions()
    rng = random.Random(0)
    sampler = optuna.samplers.RandomSampler(seed=0)
    probe = optuna.create_study(sampler=sampler)
    trials = []
    for i in range(n):
        t = probe.ask()
        params = space.suggest(t)
        probe.tell(t, 0.0)
        curve = {e: rng.uniform(0.1, 0.9) for e in range(reports)}
        pruned = i % 10 == 9
        trials.append(optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE,
            value=None if pruned else max(curve.values()),
            params=params, distributions={k: dists[k] for k in params},
            intermediate_values=curve if not pruned else {0: curve[0]}, user_attrs=attrs))
    t0 = time.perf_counter()
    study.add_trials(trials)
    seconds = time.perf_counter() - t0
    if url.startswith("sqlite"):
        storage.engine.dispose()
        with sa.create_engine(url).connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
    return seconds


def status_rows(url: str, name: str, repeats: int):
    """Seconds for the status query, the in-process command and the installed script."""
    from hpo import study as S
    from hpo.cli import main as cli_main

    rows = []
    query, command, script = [], [], []
    exe = shutil.which("vcr-hpo")
    for _ in range(repeats):
        t0 = time.perf_counter()
        S.study_status(S.build_storage(url), name)
        query.append(time.perf_counter() - t0)
        out = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(out):
            code = cli_main(["status", "--storage", url, "--study-name", name])
        command.append(time.perf_counter() - t0)
        if code != 0 or "finished" not in out.getvalue():
            raise RuntimeError(f"vcr-hpo status failed ({code}): {out.getvalue()[-300:]}")
        if exe:
            t0 = time.perf_counter()
            subprocess.run([exe, "status", "--storage", url, "--study-name", name], check=True,
                           stdout=subprocess.DEVNULL)
            script.append(time.perf_counter() - t0)
    rows.append(["status query (hpo.study.study_status)", round(statistics.median(query), 3),
                 round(max(query), 3), C.load_text()])
    rows.append(["vcr-hpo status in-process (hpo.cli.main)", round(statistics.median(command), 3),
                 round(max(command), 3), C.load_text()])
    if script:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import hpo.cli, hpo.study, optuna"], check=True)
        imports = time.perf_counter() - t0
        rows.append(["installed `vcr-hpo status` (subprocess wall)",
                     round(statistics.median(script), 3), round(max(script), 3), C.load_text()])
        rows.append(["  of which: python + imports only", round(imports, 3), round(imports, 3),
                     C.load_text()])
    return rows


def run(args) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    space = C.shipped_space(args.space)
    reports = args.reports or int(space.fixed.get("epochs", 3))
    C.print_header("storage cost: runner + storage overhead per trial and per report; status")
    print(f"# space {args.space} (pruner {space.study.pruner.describe() if space.study.pruner else 'none'}), "
          f"{args.trials} trivial trials per run, {reports} reports per trial, heartbeat on")
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        attrs = record_real_trial(space, tmp, reports)
        print(f"# user attrs replayed from a real trial: {', '.join(sorted(attrs))}")
        urls = [("sqlite file (as built)", lambda kind: f"sqlite:///{tmp}/{kind}.db", None),
                ("sqlite file + WAL/NORMAL (candidate)",
                 lambda kind: f"sqlite:///{tmp}/wal-{kind}.db", wal_normal)]
        cluster = None
        if "postgresql" in args.storages:
            from hpo.testing import PostgresCluster, postgres_available

            if postgres_available():
                cluster = PostgresCluster()
                # hpo.testing runs the cluster with fsync=off: a server with fsync pays more
                urls.append(("postgresql (local, fsync off)",
                             lambda kind: cluster.create_database(), None))
            else:
                print("# postgresql skipped: no PostgreSQL binaries here")
        if "sqlite" not in args.storages:
            urls = [u for u in urls if not u[0].startswith("sqlite")]
        try:
            rows = overhead_rows(space, urls, attrs, reports, args.trials, args.trial_seconds)
        finally:
            if cluster is not None:
                cluster.stop()
        print()
        C.print_table(["storage", "trials", "bare_ms", "per_report_ms", "attrs_ms",
                       "per_trial_ms", "last10%_ms", f"share_of_{args.trial_seconds:g}s", "load"],
                      rows)
        print(f"per_trial_ms = bare + {reports} reports + user attrs (mean over the run); "
              "last10%_ms = the same over the last tenth (does it grow with the study?); goal: "
              "share <= 2%")

        url = f"sqlite:///{tmp}/big.db"
        fill = fill_study(url, space, attrs, args.status_trials, reports)
        print()
        print(f"status on a study of {args.status_trials} finished trials ({url.split('/')[-1]}, "
              f"filled by study.add_trials in {fill:.1f} s), median of {args.repeats}:")
        C.print_table(["what", "median_s", "max_s", "load"],
                      status_rows(url, "big", args.repeats))
        print("goal: status under 2 s (the query; the installed script adds Python start-up and "
              "library imports)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="hyperparameters.yaml", help="a file in search_spaces/")
    ap.add_argument("--storages", nargs="+", default=["sqlite", "postgresql"],
                    choices=["sqlite", "postgresql"])
    ap.add_argument("--trials", type=int, default=100, help="trivial trials per timed run")
    ap.add_argument("--reports", type=int, help="reports per trial (default: the space's epochs)")
    ap.add_argument("--trial-seconds", type=float, default=10.0,
                    help="the training time the overhead is compared with")
    ap.add_argument("--status-trials", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3, help="timings of each status variant")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: 5 trials per run, SQLite only, 200 trials for status")
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.storages, args.status_trials, args.repeats = 5, ["sqlite"], 200, 1
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
