"""Bad input through the installed CLI: exit 2, one stderr line naming what and where, no
traceback, and no storage file changed or created."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    expect: tuple[str, ...]  # substrings of the one stderr line: what, where, the rule
    env: dict[str, str] = field(default_factory=dict)
    no_dac: bool = False  # run without root's permission override (mode 000 files)
    diff_lines: bool = False  # a changed space is refused with the one line plus an indented diff


def _space_text(campaign, **kw) -> str:
    return campaign.FAST_SPACE.format(**{"name": "bad", "epochs": 1, "samples": 16,
                                         "synthetic": 24, "sampler": "Random", **kw})


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


# name -> function of the good space text giving a bad one
SPACES = {
    "syntax": lambda t: "study: {name: x\nhyperparameters: [\n",
    "tabs": lambda t: "study:\n\tname: x\n",
    "empty": lambda t: "",
    "toplist": lambda t: "- study\n- fixed\n",
    "unknown_top": lambda t: t + "extras: 1\n",
    "typo_key": lambda t: _edit(t, "log: true,", "lgo: true,"),
    "low_high": lambda t: _edit(t, "low: 1.0e-3, high: 1.0e-2", "low: 1.0e-2, high: 1.0e-3"),
    "nan_bound": lambda t: _edit(t, "low: 0.0, high: 0.5, step: 0.1", "low: .nan, high: 0.5"),
    "log_step": lambda t: _edit(t, "log: true,", "log: true, step: 0.001,"),
    "step_divide": lambda t: _edit(t, "step: 0.1", "step: 0.3"),
    "dup_choices": lambda t: _edit(t, "[sgd, adam]", "[sgd, sgd]"),
    "string_choices": lambda t: _edit(t, "[sgd, adam]", "sgd"),
    "unknown_optimizer": lambda t: _edit(t, "[sgd, adam]", "[sgd, adamx]"),
    "unknown_backbone_fixed": lambda t: _edit(t, "backbone: resnet10t", "backbone: resnet99"),
    "unknown_backbone_choice": lambda t: _edit(
        t, "  optimizer:", "  backbone: {type: categorical, choices: [resnet18, resnet99]}\n  optimizer:"
    ).replace("  backbone: resnet10t\n", ""),
    "unknown_sampler": lambda t: _edit(t, "type: Random", "type: Randon"),
    "unknown_pruner": lambda t: _edit(t, "MedianPruner", "MeanPruner"),
    "sampler_arg": lambda t: _edit(t, "type: Random, seed: 11", "type: Random, sed: 11"),
    "input_size": lambda t: _edit(t, "image_size: 32", "input_size: 32"),
    "image_size_range": lambda t: _edit(t, "image_size: 32", "image_size: 8"),
    "when_unknown": lambda t: _edit(t, "when: {loss_fn: focal}", "when: {loss: focal}"),
    "quoted_number": lambda t: _edit(t, "low: 1.0e-3,", 'low: "1.0e-3",'),
    "direction_metric": lambda t: _edit(t, "metric: val_acc", "metric: val_loss"),
    "unknown_metric": lambda t: _edit(t, "metric: val_acc", "metric: accuracy"),
    "n_trials_zero": lambda t: _edit(t, "n_trials: 4", "n_trials: 0"),
    "weights_missing": lambda t: _edit(t, "device: cpu", "device: cpu\n  weights: /nonexistent/w.pth"),
    "pretrained_offline": lambda t: _edit(t, "device: cpu", "device: cpu\n  pretrained: true"),
    "no_params": lambda t: t.split("hyperparameters:")[0] + "fixed: {epochs: 1}\n",
}

SPACE_EXPECT = {
    "syntax": ("syntax.yaml",),
    "tabs": ("tabs.yaml",),
    "empty": ("empty.yaml",),
    "toplist": ("toplist.yaml",),
    "unknown_top": ("unknown_top.yaml", "extras"),
    "typo_key": ("typo_key.yaml", "hyperparameters.lr", "lgo"),
    "low_high": ("low_high.yaml", "hyperparameters.lr"),
    "nan_bound": ("nan_bound.yaml", "hyperparameters.dropout"),
    "log_step": ("log_step.yaml", "hyperparameters.lr"),
    "step_divide": ("step_divide.yaml", "hyperparameters.dropout"),
    "dup_choices": ("dup_choices.yaml", "hyperparameters.optimizer"),
    "string_choices": ("string_choices.yaml", "hyperparameters.optimizer"),
    "unknown_optimizer": ("unknown_optimizer.yaml", "adamx"),
    "unknown_backbone_fixed": ("unknown_backbone_fixed.yaml", "fixed.backbone", "resnet99"),
    "unknown_backbone_choice": ("unknown_backbone_choice.yaml", "hyperparameters.backbone", "resnet99"),
    "unknown_sampler": ("unknown_sampler.yaml", "study.sampler", "Randon"),
    "unknown_pruner": ("unknown_pruner.yaml", "study.pruner", "MeanPruner"),
    "sampler_arg": ("sampler_arg.yaml", "study.sampler", "sed"),
    "input_size": ("input_size.yaml", "fixed.input_size"),
    "image_size_range": ("image_size_range.yaml", "fixed.image_size"),
    "when_unknown": ("when_unknown.yaml", "hyperparameters.focal_gamma.when"),
    "quoted_number": ("quoted_number.yaml", "hyperparameters.lr.low"),
    "direction_metric": ("direction_metric.yaml", "study"),
    "unknown_metric": ("unknown_metric.yaml", "study.metric", "accuracy"),
    "n_trials_zero": ("n_trials_zero.yaml", "study.n_trials"),
    "weights_missing": ("weights_missing.yaml", "/nonexistent/w.pth"),
    "pretrained_offline": ("pretrained_offline.yaml", "resnet10t"),
    "no_params": ("no_params.yaml", "hyperparameters"),
}

WORLD = "{world}"  # replaced by the case folder


def _cases() -> list[Case]:
    ok = ("run", "--space", "ok.yaml")
    db = f"sqlite:///{WORLD}/existing.db"
    new = f"sqlite:///{WORLD}/new.db"
    cases = [Case(f"space-{name}", ("run", "--space", f"spaces/{name}.yaml"), SPACE_EXPECT[name])
             for name in SPACES]
    cases += [
        # files
        Case("space-missing", ("run", "--space", "nope.yaml"), ("nope.yaml", "not found")),
        Case("space-missing-validate", ("validate", "--space", "nope.yaml"), ("nope.yaml", "not found")),
        Case("space-is-dir", ("run", "--space", "spaces"), ("spaces",)),
        Case("space-not-utf8", ("run", "--space", "spaces/latin1.yaml"), ("latin1.yaml", "UTF-8")),
        Case("space-unreadable", ("run", "--space", "locked.yaml"), ("locked.yaml",), no_dac=True),
        # --set
        Case("set-unknown-field", (*ok, "--set", "bogus=1"), ("--set bogus", "not a trainer field")),
        Case("set-not-int", (*ok, "--set", "epochs=abc"), ("--set epochs", "integer")),
        Case("set-no-equals", (*ok, "--set", "epochs"), ("--set", "key=value")),
        Case("set-empty-key", (*ok, "--set", "=3"), ("--set", "key=value")),
        Case("set-searched", (*ok, "--set", "lr=0.1"), ("--set lr", "searched")),
        Case("set-unknown-backbone", (*ok, "--set", "backbone=resnet99"), ("--set backbone", "resnet99")),
        Case("set-dropout-range", (*ok, "--set", "batch_size=0"), ("--set batch_size", "[1")),
        Case("set-image-size-range", (*ok, "--set", "image_size=8"), ("--set image_size", "[32")),
        Case("set-bool", (*ok, "--set", "amp=maybe"), ("--set amp", "true or false")),
        Case("set-nan", (*ok, "--set", "weight_decay=nan"), ("--set weight_decay", "'nan'")),
        Case("set-device", (*ok, "--set", "device=tpu"), ("--set device", "tpu")),
        Case("set-unknown-scheduler", (*ok, "--set", "scheduler=cosin"), ("--set scheduler", "cosin")),
        Case("set-weights-missing", (*ok, "--set", "weights=/nonexistent/w.pth"),
             ("/nonexistent/w.pth",)),
        # numbers and names on the command line
        Case("n-trials-zero", (*ok, "--n-trials", "0"), ("--n-trials", "> 0")),
        Case("n-trials-negative", (*ok, "--n-trials", "-3"), ("--n-trials",)),
        Case("n-trials-text", (*ok, "--n-trials", "many"), ("--n-trials", "many")),
        Case("n-trials-float", (*ok, "--n-trials", "2.5"), ("--n-trials", "2.5")),
        Case("workers-zero", (*ok, "--workers", "0"), ("--workers", "> 0")),
        Case("workers-text", (*ok, "--workers", "x"), ("--workers", "'x'")),
        Case("timeout-zero", (*ok, "--timeout", "0"), ("--timeout", "> 0")),
        Case("timeout-negative", (*ok, "--timeout", "-1"), ("--timeout",)),
        Case("timeout-text", (*ok, "--timeout", "soon"), ("--timeout", "soon")),
        Case("unknown-option", (*ok, "--bogus"), ("--bogus",)),
        Case("space-flag-missing", ("run",), ("--space",)),
        Case("unknown-command", ("rnu",), ("rnu",)),
        Case("study-name-slash", (*ok, "--study-name", "a/b"), ("--study-name", "a/b")),
        Case("device-tpu", (*ok, "--device", "tpu"), ("--device", "tpu")),
        # data
        Case("data-missing", (*ok, "--data", "no/such/folder"), ("--data", "no/such/folder")),
        Case("data-empty-dir", (*ok, "--data", "data/empty"), ("--data", "data/empty")),
        Case("data-one-class", (*ok, "--data", "data/one_class"), ("--data", "data/one_class")),
        Case("data-unreadable", (*ok, "--data", "data/locked"), ("--data", "data/locked"), no_dac=True),
        Case("data-bad-manifest", (*ok, "--data", "data/bad.jsonl"), ("--data", "bad.jsonl")),
        # storage
        Case("storage-scheme", (*ok, "--storage", "redis://localhost/0"), ("--storage", "redis")),
        Case("storage-no-folder", (*ok, "--storage", "sqlite:///no/such/dir/x.db"),
             ("--storage", "no/such/dir")),
        Case("storage-memory", (*ok, "--storage", "sqlite:///:memory:"), ("--storage", "memory")),
        Case("storage-not-url", (*ok, "--storage", "existing.db"), ("--storage", "existing.db")),
        Case("storage-pg-refused", (*ok, "--storage", "postgresql://u@127.0.0.1:9/db"),
             ("--storage", "127.0.0.1:9")),
        Case("storage-bad-set-new-file", (*ok, "--storage", new, "--set", "epochs=0"),
             ("--set epochs",)),
        # an existing study
        Case("direction-mismatch", (*ok, "--storage", f"sqlite:///{WORLD}/minimize.db"),
             ("--storage", "minimize", "maximize")),
        Case("changed-space", ("run", "--space", "changed.yaml", "--storage", db, "--study-name", "bad"),
             ("--storage", "bad", "--allow-space-change"), diff_lines=True),
        Case("status-unknown-study", ("status", "--storage", db, "--study-name", "nosuch"),
             ("--study-name", "nosuch")),
        Case("best-unknown-study", ("best", "--storage", db, "--study-name", "nosuch", "-o", "x.yaml"),
             ("--study-name", "nosuch")),
        Case("report-unknown-study", ("report", "--storage", db, "--study-name", "nosuch", "-o", "rep"),
             ("--study-name", "nosuch")),
        Case("status-missing-file", ("status", "--storage", f"sqlite:///{WORLD}/gone.db"),
             ("--storage", "gone.db")),
        Case("best-missing-file", ("best", "--storage", f"sqlite:///{WORLD}/gone.db"),
             ("--storage", "gone.db")),
        Case("dashboard-remote", ("dashboard", "--storage", db, "--host", "0.0.0.0"),
             ("--host", "0.0.0.0")),
        Case("train-config-missing", ("train", "--config", "nope.yaml"), ("nope.yaml",)),
        Case("train-config-bad", ("train", "--config", "spaces/syntax.yaml"), ("syntax.yaml",)),
        # the environment
        Case("env-grace-text", ok, ("$VCR_HPO_GRACE", "soon"), env={"VCR_HPO_GRACE": "soon"}),
        Case("env-grace-short", ok, ("$VCR_HPO_GRACE",),
             env={"VCR_HPO_HEARTBEAT": "5", "VCR_HPO_GRACE": "5"}),
    ]
    return cases


CASES = _cases()


def _tree(root: Path) -> dict[str, str]:
    """Every file under root (relative path -> sha256); folders as "dir"."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(cli, campaign, tmp_path_factory):
    """One folder every case runs in: spaces, data sources and two real study files."""
    root = tmp_path_factory.mktemp("world")
    text = _space_text(campaign)
    (root / "ok.yaml").write_text(text)
    spaces = root / "spaces"
    spaces.mkdir()
    for name, make in SPACES.items():
        (spaces / f"{name}.yaml").write_text(make(text))
    (spaces / "latin1.yaml").write_bytes(text.replace("name: bad", "name: caf\xe9").encode("latin-1"))
    locked = root / "locked.yaml"
    locked.write_text(text)
    locked.chmod(0o000)
    (root / "changed.yaml").write_text(_edit(text, "high: 0.5, step: 0.1", "high: 0.4, step: 0.1"))
    data = root / "data"
    (data / "empty").mkdir(parents=True)
    (data / "one_class" / "red").mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8), (255, 0, 0)).save(data / "one_class" / "red" / "a.png")
    (data / "locked" / "red").mkdir(parents=True)
    (data / "locked" / "blue").mkdir()
    (data / "locked").chmod(0o000)
    (data / "bad.jsonl").write_text('{"path": "a.png", "label": "red"}\nnot json\n')
    # a real study with one finished trial, and a study that minimises
    made = cli.run(["run", "--space", "ok.yaml", "--storage", f"sqlite:///{root}/existing.db",
                    "--n-trials", "1", "--quiet"], root, timeout=300)
    assert made.code == 0, made.err
    optuna.create_study(study_name="bad", storage=f"sqlite:///{root}/minimize.db", direction="minimize")
    yield root
    (data / "locked").chmod(0o755)


def _check(case: Case, result, before: dict, after: dict) -> list[str]:
    """Problems with one case's outcome (empty when it behaves)."""
    problems = []
    lines = result.err_lines
    if result.timed_out:
        problems.append("timed out")
    if result.code != 2:
        problems.append(f"exit {result.code}, expected 2")
    if "Traceback" in result.err:
        problems.append("traceback on stderr")
    if case.diff_lines:
        if not lines or any(not line.startswith("  ") for line in lines[1:]) or len(lines) < 2:
            problems.append(f"expected one line and an indented diff, got {len(lines)} lines")
    elif len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines, expected 1")
    first = lines[0] if lines else ""
    missing = [s for s in case.expect if s not in first]
    if missing:
        problems.append(f"stderr line lacks {missing}")
    if before != after:
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        problems.append(f"files changed or created: {changed}")
    return problems


def _resolve(case: Case, root: Path) -> Case:
    return Case(case.id, tuple(a.replace(WORLD, str(root)) for a in case.argv), case.expect,
                case.env, case.no_dac, case.diff_lines)


def test_at_least_50_distinct_cases():
    assert len(CASES) >= 50
    assert len({c.id for c in CASES}) == len(CASES)
    assert len({c.argv + tuple(sorted(c.env.items())) for c in CASES}) == len(CASES)


def test_bad_input_exits_2_with_one_line_and_writes_nothing(cli, world):
    failures = {}
    for case in (_resolve(c, world) for c in CASES):
        before = _tree(world)
        result = cli.run(case.argv, world, env=case.env, no_dac=case.no_dac, timeout=120)
        problems = _check(case, result, before, _tree(world))
        if problems:
            failures[case.id] = (problems, result.err.strip()[-600:])
    assert not failures, "\n".join(f"{k}: {p}\n    {err}" for k, (p, err) in failures.items())


FRESH = ["space-syntax", "data-unreadable", "storage-pg-refused"]  # one round of the pool


def test_fresh_processes_answer_like_the_zygote(cli, world):
    """The same cases in new `vcr-hpo` processes (a user's shell): same exit code and message."""
    from concurrent.futures import ThreadPoolExecutor

    chosen = [_resolve(c, world) for c in CASES if c.id in FRESH]
    assert len(chosen) == len(FRESH)
    before = _tree(world)
    with ThreadPoolExecutor(3) as pool:
        fresh = list(pool.map(lambda c: cli.fresh(c.argv, world, env=c.env, no_dac=c.no_dac), chosen))
    for case, got in zip(chosen, fresh):
        assert _check(case, got, before, before) == [], (case.id, got.err)
        again = cli.run(case.argv, world, env=case.env, no_dac=case.no_dac)
        assert (got.code, got.err) == (again.code, again.err), case.id
    assert _tree(world) == before
