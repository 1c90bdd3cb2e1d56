"""Smoke tests: each search-efficiency bench runs at its smallest setting and prints sane tables."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
pytestmark = pytest.mark.slow


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


def _run(name: str, argv: list[str], capsys, monkeypatch) -> str:
    import torch

    monkeypatch.setattr(sys, "argv", [str(BENCH / f"{name}.py"), *argv])
    threads = torch.get_num_threads()
    try:
        assert _load(name).main(argv) == 0
    finally:
        torch.set_num_threads(threads)  # the benches set the runner's thread count
    return capsys.readouterr().out


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every table in the output: a header line, a line of dash runs, rows until a blank line.
    Cells are cut at the dash runs' columns, so a cell may hold single spaces."""
    lines = text.splitlines()
    found = []
    for i in range(1, len(lines)):
        if not re.fullmatch(r"-+( {2}-+)*", lines[i]):
            continue
        spans = [m.span() for m in re.finditer(r"-+", lines[i])]
        spans[-1] = (spans[-1][0], 10_000)
        names = [lines[i - 1][a:b].strip() for a, b in spans]
        rows = []
        for line in lines[i + 1:]:
            if not line.strip() or re.fullmatch(r"-+( {2}-+)*", line):
                break
            rows.append({n: line[a:b].strip() for n, (a, b) in zip(names, spans)})
        found.append(rows)
    return found


def _command_line(out: str, script: str, flag: str) -> None:
    commands = [line for line in out.splitlines() if line.startswith("$ python ")]
    assert len(commands) == 1 and f"bench/{script}.py" in commands[0] and flag in commands[0]
    assert re.search(r"load \d+\.\d\d/\d+\.\d\d/\d+\.\d\d", out)


def test_pruning_quick_prints_compute_to_target(capsys, monkeypatch):
    out = _run("pruning", ["--quick"], capsys, monkeypatch)
    _command_line(out, "pruning", "--quick")
    live, replayed, summary = tables(out)
    tols = sorted({r["tol"] for r in live})
    assert len(tols) == 2 and "0.01" in tols and any(t.startswith("se=") for t in tols)
    for tol in tols:
        by = {r["pruner"]: r for r in live if r["tol"] == tol}
        assert set(by) == {"none", "vcr_full.yaml"}
        none = by["none"]
        assert int(none["trials"]) == 3 and int(none["pruned"]) == 0 and none["reached"] == "yes"
        assert int(none["epochs"]) == 3 * 2  # no pruner: every trial trains every epoch
        assert float(none["x_none"]) == 1.0 and float(none["x_first"]) == 1.0
        assert 1 <= int(none["epochs_to_target"]) <= 6
        best = float(none["best_val_acc"])
        assert 0.0 <= best <= 1.0
        margin = 0.01 if tol == "0.01" else float(tol[3:])
        pruned = by["vcr_full.yaml"]
        # equal trials: a pruner can only train fewer epochs; a pruned trial trained >= 1 epoch
        assert int(pruned["pruned"]) <= int(pruned["epochs"]) <= 6
        assert float(pruned["x_none"]) == pytest.approx(int(pruned["epochs"]) / 6, abs=1e-3)
        assert (pruned["reached"] == "yes") == (float(pruned["best_val_acc"]) >= best - margin)
        if pruned["x_first"] != "not reached":
            ratio = int(pruned["epochs_to_target"]) / int(none["epochs_to_target"])
            assert float(pruned["x_first"]) == pytest.approx(ratio, abs=1e-3)
        # replay: the shipped pruner and one candidate watch the unpruned run's 3 curves
        rows = [r for r in replayed if r["tol"] == tol]
        assert [r["pruner"] for r in rows] == ["vcr_full.yaml", "--replay 1"]
        for r in rows:
            assert int(r["pruned"]) <= int(r["epochs"]) <= 6
            assert float(r["best_kept"]) <= best
            assert (r["reached"] == "yes") == (float(r["best_kept"]) >= best - margin)
    assert [(r["pruner"], r["tol"]) for r in summary] == [
        ("vcr_full.yaml", "0.01"), ("vcr_full.yaml", "se"),
        ("--replay 1", "0.01"), ("--replay 1", "se")]
    assert {r["goal_x_none_<=0.4"] for r in summary[:2]} <= {"met", "not met"}
    assert {r["live_x_none"] for r in summary[2:]} == {"-"}  # replayed only
    assert "SuccessiveHalving(min_resource=1" in out  # the shipped pruner, read from vcr_full.yaml


def test_samplers_quick_prints_best_over_seeds(capsys, monkeypatch):
    out = _run("samplers", ["--quick", "--samplers", "TPE", "Random"], capsys, monkeypatch)
    _command_line(out, "samplers", "--quick")
    runs, summary = tables(out)
    assert sorted((r["sampler"], r["seed"]) for r in runs) == [
        ("Random", "0"), ("Random", "1"), ("TPE", "0"), ("TPE", "1")]
    for r in runs:
        assert int(r["trials"]) == 2 and int(r["epochs"]) == 2  # equal budget: 2 trials x 1 epoch
        assert 0.0 <= float(r["best_val_acc"]) <= 1.0
        assert 0 <= int(r["best_at_trial"]) < 2
    for s in summary:
        values = [float(r["best_val_acc"]) for r in runs if r["sampler"] == s["sampler"]]
        assert float(s["min_best"]) == min(values) and float(s["max_best"]) == max(values)
        assert float(s["std_best"]) >= 0.0
        assert min(values) <= float(s["mean_best"]) <= max(values)


def test_storage_cost_quick_prints_overheads_and_status(capsys, monkeypatch):
    out = _run("storage_cost", ["--quick", "--no-script", "--status-trials", "50"],
               capsys, monkeypatch)
    _command_line(out, "storage_cost", "--quick")
    costs, status = tables(out)
    assert [r["storage"] for r in costs] == ["sqlite file (as built)",
                                             "sqlite file + WAL/NORMAL (candidate)"]
    for r in costs:
        assert int(r["trials"]) == 5
        assert float(r["reports/trial"]) == 3  # the demo's 3 epochs; trivial trials never prune
        assert float(r["commits/trial"]) >= 3 + 1  # at least the reports and the final tell
        assert float(r["bare_ms"]) > 0 and float(r["per_trial_ms"]) > 0
        assert float(r["per_trial_cpu_ms"]) > 0
        share = float(r["wall_share_of_10s"].rstrip("%"))
        assert share == pytest.approx(float(r["per_trial_ms"]) / 100, rel=0.01, abs=0.01)
    assert "status on a study of 50 finished trials" in out
    assert [r["what"] for r in status] == ["status query (hpo.study.study_status)",
                                           "vcr-hpo status in-process (hpo.cli.main)"]
    for r in status:
        assert 0 < float(r["median_s"]) <= float(r["max_s"])


def test_parallel_quick_prints_trials_per_hour(capsys, monkeypatch, require):
    require("vcr-hpo on PATH", shutil.which("vcr-hpo") is not None, "pip install -e .")
    out = _run("parallel", ["--quick"], capsys, monkeypatch)
    _command_line(out, "parallel", "--quick")
    (rows,) = tables(out)
    assert [r["setup"] for r in rows] == ["1x1", "1x2", "2x1"]
    for r in rows:
        assert int(r["trials"]) == 2
        assert 0 < float(r["train_s"]) < float(r["trial_s"]) <= float(r["wall_s"])
        assert float(r["gap_s"]) >= 0 and float(r["cpu_s_per_trial"]) > 0
        assert int(r["trials_per_h_steady"]) >= int(r["trials_per_h_with_startup"]) > 0
    assert "2x1 / 1x2 = " in out and "two processes sharing the cores" in out


def test_gpu_quick_prints_throughput_per_variant(capsys, monkeypatch):
    import torch

    out = _run("gpu", ["--quick"], capsys, monkeypatch)
    _command_line(out, "gpu", "--quick")
    (rows,) = tables(out)
    expected = ["fp32", "amp", "amp+channels_last"] if torch.cuda.is_available() else ["fp32"]
    assert [r["variant"] for r in rows] == expected
    assert rows[0]["precision"] == "fp32" and float(rows[0]["x_fp32"]) == 1.0
    for r in rows:
        assert r["backbone"] == "resnet18" and int(r["px"]) == 32
        assert int(r["train_img_per_s"]) > 0 and float(r["epoch_s"]) > 0
        assert 0.0 <= float(r["val_acc"]) <= 1.0


def test_search_quality_quick_prints_best_per_strategy(capsys, monkeypatch):
    import torch

    argv = ["--quick", "--budgets", "2", "--holdout", "20"]
    monkeypatch.setattr(sys, "argv", [str(BENCH / "search_quality.py"), *argv])
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_search_quality",
                                                  BENCH / "search_quality.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses resolve annotations
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        assert module.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    _command_line(out, "search_quality", "--quick")
    assert "budget = CPU seconds of the trial process" in out
    runs, summary = tables(out)
    assert {(r["strategy"], r["seed"]) for r in runs} == {
        (s, seed) for s in ("shipped", "random", "default") for seed in ("0", "1")}
    for r in runs:
        assert 0.0 <= float(r["best"]) <= 1.0 and 0.0 <= float(r["holdout"]) <= 1.0
        if r["strategy"] == "default":  # one run sized to the budget before the clock starts
            assert int(r["trials"]) == 1 and int(r["epochs"]) >= 1
            assert r["chosen"] == f"default x {r['epochs']} epochs"
        else:  # the search spends half the budget (--refit 0.5), then its best is trained once
            assert float(r["used_s"]) >= 1.0 and int(r["trials"]) >= 1
            assert r["chosen"].startswith("trial ")
            if "; then x " in r["chosen"]:  # the final run: never worse than the search's best
                assert float(r["search"]) <= float(r["best"])
    by = {r["strategy"]: r for r in summary}
    assert set(by) == {"shipped", "random", "default"}
    for label, row in by.items():
        bests = [float(r["best"]) for r in runs if r["strategy"] == label]
        assert int(row["seeds"]) == 2
        assert float(row["mean_best"]) == pytest.approx(sum(bests) / 2, abs=1e-4)
        assert float(row["se_best"]) == pytest.approx(abs(bests[0] - bests[1]) / 2, abs=1e-4)
        assert 0.0 < float(row["to_1se"]) <= 1.0
    assert re.search(r"quick: shipped \d\.\d{4} vs random .*-> (met|NOT met); vs default", out)


def test_pruning_replays_saved_curves_without_training(tmp_path, capsys, monkeypatch):
    curves = tmp_path / "curves.json"
    first = _run("pruning", ["--quick", "--no-live", "--save-curves", str(curves)], capsys,
                 monkeypatch)
    again = _run("pruning", ["--quick", "--no-live", "--load-curves", str(curves)], capsys,
                 monkeypatch)
    assert "not retrained" in again
    assert tables(first)[1:] == tables(again)[1:]  # the same replay and summary tables
    with pytest.raises(SystemExit, match="recorded with"):
        _run("pruning", ["--no-live", "--n-trials", "3", "--epochs", "3", "--image-size", "32",
                         "--train", "40", "--val", "20", "--load-curves", str(curves)],
             capsys, monkeypatch)  # other epochs than recorded: refused before any training


def test_constant_liar_quick_measures_distance_to_running_trials(capsys, monkeypatch):
    out = _run("constant_liar", ["--quick", "--settings", "TPE+liar", "Random"], capsys,
               monkeypatch)
    _command_line(out, "constant_liar", "--quick")
    runs, summary = tables(out)
    assert [r["sampler"] for r in runs] == ["TPE+liar", "Random"]
    for r in runs:
        assert int(r["trials"]) == 6
        # two workers: every trial but the first and the last few starts beside a running one
        assert 1 <= int(r["beside_running"]) <= 6
        assert 0.0 <= float(r["mean_nearest"]) <= 1.0
        assert 0 <= int(r["near_dups"]) <= int(r["beside_running"])
    for s in summary:
        _, total = s["near_dups"].split("/")
        assert int(total) == sum(int(r["beside_running"]) for r in runs
                                 if r["sampler"] == s["sampler"])


def test_constant_liar_distance_is_per_param_in_the_unit_cube():
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import create_trial

    mod = _load("constant_liar")
    dists = {"lr": FloatDistribution(1e-4, 1e-2, log=True),
             "opt": CategoricalDistribution(["adamw", "sgd"])}
    a = create_trial(params={"lr": 1e-4, "opt": "adamw"}, distributions=dists, value=0.5)
    b = create_trial(params={"lr": 1e-3, "opt": "sgd"}, distributions=dists, value=0.5)
    assert mod.distance(a, a) == 0.0
    assert mod.distance(a, b) == pytest.approx((0.5 + 1.0) / 2)  # lr half the log range apart
    c = create_trial(params={"lr": 1e-4, "opt": "sgd", "momentum": 0.9},
                     distributions={**dists, "momentum": FloatDistribution(0.8, 0.99)}, value=0.5)
    assert mod.distance(a, c) == pytest.approx((0 + 1 + 1) / 3)  # momentum on one side only
