"""What a trial shows: confusion counts from the trainer's own pass, figures, trial artifacts."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from torch import nn

from hpo.config import TrainConfig
from hpo.data import COLOUR_CLASSES
from hpo.space import parse_search_space
from hpo.study import build_storage
from hpo.train import EpochMetrics, build_state, evaluate, evaluate_counts, train_epoch
from hpo.trial.artifact_kinds import CONFUSION_JSON
from hpo.trial.artifacts import artifact_store, download, list_trial_artifacts
from hpo.trial.figures import confusion_summary, write_trial_figures
from hpo.trial.objective import Objective

pytestmark = [pytest.mark.usefixtures("one_thread"),  # tests._threads
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

PNG = b"\x89PNG\r\n\x1a\n"
TINY = {"synthetic_size": 80, "image_size": 32, "batch_size": 16, "epochs": 2, "device": "cpu",
        "scheduler": "none", "backbone": "resnet10t"}
COLOURS = [c[0] for c in COLOUR_CLASSES]


class _Lookup(nn.Module):
    """Predicts the class written in the image's first pixel."""

    def forward(self, x):
        pred = (x[:, 0, 0, 0] * 0.229 + 0.485).mul(255).round().long()
        return torch.nn.functional.one_hot(pred, 3).float() * 10


def test_evaluate_counts_returns_the_confusion_of_the_same_pass():
    truth = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 0, 1, 1, 1, 1])
    images = preds.to(torch.uint8).view(6, 1, 1, 1).expand(6, 3, 4, 4).contiguous()
    cpu = torch.device("cpu")
    *metrics, confusion = evaluate_counts(_Lookup(), images, truth, 3, device=cpu, batch_size=4)
    assert confusion == ((2, 1, 0), (0, 2, 0), (0, 1, 0))  # rows true, columns predicted
    assert tuple(metrics) == evaluate(_Lookup(), images, truth, 3, device=cpu, batch_size=4)


def test_confusion_summary_per_class_precision_recall_and_absent_classes():
    s = confusion_summary(((2, 1, 0), (0, 2, 0), (0, 0, 0)), ["red", "orange", "brown"], epoch=4)
    assert s["accuracy"] == pytest.approx(4 / 5) and s["total"] == 5 and s["epoch"] == 4
    assert s["per_class"]["red"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                     "support": 3}
    assert s["per_class"]["orange"]["precision"] == pytest.approx(2 / 3)
    assert s["per_class"]["brown"] == {"precision": None, "recall": None, "support": 0}
    with pytest.raises(ValueError, match="must be 3x3"):
        confusion_summary(((1, 0), (0, 1)), ["a", "b", "c"])


def test_trained_epoch_carries_counts_that_agree_with_its_accuracy():
    state = build_state(TrainConfig.from_dict({**TINY, "epochs": 1}))
    m = train_epoch(state)
    counts = torch.tensor(m.confusion)
    assert counts.shape == (10, 10) and int(counts.sum()) == len(state.data.val_y)
    assert float(counts.diag().sum()) / len(state.data.val_y) == pytest.approx(m.val_acc)
    truth = torch.bincount(state.data.val_y, minlength=10)
    assert counts.sum(1).tolist() == truth.tolist()
    # a checkpoint's history (lists after a round trip) reads back equal
    again = EpochMetrics(**{**m.__dict__, "confusion": [list(r) for r in m.confusion]})
    assert again == m


def _hist(n: int) -> list[EpochMetrics]:
    conf = tuple(tuple(5 if i == j else (1 if j == (i + 1) % 10 else 0) for j in range(10))
                 for i in range(10))
    return [EpochMetrics(e, 1.0 / (e + 1), 1.2 / (e + 1), 0.3 + 0.1 * e, 0.2 + 0.1 * e, 1.0,
                         50.0, 0.01, conf) for e in range(n)]


def test_write_trial_figures_writes_pngs_and_json_of_the_chosen_epoch(tmp_path):
    hist = _hist(3)
    files = write_trial_figures(tmp_path, hist, COLOURS, epoch=hist[1], title="trial 0")
    names = sorted(p.name for p in files)
    assert names == ["confusion_matrix.json", "confusion_matrix.png", "learning_curves.png"]
    for p in files:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG and p.stat().st_size > 5_000
    data = json.loads((tmp_path / CONFUSION_JSON.filename()).read_text())
    assert data["epoch"] == 1 and data["class_names"] == COLOURS
    assert data["per_class"]["white"]["recall"] == pytest.approx(5 / 6)
    assert data["accuracy"] == pytest.approx(50 / 60)


def _space(fixed: dict):
    doc = {"study": {"name": "t", "metric": "val_acc", "sampler": {"type": "Random", "seed": 0}},
           "hyperparameters": {"lr": {"type": "float", "low": 1e-3, "high": 2e-3}},
           "fixed": {**TINY, **fixed}}
    return parse_search_space(yaml.safe_dump(doc), source="test.yaml")


def _artifacts(store, trial, folder):
    """{file name: bytes} of the trial's artifacts, downloaded from the store."""
    return {m.filename: download(store, m.artifact_id, folder / m.artifact_id).read_bytes()
            for m in list_trial_artifacts(trial)}


@pytest.mark.slow
@pytest.mark.parametrize("pruner, state, epoch", [
    (optuna.pruners.NopPruner(), TrialState.COMPLETE, None),
    (optuna.pruners.ThresholdPruner(lower=1.01), TrialState.PRUNED, 0),
])
def test_objective_uploads_confusion_and_curves_of_complete_and_pruned_trials(
    tmp_path, pruner, state, epoch
):
    space = _space({"epochs": 2})
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = build_storage(url)
    study = optuna.create_study(storage=storage, study_name="t", direction="maximize",
                                pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    store = artifact_store(url, "t", str(tmp_path / "artifacts"))
    study.optimize(Objective(space, artifacts=store), n_trials=1)

    (trial,) = optuna.load_study(study_name="t", storage=url).trials
    assert trial.state == state and "artifact_error" not in trial.user_attrs
    files = _artifacts(store, trial, tmp_path)
    records = sorted(name for name in files if name.startswith("val-step"))  # hpo.trial.record_store
    assert records == [f"val-step{step}.bin" for step in sorted(trial.intermediate_values)]
    assert sorted(set(files) - set(records)) == ["confusion_matrix.json", "confusion_matrix.png",
                                                 "learning_curves.png"]
    assert files["confusion_matrix.png"][:8] == PNG == files["learning_curves.png"][:8]
    data = json.loads(files["confusion_matrix.json"])
    shown = trial.user_attrs["best_epoch"] if epoch is None else epoch
    assert data["epoch"] == shown == trial.user_attrs["confusion"]["epoch"]
    assert data["class_names"] == COLOURS and data["matrix"] == trial.user_attrs["confusion"][
        "matrix"]
    assert data["accuracy"] == pytest.approx(trial.intermediate_values[shown])
