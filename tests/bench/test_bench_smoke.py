"""Smoke tests: each search-efficiency bench runs at its smallest setting and prints sane tables;
the search-quality bench's pure parts (verdict, anytime metric, strategy syntax, digits set) run
in the fast tier."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --------------------------------------------------------------------------- search quality


@pytest.fixture
def sq(monkeypatch):
    """bench/search_quality.py as a module (its dataclasses resolve annotations via sys.modules)."""
    monkeypatch.syspath_prepend(str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_search_quality",
                                                  BENCH / "search_quality.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


def _rec(ds, strategy, seed, holdout, *, budget=100.0, tb=12.0, curve=None, scored=None):
    """A per-run record as the bench writes it (search part = budget / 2)."""
    return {"format": 2, "dataset": ds, "data": {"kind": "synthetic", "train": 10, "val": 5,
                                                "holdout": 5},
            "epochs": 3, "px": 32, "space": "s.yaml", "strategy": strategy, "spec": strategy,
            "seed": seed, "budget": budget, "trials_budget": tb, "refit": 0.5,
            "holdout": holdout, "val_best": holdout + 0.05, "trials": 1 if strategy == "default"
            else 12, "used": budget,
            "curve": curve or [[budget / 2, "C", holdout, 0]], "scored": scored or {"0": holdout}}


def _verdict_runs(shipped_main=0.83, shipped_small=0.82, reach_at=20.0):
    runs = []
    for ds in ("a", "b", "c"):
        for seed, r in enumerate([0.80, 0.81, 0.79, 0.80, 0.80]):
            runs.append(_rec(ds, "random", seed, r, curve=[[10, "C", 0.7, 0], [50, "C", r, 3]],
                             scored={"0": 0.7, "3": r}))
            runs.append(_rec(ds, "default", seed, 0.78))
            # shipped: its running best's held-out is 0.81 from charge `reach_at` on
            runs.append(_rec(ds, "shipped", seed, shipped_main,
                             curve=[[10, "C", 0.7, 0], [reach_at, "C", 0.81, 1]],
                             scored={"0": 0.7, "1": 0.81}))
            for label, h in (("random", 0.80), ("default", 0.79), ("shipped", shipped_small)):
                runs.append(_rec(ds, label, seed, h, budget=60.0, tb=8.0))
    return runs


def test_search_quality_verdict_on_constructed_runs(sq):
    lines = sq.verdict(sq.summarise(_verdict_runs()))
    assert lines[-3].endswith("3/3 -> met") and lines[-2].endswith("3/3 -> met")
    assert lines[-1].endswith("3/3 -> met")
    assert "a @ 100 s: shipped reaches random's final held-out at 0.4 of its search" in lines[1]
    # within one SE of random (SE 0.0032): goal 1 not met; later than half: goal 2 not met
    lines = sq.verdict(sq.summarise(_verdict_runs(shipped_main=0.802, reach_at=40.0)))
    assert lines[-3].endswith("0/3 -> NOT met") and lines[-2].endswith("0/3 -> NOT met")
    assert "at 0.8 of its search" in lines[1]
    # at the small budget behind the default (0.79): goal 3 not met
    lines = sq.verdict(sq.summarise(_verdict_runs(shipped_small=0.785)))
    assert lines[-1].endswith("0/3 -> NOT met") and "NOT ahead of both" in lines[2]


def test_search_quality_summary_means_and_standard_error(sq):
    rows = sq.summarise(_verdict_runs())
    by = {(r["dataset"], r["budget"], r["strategy"]): r for r in rows}
    random = by[("a", 100.0, "random")]
    assert random["seeds"] == 5 and random["holdout"] == pytest.approx(0.80)
    assert random["se"] == pytest.approx(0.0070711 / 5 ** 0.5, rel=1e-4)  # stdev / sqrt(n)
    assert random["val_best"] == pytest.approx(0.85)  # shown, never the headline
    assert random["to_random"] == 1.0 and by[("a", 100.0, "shipped")]["to_random"] == 0.4
    assert by[("a", 100.0, "default")]["to_random"] is None


def test_search_quality_strategy_sets_any_study_key(sq, tmp_path):
    from hpo.errors import ConfigError

    text, source = sq.space_text("hyperparameters.yaml")
    s = sq.parse_strategy("tpe-k2={type: TPE}|none|{keep_weights: {top: 2, per_backbone: 0}}")
    space = sq.strategy_space(text, source, s, 7)
    assert space.study.keep_weights == (2, 0)  # a study key the bench does not know by name
    assert space.study.sampler.type == "TPE" and space.study.sampler.args["seed"] == 7
    assert space.study.pruner is None and space.study.n_trials is None
    shipped = sq.strategy_space(text, source, sq.parse_strategy("shipped"), 3)
    assert shipped.study.sampler.type == "GP" and shipped.study.sampler.args["seed"] == 3
    assert shipped.study.trial_length == "compute" and shipped.study.neighbours == 7
    plain = sq.strategy_space(text, source, sq.parse_strategy("random"), 3)  # plain random search
    assert plain.study.sampler.type == "Random" and plain.study.trial_length == "epochs"
    assert plain.study.portfolio == 0 and plain.study.neighbours == 0
    assert plain.study.pruner is None
    eq = "{type: GP}|none|{trial_length: compute"
    gp = sq.strategy_space(text, source, sq.parse_strategy(f"gp={eq}}}"), 0)
    one_se = sq.strategy_space(text, source, sq.parse_strategy(
        f"gp-1se={eq}, choose: cheapest_within_1se}}"), 0)
    assert one_se.study.choose == "cheapest_within_1se" and gp.study.choose == "best"
    assert one_se.fingerprint == gp.fingerprint  # the study's: a choice among finished trials
    assert sq.fingerprint(one_se) != sq.fingerprint(gp)  # the bench's: what a strategy ends with
    assert sq.fingerprint(gp) == sq.fingerprint(sq.strategy_space(
        text, source, sq.parse_strategy(f"gp={eq}, choose: best}}"), 0))
    with pytest.raises(ConfigError, match=r"^--strategy bad: .*no_such_key"):
        sq.strategy_space(text, source, sq.parse_strategy("bad=shipped|shipped|{no_such_key: 1}"),
                          0)
    with pytest.raises(ConfigError, match=r"^--strategy: .*LABEL=SAMPLER\|PRUNER"):
        sq.parse_strategy("tpe")


@pytest.mark.parametrize(("argv", "says"), [
    (["--strategy", "x=shipped|shipped|{no_such_key: 1}"], "no_such_key"),
    (["--strategy", "x=final{no_such_param: 1}"], "Use some of ['backbone', "),
    (["--strategy", "x=final{backbone: resnet99}"], "resnet99"),
    (["--strategy", "x=final{lr: 5.0}"], "lr=5 is outside [0.0001, 0.03]"),
    (["--strategy", "x=final{focal_gamma: 2.0}"], "focal_gamma is switched off by its when:"),
    (["--strategy", "x=final[1, 2]"], "final{PARAM: VALUE, ...} must be a YAML flow mapping"),
    (["--strategy", "x=final{backbone: resnet10t}", "--refit", "0"], "Give --refit > 0"),
])
def test_search_quality_bad_strategy_is_one_line_exit_2(sq, capsys, argv, says):
    assert sq.main([*argv, "--estimate"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("--strategy x: ") and says in err


@pytest.mark.slow  # writes 1,797 PNGs: ~5 s idle, a minute on a loaded 2-core machine
def test_search_quality_digits_folder_is_split_once(sq, tmp_path):
    from PIL import Image

    root = sq.digits_folder(50, 40, root=tmp_path)
    assert sq.digits_folder(50, 40, root=tmp_path) == root  # written once, then reused

    def files(part):
        return {p.name: p.parent.name for p in (root / part).rglob("*.png")}

    held, val, train = files("holdout"), files("search/val"), files("search/train")
    assert (len(held), len(val), len(train)) == (50, 40, 1797 - 90)
    assert not (held.keys() & val.keys()) and not (held.keys() & train.keys())
    assert not (val.keys() & train.keys())
    assert sorted(set(held.values())) == [str(d) for d in range(10)]  # stratified: every digit
    with Image.open(next((root / "holdout").rglob("*.png"))) as im:
        assert im.size == (32, 32) and im.mode == "RGB"


@pytest.mark.slow
def test_search_quality_quick_runs_at_equal_compute_and_summarises_from_lines(
        sq, tmp_path, capsys, monkeypatch):
    import torch

    results = tmp_path / "runs.txt"
    argv = ["--quick", "--seeds", "0", "--trials-budget", "2", "--results", str(results),
            "--strategies", "random", "default",
            "--strategy", "tpe-k2={type: TPE}|none|{keep_weights: {top: 2, per_backbone: 1}}",
            "--strategy", ("r-1se={type: Random}|none|{trial_length: compute, "
                           "choose: cheapest_within_1se}"),
            "--strategy", "r10t=final{backbone: resnet10t, lr: 0.01}"]
    monkeypatch.setattr(sys, "argv", [str(BENCH / "search_quality.py"), *argv])
    monkeypatch.setenv("VCR_HPO_BENCH_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    try:
        assert sq.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    _command_line(out, "search_quality", "--quick")
    runs = sq.read_runs([str(results)])
    assert {(r["dataset"], r["strategy"]) for r in runs} == {
        (d, s) for d in ("quick", "digits-quick")
        for s in ("random", "default", "tpe-k2", "r-1se", "r10t")}
    for r in runs:
        assert 0.0 <= r["holdout"] <= 1.0 and r["seed"] == 0 and r["trials"] >= 1
        if r["strategy"] in ("default", "r10t"):  # no search: the whole budget or the refit
            share = 1.0 if r["strategy"] == "default" else r["refit"]  # share, to half an epoch
            epoch = r["final_charge"] / r["final_epochs"]  # (set-up is < 1 epoch here)
            assert abs(r["used"] - share * r["budget"]) <= 0.5 * epoch + 1e-6
            assert r["final_epochs"] >= 2 and r["search_charge"] == 0.0 and "curve" not in r
            if r["strategy"] == "r10t":  # the default config with the values it names
                default = next(d for d in runs if d["strategy"] == "default"
                               and d["dataset"] == r["dataset"])
                assert r["chosen"] == {**default["chosen"], "backbone": "resnet10t", "lr": 0.01}
        else:  # the search crosses its half, the final run takes the rest
            assert r["search_charge"] >= r["budget"] / 2 and r["final_epochs"] >= 1
            assert r["used"] == pytest.approx(r["search_charge"] + r["final_charge"], abs=0.02)
            assert r["curve"][-1][0] == r["search_charge"]
            if r["strategy"] == "r-1se":  # the trial `vcr-hpo best` exports, and why
                assert r["choice"].startswith(f"trial {r['chosen_trial']}, the ")
            else:
                assert "choice" not in r
                assert str(r["chosen_trial"]) in r["scored"]  # its kept weights were scored
    (table,) = [t for t in tables(out) if t and "trials_b" in t[0]]  # the summary table
    capsys.readouterr()
    assert sq.main(["--summarise", str(results)]) == 0  # the same table from the lines alone
    again = capsys.readouterr().out
    assert [t for t in tables(again) if t and "trials_b" in t[0]] == [table]
    assert "goal 1 (shipped" in again and "goal 3" in again
    assert {r["strategy"] for r in table} == {"random", "default", "tpe-k2", "r-1se", "r10t"}
    assert {r["strategy"]: r["to_random"] for r in table}["r10t"] == "-"  # it did not search


@pytest.mark.parametrize(("left", "setup", "epoch"), [
    (100.0, 0.3, 2.0), (100.0, 0.3, 2.9), (37.5, 1.2, 0.7), (5.0, 0.5, 3.0), (1000.0, 0.2, 13.3)])
def test_search_quality_final_run_spends_its_budget_to_half_an_epoch(sq, left, setup, epoch):
    n = sq.final_epochs(left, setup, epoch)
    assert n >= 1 and abs(setup + n * epoch - left) <= epoch / 2 + 1e-9
    assert sq.final_epochs(setup + 0.4 * epoch, setup, epoch) == 0  # under half an epoch left


def test_search_quality_warns_when_one_label_ran_two_spaces(sq, tmp_path, capsys):
    runs = _verdict_runs()
    for r in runs:
        r["fingerprint"] = "aaa"
    assert sq.mixed_labels(runs) == []
    runs[2]["fingerprint"] = "bbb"  # dataset a, shipped, seed 0: another space than its seeds
    assert sq.mixed_labels(runs) == [("# warning: a @ 100 s: strategy shipped mixes runs of 2 "
                                      "different spaces or specs; give each its own label")]
    path = tmp_path / "r.txt"
    path.write_text("".join(f"# run {json.dumps(r)}\n" for r in runs) + "# other comment\n")
    assert sq.main(["--summarise", str(path)]) == 0
    assert "# warning: a @ 100 s: strategy shipped mixes" in capsys.readouterr().out


def test_search_quality_counts_a_run_repeated_in_two_files_once(sq, tmp_path, capsys):
    """Baselines copied into two results files summarised together are one set of seeds: the
    repeats would double n and shrink the standard error."""
    runs = _verdict_runs()
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    one.write_text("".join(f"# run {json.dumps(r)}\n" for r in runs))
    baselines = [r for r in runs if r["strategy"] in ("random", "default")]
    two.write_text("".join(f"# run {json.dumps(r)}\n" for r in baselines))
    assert sq.read_runs([str(one), str(two)]) == runs
    assert f"# note: {len(baselines)} run line(s) repeat a run" in capsys.readouterr().out
    assert sq.main(["--summarise", str(one), str(two)]) == 0
    random = [r for r in tables(capsys.readouterr().out)[0] if r["strategy"] == "random"]
    assert {r["seeds"] for r in random} == {"5"}


def test_search_quality_startup_table_ranks_the_best_after_the_first_trials(sq):
    """The start-up table scores the running best after the first k trials (not the end) and
    names the backbone each search trained at the end, with its mean held-out accuracy."""
    def run(label, seed, at_k, end, backbone):
        r = _rec("a", label, seed, end, curve=[[1.0 * i, "C", 0.1 * i, i] for i in range(1, 4)] +
                 [[9.0, "C", 0.9, 9]], scored={"1": 0.1, "2": 0.2, "3": at_k, "9": end})
        return {**r, "chosen": {"backbone": backbone}}

    runs = [run("portfolio", s, 0.6, 0.8, "resnet18") for s in range(2)] + \
        [run("random", s, 0.4, 0.9, "resnet10t") for s in range(2)]
    lines = sq.startup_lines(runs, first=3)
    rows = {line.split()[2]: line.split() for line in lines[3:]}
    assert rows["portfolio"][4] == "0.6" and rows["portfolio"][6] == "1/2"  # after 3, not at the end
    assert rows["random"][4] == "0.4" and rows["random"][6] == "2/2"
    assert "resnet18 x2 (0.800)" in lines[3 + list(rows).index("portfolio")]
    assert sq.startup_lines(runs, first=5) == []  # no run has 5 trials: no table


def test_search_quality_chosen_table_pools_strategies_by_backbone_against_the_default(sq):
    """Every searching strategy's final models, pooled by chosen backbone, against the default:
    the ceiling a choice among those backbones could reach."""
    runs = [{**_rec("a", label, seed, h), "chosen": {"backbone": b}}
            for seed, (label, h, b) in enumerate([("gp", 0.90, "resnet10t"),
                                                  ("random", 0.86, "resnet10t"),
                                                  ("gp", 0.70, "resnet18"),
                                                  ("random", 0.74, "resnet18")])]
    runs += [{**_rec("a", "default", s, h), "chosen": {"backbone": "resnet18"}}
             for s, h in enumerate([0.84, 0.86])]
    lines = sq.chosen_lines(runs)
    rows = [line.split() for line in lines[3:]]
    assert [r[2] for r in rows] == ["resnet10t", "resnet18"]  # best group first
    assert rows[0][3:5] == ["2", "0.88"] and rows[0][6] == "0.85" and rows[0][8] == "+0.0300"
    assert rows[1][3:5] == ["2", "0.72"] and rows[1][8] == "-0.1300"  # the default not pooled
    assert sq.chosen_lines([r for r in runs if r["strategy"] != "default"]) == []


def test_gpu_check_step_ends_a_hung_step_says_where_and_goes_on(tmp_path):
    """bench/gpu_check.sh runs each check through `step` (bench/_step.sh): a hang is ended at
    the limit with Python's traceback of where it stood, and the next check still runs."""
    import subprocess

    hang = tmp_path / "hang.py"
    # The limit leaves a loaded CI machine time to start Python and reach the function (at 2 s
    # the abort once landed while the interpreter was still starting up).
    hang.write_text("import time\n\ndef waiting_for_cuda():\n    print('sleeping', flush=True)\n"
                    "    time.sleep(60)\n\nwaiting_for_cuda()\n")
    script = (f"set -euo pipefail; source {BENCH / '_step.sh'}; step python {hang}; "
              "step false; echo next check ran")
    env = {**os.environ, "GPU_CHECK_STEP_S": "6", "PYTHONFAULTHANDLER": "1"}
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "sleeping" in out, out  # it got there before the limit
    assert "in waiting_for_cuda" in out, out  # faulthandler: where the hung process stood
    assert re.search(r"!! timed out after [67] s \(limit 6 s, rc 1(24|34|37)\)", out), out
    assert "!! failed with rc 1 after" in out and "next check ran" in out
    text = (BENCH / "gpu_check.sh").read_text()
    assert "source bench/_step.sh" in text and "PYTHONFAULTHANDLER=1" in text
    for check in ('step "${vcr[@]}" run ', "step python bench/gpu.py"):
        assert check in text, check


def test_search_quality_val_sets_each_datasets_validation_split(sq, capsys):
    """`--val`: the search scores on that many validation images per dataset (the header says
    so, and a run line's `data` keeps it); a count per dataset or a one-line exit 2."""
    assert sq.main(["--quick", "--val", "60", "25", "--estimate"]) == 0
    out = capsys.readouterr().out
    got = re.search(r"# dataset quick: synthetic, \d+ train / (\d+) val images", out)
    assert got and abs(int(got[1]) - 60) <= 3, out  # split per class: within a few (20 unset)
    assert "# dataset digits-quick: digits, 40 train / 25 val images" in out
    with pytest.raises(SystemExit) as exc:
        sq.main(["--quick", "--val", "12", "--estimate"])
    assert exc.value.code == 2
    assert "--val: one positive count per --datasets entry (2), got [12]" in capsys.readouterr().err
