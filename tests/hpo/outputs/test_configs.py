"""best -> train round trip, best per backbone, report plots and status on a real study."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState

from hpo.cli import main
from hpo.config import TrainConfig
from hpo.outputs.configs import read_config, trial_config
from hpo.space import load_search_space
from hpo.study import build_storage, study_status

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def _study(url, name="tiny"):
    return optuna.load_study(study_name=name, storage=url)


def _best(trials):
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return max(done, key=lambda t: (t.value, -t.number))


@pytest.mark.slow
def test_best_then_train_round_trip(tiny_study, tmp_path, capsys):
    url, _, space_file = tiny_study
    out = tmp_path / "best.yaml"
    assert main(["best", "--storage", url, "-o", str(out)]) == 0
    best = _best(_study(url).trials)
    assert f"trial #{best.number}" in capsys.readouterr().out
    exported = read_config(out)
    # what the objective trained: the space's fixed values + the trial's params (no overrides)
    assert exported == load_search_space(space_file).config_for(best.params)
    assert exported == TrainConfig.from_dict(yaml.safe_load(out.read_text()))
    assert exported.backbone == best.params["backbone"] and exported.lr == best.params["lr"]

    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(out), "--out", str(run_dir)]) == 0  # accepted unchanged
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["history"]) == exported.epochs
    assert (run_dir / "model.pt").stat().st_size > 100_000
    assert read_config(run_dir / "config.yaml") == exported


def test_best_per_backbone_writes_one_file_per_backbone(tiny_study, tmp_path, capsys):
    url, _, _ = tiny_study
    study = _study(url)
    assert main(["best", "--storage", url, "--per", "backbone", "-o", str(tmp_path / "best.yaml")]) == 0
    by_backbone = {}
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            by_backbone.setdefault(t.params["backbone"], []).append(t)
    files = sorted(p.name for p in tmp_path.glob("best-*.yaml"))
    assert files == sorted(f"best-{b}.yaml" for b in by_backbone)
    for backbone, trials in by_backbone.items():
        cfg = read_config(tmp_path / f"best-{backbone}.yaml")
        assert cfg == trial_config(study, _best(trials))


def test_best_without_a_completed_trial_exits_1(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(study_name="empty", storage=url)
    assert main(["best", "--storage", url]) == 1
    err = capsys.readouterr().err
    assert "no COMPLETE trial yet" in err and not (tmp_path / "best.yaml").exists()


@pytest.mark.parametrize("content, rule", [
    ("lr: 0.1\nbogus: 3\n", "bogus: not a trainer field"),
    ("- a\n- b\n", "must be a mapping of TrainConfig fields"),
    ("epochs: 0\n", "epochs: must lie in"),
])
def test_train_rejects_a_bad_config_with_exit_2(content, rule, tmp_path, capsys):
    path = tmp_path / "cfg.yaml"
    path.write_text(content)
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and rule in err[0] and str(path) in err[0]


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("html", b"<!doctype html>")])
def test_report_on_3_trials_names_the_count_and_skips_importances(fmt, magic, tiny_study,
                                                                   tmp_path, capsys):
    url, _, _ = tiny_study
    assert main(["report", "--storage", url, "-o", str(tmp_path), "--format", fmt]) == 0
    out, err = capsys.readouterr()
    best = _best(_study(url).trials).number
    stems = ["history-3trials", "intermediate-3trials", f"confusion-trial{best}",
             "backbones-3trials", "num_params-3trials", "parallel-3trials"]
    assert out.split() == [str(tmp_path / f"{s}.{fmt}") for s in stems] + [
        str(tmp_path / "index.html")]
    assert "skipped importances: needs at least 10 COMPLETE trials for a stable ranking, got 3" in err
    extra = ["plotly.min.js"] if fmt == "html" else []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{s}.{fmt}" for s in stems] + ["index.html", "index.json", *extra])
    for stem in ("history", "intermediate"):
        data = (tmp_path / f"{stem}-3trials.{fmt}").read_bytes()
        assert data.startswith(magic) and len(data) > 5_000, stem
        if fmt == "html":
            kind = "trials reporting" if stem == "intermediate" else "COMPLETE trials"
            assert b"Plotly.newPlot" in data and f"(3 {kind})".encode() in data


def test_status_shows_counts_best_and_top(tiny_study, capsys):
    url, _, _ = tiny_study
    study = _study(url)
    best = _best(study.trials)
    assert main(["status", "--storage", url, "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "finished 3/3; 3 complete" in out
    assert f"best #{best.number}: val_acc={best.value:.4f}" in out
    table = out.split("top 2:")[1].strip().splitlines()
    assert len(table) == 4 and table[2].split()[0] == str(best.number)


def _queries(storage, name) -> int:
    seen = []
    listener = lambda *a, **k: seen.append(a[2])
    sqlalchemy.event.listen(storage.engine, "before_cursor_execute", listener)
    try:
        st = study_status(storage, name, top=3)
    finally:
        sqlalchemy.event.remove(storage.engine, "before_cursor_execute", listener)
    return len(seen), st


def test_status_issues_the_same_queries_for_30_or_300_trials(tmp_path):
    """Storage-level counting: the work of `status` does not grow with the study."""
    counts = []
    for n in (30, 300):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = build_storage(f"sqlite:///{tmp_path / f'{n}.db'}", heartbeat_interval=None)
        study = optuna.create_study(study_name="big", storage=storage, direction="maximize")
        study.add_trials([
            optuna.trial.create_trial(
                state=TrialState.COMPLETE if i % 3 else TrialState.PRUNED, value=(i * 37 % 101) / 100,
                params={"lr": 1e-3 * (1 + i % 7)},
                distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1)},
                intermediate_values={0: 0.1})
            for i in range(n)])
        queries, st = _queries(storage, "big")
        counts.append(queries)
        assert st.counts["COMPLETE"] == sum(1 for i in range(n) if i % 3)
        assert st.counts["PRUNED"] == sum(1 for i in range(n) if not i % 3)
        expected = sorted((t for t in study.trials if t.state == TrialState.COMPLETE),
                          key=lambda t: (-t.value, t.number))[:3]
        assert [t.number for t in st.top] == [t.number for t in expected]
    assert counts[0] == counts[1]


@pytest.mark.slow
def test_status_loads_no_torch(tiny_study):
    """`vcr-hpo status` reads the storage only: a fresh process never imports torch or timm."""
    url, _, _ = tiny_study
    code = (f"import sys; from hpo.cli import main; rc = main(['status', '--storage', {url!r}]); "
            "heavy = sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules); "
            "print('HEAVY', heavy); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "finished 3/3" in out.stdout and "HEAVY []" in out.stdout


# --- the seed's config.yaml layout (seeds/backbones.md: `train: {backbone: "resnet50"}`)


def test_read_config_accepts_the_seed_layout_without_a_word(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text('train:\n  backbone: "resnet50"  # or "efficientnet_b0"\n')
    assert read_config(path) == TrainConfig(backbone="resnet50")
    assert capsys.readouterr().err == ""


def test_read_config_seed_layout_names_what_it_ignores_in_one_line(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  num_classes: 10\ntrain:\n  backbone: resnet34\n  epochs: 7\n"
                    "  num_epochs: 30\n  lr: 0.01\n  log_dir: runs/\ndata:\n  root: /data\n")
    notes: list[str] = []
    assert read_config(path, warn=notes.append) == TrainConfig(backbone="resnet34", epochs=7,
                                                               lr=0.01)
    expected = (f"{path}: read the trainer fields under train:; ignored, not trainer fields: "
                "train.num_epochs, train.log_dir, model, data")
    assert notes == [expected]
    read_config(path)  # default: the same line on stderr
    assert capsys.readouterr().err == f"warning: {notes[0]}\n"


@pytest.mark.parametrize("content, rule", [
    ("train: resnet50\n", "train: must be a mapping of trainer fields, got 'resnet50'"),
    ("train:\n", "train: must be a mapping of trainer fields, got None"),
    ("train: {backbone: resnet18}\nepochs: 3\n", "epochs: a trainer field beside train:, got 3"),
    ("train: {backbone: resnet81}\n", "backbone: unknown backbone 'resnet81'"),
    ("train: {epochs: 0}\n", "epochs: must lie in"),
])
def test_train_rejects_a_bad_seed_layout_with_exit_2(content, rule, tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(content)
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and rule in err[0] and str(path) in err[0], err


def test_train_runs_the_seed_layout(tmp_path, capsys):
    """Regression: `vcr-hpo train --config` refused it ("train: not a trainer field")."""
    path = tmp_path / "config.yaml"
    path.write_text("train:\n  backbone: resnet10t\n  epochs: 1\n  synthetic_size: 40\n"
                    "  image_size: 32\n  batch_size: 16\n  device: cpu\n  optimiser: adam\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert f"warning: {path}: read the trainer fields under train:; ignored, not trainer " \
           "fields: train.optimiser\n" in err
    saved = read_config(tmp_path / "run" / "config.yaml")  # written flat
    assert saved == TrainConfig(backbone="resnet10t", epochs=1, synthetic_size=40, image_size=32,
                                batch_size=16, device="cpu")
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]) == 1
