"""Storage cost: per-trial and per-report overhead of vcr-hpo's storages; status on 10,000 trials.

Part 1 runs trivial trials (no training) through the runner's own loop (claim_trial under the
claim lock, run_one_trial with its heartbeat thread, tell) on the storage `build_storage` makes:
an SQLite file and, where PostgreSQL binaries exist, a throwaway cluster (tests/_postgres.py). The
trivial objective does what the real Objective does to the storage: suggest the demo space's
parameters, report each epoch and ask the demo's pruner, and write the user attrs a real trial
wrote (recorded from one real tiny trial first). Three runs separate the costs:
  bare      claim + ask + suggest + tell, no reports, no user attrs
  reports   bare + E x (report + should_prune)            -> per report = (reports - bare) / E
  full      reports + the real trial's user attrs           -> the per-trial overhead
Share of a 10 s trial = full / 10 s (goal <= 2%).

Part 2 fills a study with 10,000 finished trials (params, intermediate values and user attrs
like real ones, inserted through Optuna's table models and read back through its API) and
times `vcr-hpo status` three ways: the status query itself
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
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C


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
        for key, value in start.items():
            trial.set_user_attr(key, value)
        acc = 0.0
        for epoch in range(reports):
            # each trial beats every earlier one: the pruner is asked but never prunes, so every
            # trial pays for all its reports and user attrs (the most a trial costs)
            acc = 0.1 * (epoch + 1) + 1e-4 * trial.number
            trial.report(acc, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        for key, value in end.items():
            trial.set_user_attr(key, value)
        return acc

    return objective


def _open(space, url: str, n: int, tweak):
    from hpo import study as S

    storage = S.build_storage(url)
    if tweak is not None:
        tweak(storage)
    return S.open_study(space, storage, study_name="bench", n_trials=n)


def time_trials(study, objective, upto: int, out: dict) -> None:
    """Run the runner loop (`hpo.study.run_trials`: claim + run + tell) until `upto` finished
    trials; per trial, append wall and process-CPU seconds and the number of reports to `out`."""
    from hpo import study as S

    last = [time.perf_counter(), time.process_time()]

    def timed(frozen) -> None:
        out["wall"].append(time.perf_counter() - last[0])
        out["cpu"].append(time.process_time() - last[1])
        out["reports"].append(len(frozen.intermediate_values))
        last[:] = [time.perf_counter(), time.process_time()]

    S.run_trials(study, objective, n_trials=upto, on_trial=timed, max_failures_in_a_row=None)


def _count_commits(study) -> list[int]:
    """A one-element counter of the transactions committed on the study's database."""
    import sqlalchemy as sa

    from hpo.study import rdb_storage

    count = [0]

    def on_commit(_conn) -> None:
        count[0] += 1

    sa.event.listen(rdb_storage(study).engine, "commit", on_commit)
    return count


def overhead_rows(space, urls, attrs: dict, reports: int, n: int, trial_s: float, chunk: int):
    """Per storage: bare, reports and full runs interleaved in chunks of trials, so a change of
    machine load hits all three alike."""
    overrides = C.tiny_overrides(epochs=reports, image_size=32, train=40, val=20)
    kinds = (("bare", 0, False), ("reports", reports, False), ("full", reports, True))
    rows = []
    for label, make_url, tweak in urls:
        studies = {k: _open(space, make_url(k), n, tweak) for k, _, _ in kinds}
        commits = _count_commits(studies["full"])
        objectives = {k: trivial_objective(space, overrides, attrs if a else {}, r)
                      for k, r, a in kinds}
        runs = {k: {"wall": [], "cpu": [], "reports": []} for k, _, _ in kinds}
        for upto in [*range(chunk, n, chunk), n]:
            for k, _, _ in kinds:
                time_trials(studies[k], objectives[k], upto, runs[k])
        mean = {k: {m: statistics.mean(v) for m, v in runs[k].items()} for k in runs}
        made = mean["reports"]["reports"]
        row = [label, n, round(made, 2), round(commits[0] / n, 1)]
        for m in ("wall", "cpu"):
            bare, rep, full = (mean[k][m] for k in ("bare", "reports", "full"))
            per_report = (rep - bare) / made if made else 0.0
            row += [round(bare * 1e3, 1), round(per_report * 1e3, 2), round(full * 1e3, 1)]
        late = runs["full"]["wall"][-max(1, n // 10):]
        row += [round(statistics.mean(late) * 1e3, 1),
                f"{100 * mean['full']['wall'] / trial_s:.2f}%",
                f"{100 * mean['full']['cpu'] / trial_s:.2f}%", C.load_text()]
        rows.append(row)
    return rows


def fill_study(url: str, space, attrs: dict, n: int, reports: int) -> float:
    """Add `n` finished trials (90% COMPLETE, 10% PRUNED) like real ones; returns seconds.

    study.add_trials costs a few hundred ms of CPU per trial here (minutes for 10,000), so the
    rows go in through Optuna's own table models in one transaction; one trial is then read
    back through Optuna's API and compared, so the file is what Optuna itself would have written.
    """
    import datetime
    import json

    import optuna
    import sqlalchemy as sa
    from optuna.distributions import distribution_to_json

    from hpo import study as S
    from hpo.study import _optuna

    m = _optuna.models()
    storage = S.build_storage(url)
    study = S.open_study(space, storage, study_name="big", n_trials=n)
    dists = space.distributions()
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    rng = random.Random(0)
    now = datetime.datetime.now()
    t0 = time.perf_counter()
    with storage.engine.begin() as conn:
        table = m.TrialModel.__table__
        first_id = (conn.execute(sa.select(sa.func.max(table.c.trial_id))).scalar() or 0) + 1
        first_number = conn.execute(sa.select(sa.func.count()).select_from(table).where(
            table.c.study_id == S.study_id(study))).scalar()
        trials, params, values, inter, uattrs = [], [], [], [], []
        expected = {}
        for i in range(n):
            tid = first_id + i
            trial = probe.ask()
            chosen = space.suggest(trial)
            probe.tell(trial, 0.0)
            pruned = i % 10 == 9
            curve = [rng.uniform(0.1, 0.9) for _ in range(1 if pruned else reports)]
            state = optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE
            trials.append({"trial_id": tid, "number": first_number + i, "study_id": S.study_id(study),
                           "state": state,
                           "datetime_start": now - datetime.timedelta(seconds=n - i),
                           "datetime_complete": now - datetime.timedelta(seconds=n - i - 0.5)})
            for name, value in chosen.items():
                params.append({"trial_id": tid, "param_name": name,
                               "param_value": dists[name].to_internal_repr(value),
                               "distribution_json": distribution_to_json(dists[name])})
            if not pruned:
                values.append({"trial_id": tid, "objective": 0, "value": max(curve),
                               "value_type": m.TrialValueModel.TrialValueType.FINITE})
            for step, v in enumerate(curve):
                inter.append({"trial_id": tid, "step": step, "intermediate_value": v,
                              "intermediate_value_type":
                                  m.TrialIntermediateValueModel.TrialIntermediateValueType.FINITE})
            for key, value in attrs.items():
                uattrs.append({"trial_id": tid, "key": key, "value_json": json.dumps(value)})
            expected[tid] = (state, chosen, None if pruned else max(curve))
        for model, rows in ((m.TrialModel, trials), (m.TrialParamModel, params),
                            (m.TrialValueModel, values), (m.TrialIntermediateValueModel, inter),
                            (m.TrialUserAttributeModel, uattrs)):
            if rows:
                conn.execute(sa.insert(model.__table__), rows)
    seconds = time.perf_counter() - t0
    check = S.build_storage(url)  # a fresh storage: no cache between the insert and the read
    for tid in (first_id, first_id + n - 1):
        got = check.get_trial(tid)
        state, chosen, value = expected[tid]
        if (got.state, got.params, got.value, got.user_attrs) != (state, chosen, value, attrs):
            raise RuntimeError(f"trial {tid} does not read back as written: {got}")
    return seconds


def status_rows(url: str, name: str, repeats: int, run_script: bool = True):
    """Seconds for the status query, the in-process command and the installed script."""
    from hpo import study as S
    from hpo.cli import main as cli_main

    rows = []
    query, command, script = [], [], []
    exe = shutil.which("vcr-hpo") if run_script else None
    for _ in range(repeats):
        t0 = time.perf_counter()
        # as `vcr-hpo status` opens it: no heartbeat (a reader must not fail anyone's trials)
        S.study_status(S.build_storage(url, heartbeat_interval=None, grace_period=None), name)
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
    pruner = space.study.pruner.describe() if space.study.pruner else "none"
    print(f"# space {args.space} (pruner {pruner}), "
          f"{args.trials} trivial trials per run, {reports} reports per trial, heartbeat on")
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        attrs = record_real_trial(space, tmp, reports)
        print(f"# user attrs replayed from a real trial: {', '.join(sorted(attrs))}")
        urls = [("sqlite file (as built)", lambda kind: f"sqlite:///{tmp}/{kind}.db", None),
                ("sqlite file + WAL/NORMAL (candidate)",
                 lambda kind: f"sqlite:///{tmp}/wal-{kind}.db", wal_normal)]
        cluster = None
        if "postgresql" in args.storages:
            pg = runpy.run_path(str(Path(__file__).resolve().parents[1] / "tests" / "_postgres.py"))
            PostgresCluster = pg["PostgresCluster"]  # loaded by path: test-only code
            if pg["postgres_available"]():
                cluster = PostgresCluster()
                # tests/_postgres.py runs the cluster with fsync=off: a server with fsync pays more
                urls.append(("postgresql (local, fsync off)",
                             lambda kind: cluster.create_database(), None))
            else:
                print("# postgresql skipped: no PostgreSQL binaries here")
        if "sqlite" not in args.storages:
            urls = [u for u in urls if not u[0].startswith("sqlite")]
        try:
            rows = overhead_rows(space, urls, attrs, reports, args.trials, args.trial_seconds,
                                 max(1, args.trials // 10))
        finally:
            if cluster is not None:
                cluster.stop()
        print()
        C.print_table(["storage", "trials", "reports/trial", "commits/trial", "bare_ms",
                       "per_report_ms", "per_trial_ms", "bare_cpu_ms", "per_report_cpu_ms",
                       "per_trial_cpu_ms", "last10%_ms", f"wall_share_of_{args.trial_seconds:g}s",
                       f"cpu_share_of_{args.trial_seconds:g}s", "load"], rows)
        print()
        print("bare = claim + ask + suggest + tell; per_trial = bare + reports + the real trial's "
              "user attrs (mean); commits/trial = transactions a full trial commits; *_cpu_ms = "
              "this process's CPU time (robust to machine load; excludes the PostgreSQL server's "
              "own CPU); last10%_ms = per_trial wall over the last tenth of the run; goal: "
              "share <= 2%")

        url = f"sqlite:///{tmp}/big.db"
        fill = fill_study(url, space, attrs, args.status_trials, reports)
        print()
        print(f"status on a study of {args.status_trials} finished trials ({url.split('/')[-1]}, "
              f"rows inserted in {fill:.1f} s), median of {args.repeats}:")
        C.print_table(["what", "median_s", "max_s", "load"],
                      status_rows(url, "big", args.repeats, run_script=not args.no_script))
        print()
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
    ap.add_argument("--status-trials", type=int, help="trials of the status study (10,000)")
    ap.add_argument("--repeats", type=int, default=3, help="timings of each status variant")
    ap.add_argument("--no-script", action="store_true",
                    help="skip timing the installed vcr-hpo script (new process: ~8 s of imports)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: 5 trials per run, SQLite only, 200 trials for status")
    args = ap.parse_args(argv)
    if args.quick:
        args.trials, args.storages, args.repeats = 5, ["sqlite"], 1
    if args.status_trials is None:
        args.status_trials = 200 if args.quick else 10_000
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
