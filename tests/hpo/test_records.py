"""Per-image validation records and the paired comparison with the default, on real SQLite
studies and a real folder artifact store; the sentence in status, best, the summary and report."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import optuna
import pytest

from hpo.attrs import ATTR_SPACE_YAML, STEP_COST
from hpo.cli import main
from hpo.errors import VcrHpoError
from hpo.paired import (
    default_comparison,
    describe_diff,
    one_se_choice,
    p_worse,
    paired_interval,
    paired_se,
)
from hpo.records import VALUE_STEP_ATTR, ValRecord, decode_record, encode_record, val_key
from hpo.run.console import summary_lines
from hpo.trial.artifacts import ATTR_ARTIFACTS, artifact_store
from hpo.trial.record_store import (
    StoreRecords,
    load_record,
    record_steps,
    study_default_comparison,
    write_record,
)

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

KEY = val_key(np.arange(2000) % 10)
SPACE = """\
study: {name: pairs, metric: val_acc, direction: maximize}
hyperparameters:
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true, default: 1.0e-3}
fixed: {epochs: 2, image_size: 32}
"""


def _open(tmp_path, name="pairs", metric="val_acc", direction="maximize"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    study = optuna.create_study(study_name=name, storage=url, direction=direction)
    study.set_metric_names([metric])
    study.set_user_attr(ATTR_SPACE_YAML, SPACE)
    location = str(tmp_path / "art")
    study.set_user_attr(ATTR_ARTIFACTS, location)  # what a run records (hpo.run.api)
    return study, url, artifact_store(url, name, location)


def _run_trial(study, store, curve, *, lr=1e-3, value_step=None, key=KEY, state="complete",
               cost=None):
    """A trial that reports curve = [(step, correct bools), ...], with a record per step
    (and `cost`, its seconds per training image, as trial_length: compute records it)."""
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)})
    if cost is not None:
        trial.set_user_attr(STEP_COST, cost)
    rng = np.random.default_rng(trial.number)
    for step, correct in curve:
        loss = np.where(correct, 0.2, 2.0) + rng.random(len(correct)) * 0.1
        write_record(trial, store, step, correct, loss, key)
        trial.report(float(np.mean(correct)), step)
    if state == "running":
        return trial
    if state == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return trial
    steps = dict(curve)
    best = value_step if value_step is not None else max(steps, key=lambda s: steps[s].mean())
    trial.set_user_attr(VALUE_STEP_ATTR, best)
    study.tell(trial, float(steps[best].mean()))
    return trial


def _flip(correct, rng, *, up=0, down=0):
    """A copy with `up` wrong images made right and `down` right ones made wrong."""
    out = correct.copy()
    wrong, right = np.flatnonzero(~correct), np.flatnonzero(correct)
    out[rng.choice(wrong, up, replace=False)] = True
    out[rng.choice(right, down, replace=False)] = False
    return out


def _base(n=2000, acc=0.8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(n) < acc


# --- records


def test_records_written_and_read_back_by_trial_and_step(tmp_path):
    study, _, store = _open(tmp_path)
    rng = np.random.default_rng(1)
    curve = [(s, rng.random(2000) < 0.5 + 0.1 * s) for s in range(3)]
    t = _run_trial(study, store, curve)
    again = optuna.load_study(study_name="pairs", storage=f"sqlite:///{tmp_path / 'p.db'}")
    frozen = again.trials[t.number]
    assert record_steps(frozen) == [0, 1, 2]
    for step, correct in curve:
        rec = load_record(again, t.number, step)
        assert rec.correct.dtype == bool and np.array_equal(rec.correct, correct)
        assert rec.accuracy == pytest.approx(frozen.intermediate_values[step])
        assert rec.key == KEY and len(rec) == 2000
        assert 0.2 <= rec.loss.min() and rec.loss.max() <= 2.1  # float16 keeps 3 digits
    assert frozen.value == load_record(again, t.number, frozen.user_attrs[VALUE_STEP_ATTR]).accuracy
    with pytest.raises(VcrHpoError, match=r"no validation record at step 7, got steps \[0, 1, 2\]"):
        load_record(again, t.number, 7)


def test_record_is_compact_and_decodes_what_it_encodes():
    correct = np.random.default_rng(0).random(2000) < 0.7
    loss = np.linspace(0, 5, 2000, dtype=np.float32)
    data = encode_record(correct, loss, "k")
    assert len(data) == 11 + 1 + 2000 // 8 + 2000 * 2  # header, key, bits, float16 losses
    rec = decode_record(data)
    assert np.array_equal(rec.correct, correct) and rec.key == "k"
    assert np.allclose(rec.loss, loss, rtol=1e-3, atol=1e-3)
    with pytest.raises(VcrHpoError, match="validation record: must be a record vcr-hpo wrote"):
        decode_record(b"not a record")


def test_validation_split_is_the_same_for_every_trial_seed_and_params():
    """Pairing needs one validation set per study: the split does not follow the trial seed."""
    from hpo.config import TrainConfig
    from hpo.data import load_dataset

    a = load_dataset(TrainConfig(synthetic_size=120, image_size=32, seed=1, lr=1e-3, batch_size=8))
    b = load_dataset(TrainConfig(synthetic_size=120, image_size=32, seed=99, lr=5e-2, batch_size=32,
                                 max_train_samples=40))
    assert len(a.val_labels) > 0
    assert np.array_equal(a.val_labels.numpy(), b.val_labels.numpy())
    assert np.array_equal(a.val_images.numpy(), b.val_images.numpy())
    assert val_key(a.val_labels.numpy()) == val_key(b.val_labels.numpy())


def test_evaluation_returns_what_each_image_got_in_the_same_pass():
    import torch
    from torch import nn

    from hpo.train import evaluate_counts, evaluate_images

    class Lookup(nn.Module):  # predicts the class written in the image's first pixel
        def forward(self, x):
            pred = (x[:, 0, 0, 0] * 0.229 + 0.485).mul(255).round().long()
            return nn.functional.one_hot(pred, 3).float() * 10

    truth = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 0, 1, 1, 1, 1])
    images = preds.to(torch.uint8).view(6, 1, 1, 1).expand(6, 3, 4, 4).contiguous()
    cpu = torch.device("cpu")
    loss, acc, f1, confusion, per = evaluate_images(Lookup(), images, truth, 3, device=cpu,
                                                    batch_size=4)  # two batches, one ragged
    assert per.correct.tolist() == [True, True, False, True, True, False]
    assert per.correct.mean() == pytest.approx(acc) and per.loss.mean() == pytest.approx(loss)
    assert per.loss[0] < 1e-3 < per.loss[2]  # right with confidence vs wrong
    assert (loss, acc, f1, confusion) == evaluate_counts(Lookup(), images, truth, 3, device=cpu,
                                                         batch_size=4)


@pytest.mark.slow
def test_trainer_keeps_what_each_validation_image_got():
    import torch

    from hpo.config import TrainConfig
    from hpo.train import build_state, validate

    torch.set_num_threads(1)
    s = build_state(TrainConfig(synthetic_size=80, image_size=32, batch_size=16, epochs=1,
                                device="cpu", backbone="resnet10t"))
    loss, acc, _ = validate(s)
    ev = s.last_eval
    assert len(ev) == len(s.data.val_y)
    assert ev.correct.mean() == pytest.approx(acc)
    assert ev.loss.mean() == pytest.approx(loss, rel=1e-5)
    validate(s, images=5)
    assert len(s.last_eval) == 5  # a mid-epoch report scores the first images


@pytest.mark.slow
def test_objective_writes_a_record_per_epoch_and_the_value_step(tmp_path):
    import torch
    import yaml

    from hpo.run.isolation import IsolatedObjective
    from hpo.space import parse_search_space
    from hpo.trial.objective import Objective

    torch.set_num_threads(1)
    doc = {"study": {"name": "pairs", "metrics": ["val_acc"],
                     "sampler": {"type": "Random", "seed": 0}},
           "hyperparameters": {"lr": {"type": "float", "low": 1e-3, "high": 3e-3, "log": True}},
           "fixed": {"synthetic_size": 80, "image_size": 32, "batch_size": 16, "epochs": 2,
                     "device": "cpu", "scheduler": "none", "backbone": "resnet10t"}}
    space = parse_search_space(yaml.safe_dump(doc), source="t.yaml")
    study, _, store = _open(tmp_path)
    study.optimize(Objective(space, artifacts=store), n_trials=1)
    study.optimize(IsolatedObjective(Objective(space, artifacts=store)), n_trials=1)
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE, t.user_attrs.get("fail_reason")
        assert record_steps(t) == [0, 1]
        for step, value in t.intermediate_values.items():
            assert load_record(study, t.number, step).accuracy == pytest.approx(value)
        assert t.user_attrs[VALUE_STEP_ATTR] == t.user_attrs["best_epoch"]
        rec = load_record(study, t.number, t.user_attrs[VALUE_STEP_ATTR])
        assert rec.accuracy == pytest.approx(t.value)
        assert rec.loss.mean() == pytest.approx(t.user_attrs["best_metrics"]["val_loss"], rel=1e-2)


# --- the paired interval and the sentence


def test_paired_interval_noise_is_not_distinguishable_a_real_gain_is():
    rng = np.random.default_rng(3)
    default = _base()
    noise = _flip(default, rng, up=30, down=30)  # 60 images change, accuracy does not
    d = paired_interval(noise, default)
    assert d.diff == 0 and d.low < 0 < d.high and d.verdict == "tie"
    assert describe_diff(4, d) == ("trial 4 is not distinguishable from the default (+0.0 points, "
                                   f"95% CI {d.low * 100:+.1f} to {d.high * 100:+.1f}, paired on "
                                   "2,000 validation images)")
    better = _flip(default, rng, up=60, down=18)  # +2.1 points
    d = paired_interval(better, default)
    assert d.diff == pytest.approx(0.021) and 0 < d.low < d.diff < d.high
    text = describe_diff(7, d)
    assert text.startswith("trial 7 beats the default by +2.1 points (95% CI +")
    assert text.endswith("paired on 2,000 validation images)")
    worse = _flip(default, rng, up=5, down=60)
    assert describe_diff(3, paired_interval(worse, default)).startswith(
        "trial 3 is behind the default by 2.8 points (95% CI -")


def test_paired_interval_is_narrower_than_unpaired_and_never_a_point():
    rng = np.random.default_rng(5)
    default = _base(n=200)
    better = _flip(default, rng, up=8, down=2)
    d = paired_interval(better, default)
    unpaired = 1.96 * np.sqrt(2 * 0.8 * 0.2 / 200)  # two independent accuracies
    assert d.high - d.low < 2 * unpaired
    same = paired_interval(default, default)
    assert same.low < 0 < same.high  # no discordant image: still an interval, around 0


def test_p_worse_exact_mcnemar_and_loss():
    ref = ValRecord(np.array([True] * 10), np.zeros(10, np.float32))
    mine = ValRecord(np.array([False] * 3 + [True] * 7), np.ones(10, np.float32))
    assert p_worse(mine, ref) == pytest.approx(1 / 8)  # 3 of 3 discordant go against it
    assert p_worse(ref, mine) == 1.0
    assert p_worse(mine, ref, on="loss") == 0.0
    with pytest.raises(ValueError, match="on must be 'correct' or 'loss'"):
        p_worse(mine, ref, on="bits")


def _two_trial_study(tmp_path, up, down, *, n=2000):
    study, url, store = _open(tmp_path)
    rng = np.random.default_rng(11)
    default = _base(n=n)
    _run_trial(study, store, [(0, _base(n=n, acc=0.5, seed=1)), (1, default)])
    _run_trial(study, store, [(0, _base(n=n, acc=0.5, seed=2)), (1, _flip(default, rng, up=up,
                                                                           down=down))])
    return study, url, store


def test_best_against_default_noise_and_real_difference_in_a_study(tmp_path):
    study, _, _ = _two_trial_study(tmp_path / "noise", up=12, down=8)
    text = study_default_comparison(study)
    assert text.startswith("trial 1 is not distinguishable from the default (+0.2 points, 95% CI -")
    study, _, _ = _two_trial_study(tmp_path / "real", up=70, down=10)
    text = study_default_comparison(study)
    assert text.startswith("trial 1 beats the default by +3.0 points (95% CI +")
    assert text.endswith("paired on 2,000 validation images)")


def test_default_comparison_says_why_when_it_cannot_compare(tmp_path):
    study, _, store = _two_trial_study(tmp_path / "a", up=70, down=10)
    best, default = study.trials[1], study.trials[0]
    read = StoreRecords(store).read
    assert default_comparison(best, default, None, "val_acc") == \
        "no paired comparison with the default: the study records no artifact store"
    assert default_comparison(best, default, read, "val_loss").startswith(
        "no paired comparison with the default: the interval is on accuracy and the study's "
        "metric is val_loss")
    assert default_comparison(default, default, read, "val_acc") == \
        "trial 0 (the default) is the best trial"
    assert default_comparison(None, None, read, "val_acc").endswith("no COMPLETE trial yet")
    # an old study: trials without records
    old, _, store = _open(tmp_path / "old")
    for v in (0.5, 0.7):
        old.add_trial(optuna.trial.create_trial(value=v))
    assert study_default_comparison(old) == ("no paired comparison with the default: trial 1 "
                                             "has no validation record (trained before vcr-hpo "
                                             "kept them)")
    # records of another validation set
    other, _, store = _open(tmp_path / "other")
    _run_trial(other, store, [(0, _base())])
    _run_trial(other, store, [(0, _base(acc=0.9))], key="400:0")
    assert "were scored on different validation images" in study_default_comparison(other)
    # a damaged record is a reason, not a traceback
    for path in (tmp_path / "a" / "art").rglob("*"):
        if path.is_file():
            path.write_bytes(b"x")
    assert "validation records cannot be read (VcrHpoError" in study_default_comparison(study)


def test_sentence_in_status_best_summary_and_report(tmp_path, capsys, monkeypatch):
    study, url, _ = _two_trial_study(tmp_path, up=70, down=10)
    sentence = study_default_comparison(study)
    assert sentence.startswith("trial 1 beats the default by +3.0 points")
    monkeypatch.chdir(tmp_path)
    assert main(["status", "--storage", url]) == 0
    assert sentence in capsys.readouterr().out
    assert main(["best", "--storage", url, "-o", str(tmp_path / "best.yaml")]) == 0
    assert sentence in capsys.readouterr().out
    assert "  " + sentence in summary_lines(study)
    out = tmp_path / "report"
    assert main(["report", "--storage", url, "-o", str(out), "--format", "png"]) == 0
    assert sentence in capsys.readouterr().err  # stdout lists the files only
    assert json.loads((out / "index.json").read_text())["vs_default"] == sentence
    assert "beats the default by +3.0 points" in (out / "index.html").read_text()


# --- the one-standard-error rule (study.choose: cheapest_within_1se)

CHOOSE_SPACE = SPACE.replace("direction: maximize}",
                             "direction: maximize, trial_length: compute, "
                             "choose: cheapest_within_1se}")


def _choice_study(tmp_path, space=CHOOSE_SPACE):
    """Trial 0 the best (79.4%, 2 ms per image); trial 1 behind by noise (-0.2 points) at half
    the cost; trial 2 truly behind (-3.5 points) at a quarter; trial 3 behind by noise but
    dearer."""
    study, url, store = _open(tmp_path)
    study.set_user_attr(ATTR_SPACE_YAML, space)
    rng = np.random.default_rng(5)
    best = _base()
    _run_trial(study, store, [(0, best)], cost=2e-3)
    _run_trial(study, store, [(0, _flip(best, rng, up=8, down=12))], cost=1e-3)
    _run_trial(study, store, [(0, _flip(best, rng, up=10, down=80))], cost=5e-4)
    _run_trial(study, store, [(0, _flip(best, rng, up=5, down=6))], cost=3e-3)
    return study, url, store


def test_paired_se_is_the_sd_of_per_image_differences():
    a = np.array([1, 1, 0, 0, 1, 0, 1, 1], dtype=bool)
    b = np.array([1, 0, 1, 0, 1, 0, 0, 1], dtype=bool)
    d = a.astype(float) - b.astype(float)
    assert paired_se(a, b) == pytest.approx(d.std(ddof=1) / np.sqrt(len(d)))
    assert paired_se(a, a) == 0.0
    with pytest.raises(ValueError, match="one length"):
        paired_se(a, b[:3])


def test_one_se_choice_takes_the_cheaper_trial_behind_by_noise_not_one_truly_behind(tmp_path):
    study, _, store = _choice_study(tmp_path)
    records = StoreRecords(store)
    ranked = sorted(study.trials, key=lambda t: -t.value)
    assert [t.number for t in ranked] == [0, 3, 1, 2]

    def read(t):
        return records.read(t, t.user_attrs[VALUE_STEP_ATTR])

    def cost(t):
        return t.user_attrs[STEP_COST]

    chosen, why = one_se_choice(ranked, read, cost)
    assert chosen.number == 1, why  # not 2 (truly behind), not 3 (within noise, dearer)
    assert why.startswith("trial 1, the cheapest within one standard error of the best "
                          "(trial 0): -0.2 points (SE 0.")
    assert why.endswith("paired on 2,000 validation images), 2.00x cheaper per training image")
    # trial 2 alone: 3.5 points behind is far beyond one SE (about 0.5 points here)
    chosen, why = one_se_choice([ranked[0], ranked[3]], read, cost)
    assert chosen.number == 0
    assert why == "trial 0, the best: no cheaper trial is within one standard error of it"
    # a trial without a cost or a record is no candidate; a best without one is kept, said why
    assert one_se_choice(ranked, read, lambda t: None if t.number == 1 else cost(t))[0].number == 0
    assert one_se_choice(ranked, lambda t: None if t.number == 1 else read(t),
                         cost)[0].number == 0
    chosen, why = one_se_choice(ranked, lambda t: None, cost)
    assert chosen.number == 0 and why == ("trial 0, the best: it has no validation record to "
                                          "compare others on")
    assert one_se_choice([], read, cost) == (None, "no COMPLETE trial yet")
    # trials further behind than one SE can reach (1/sqrt(n - 1): 2.2 points on 2,000 images)
    # are never read: trial 2 is 3.5 points behind
    seen = []
    one_se_choice(ranked, lambda t: seen.append(t.number) or read(t), cost)
    assert seen == [0, 1], seen  # 3 costs more than the best: its record is not needed either


def test_best_exports_the_cheapest_within_1se_and_says_why(tmp_path, capsys, monkeypatch):
    study, url, _ = _choice_study(tmp_path / "a")
    monkeypatch.chdir(tmp_path)
    assert main(["best", "--storage", url, "-o", str(tmp_path / "best.yaml")]) == 0
    out = capsys.readouterr().out
    assert "study.choose: cheapest_within_1se -> trial 1, the cheapest within one standard " \
           "error of the best (trial 0)" in out
    assert "trial #1 val_acc=0.7920" in out
    assert "trial #1:" in (tmp_path / "best.yaml").read_text()
    lines = summary_lines(study)
    assert "best trial #0: val_acc=0.7940" in lines  # the ranking is unchanged
    assert any(line.startswith("to train (study.choose: cheapest_within_1se): trial 1, the "
                               "cheapest") for line in lines), lines
    # choose: best (the default): the best trial, no line
    plain, url, _ = _choice_study(tmp_path / "b", space=CHOOSE_SPACE.replace(
        "choose: cheapest_within_1se", "choose: best"))
    assert main(["best", "--storage", url, "-o", str(tmp_path / "plain.yaml")]) == 0
    out = capsys.readouterr().out
    assert "study.choose" not in out and "trial #0 val_acc=0.7940" in out
    assert not any("to train" in line for line in summary_lines(plain))


@pytest.mark.slow
def test_status_reads_records_without_torch(tmp_path):
    _study, url, _ = _two_trial_study(tmp_path, up=70, down=10)
    code = (f"import sys; from hpo.cli import main; rc = main(['status', '--storage', {url!r}]); "
            "heavy = sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules); "
            "print('HEAVY', heavy); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout
    assert "trial 1 beats the default by +3.0 points" in out.stdout
