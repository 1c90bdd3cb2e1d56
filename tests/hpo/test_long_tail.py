"""Long-tailed classes: per-class recall (values, trial attrs, report) and val_macro_f1 as objective."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial

from hpo.attrs import ATTR_SPACE_YAML
from hpo.metrics import per_class_recall
from hpo.report import write_full_report
from hpo.space import parse_search_space
from hpo.study import build_storage
from hpo.trial.objective import Objective

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

CLASSES = ["red", "yellow", "green", "blue"]
#          red  yel  grn  blue   (rows true, columns predicted)
MATRIX = [[90, 5, 5, 0],  # red: 90 of 100 right
          [3, 1, 0, 0],  # yellow, the tail: 1 of 4
          [0, 0, 0, 0],  # green: no image at all
          [0, 2, 0, 6]]  # blue: 6 of 8


def test_per_class_recall_on_a_known_confusion_matrix():
    assert per_class_recall(MATRIX, CLASSES) == {"red": 0.9, "yellow": 0.25, "green": None,
                                                 "blue": 0.75}
    # accuracy hides the tail: 97/112 right overall, yet only a quarter of the yellow cars
    assert sum(MATRIX[i][i] for i in range(4)) / sum(map(sum, MATRIX)) > 0.86


@pytest.mark.parametrize("matrix", [[[1, 0], [0, 1]], [[1, 0, 0, 0]] * 3 + [[1, 0, 0]]])
def test_per_class_recall_refuses_a_matrix_of_another_shape(matrix):
    with pytest.raises(ValueError, match="confusion matrix must be 4x4"):
        per_class_recall(matrix, CLASSES)


_SPACE = """\
study:
  name: tail
  metric: val_macro_f1
  direction: maximize
  sampler: {type: Random, seed: 0}
  pruner: null
hyperparameters:
  lr: {type: float, low: 0.002, high: 0.004, log: true}
fixed: {backbone: resnet10t, epochs: 2, image_size: 32, synthetic_size: 80, batch_size: 16,
        device: cpu, scheduler: none}
"""


def test_val_macro_f1_objective_end_to_end_with_per_class_recall_attr(tmp_path):
    space = parse_search_space(_SPACE, source="tail.yaml")
    url = f"sqlite:///{tmp_path / 'tail.db'}"
    study = optuna.create_study(storage=build_storage(url), study_name="tail",
                                directions=list(space.study.directions),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_metric_names(list(space.study.metrics))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # several test processes share two cores
    try:
        study.optimize(Objective(space), n_trials=1)
    finally:
        torch.set_num_threads(threads)

    study = optuna.load_study(study_name="tail", storage=url)
    (trial,) = study.trials
    assert study.metric_names == ["val_macro_f1"] and trial.state.name == "COMPLETE"
    # the value is the best epoch's macro-F1, and the pruner saw macro-F1 every epoch
    assert trial.value == pytest.approx(max(trial.intermediate_values.values()), abs=1e-12)
    assert trial.value == pytest.approx(trial.user_attrs["best_metrics"]["val_macro_f1"],
                                        abs=1e-5)
    conf = trial.user_attrs["confusion"]
    assert conf["epoch"] == trial.user_attrs["best_epoch"]
    m = conf["matrix"]
    support = [sum(r) for r in m]
    assert min(support) * 3 <= max(support)  # the synthetic set is long-tailed
    # macro-F1 recomputed from the stored counts (classes present in labels or predictions)
    f1 = []
    for i in range(len(m)):
        predicted = sum(r[i] for r in m)
        if support[i] + predicted:
            f1.append(2 * m[i][i] / (support[i] + predicted))
    assert trial.value == pytest.approx(sum(f1) / len(f1), abs=1e-9)
    recall = trial.user_attrs["per_class_recall"]
    assert list(recall) == conf["class_names"]
    expected = per_class_recall(m, conf["class_names"])
    assert recall == {k: None if v is None else round(v, 4) for k, v in expected.items()}


def test_report_names_the_lowest_recall_and_which_latency_it_plots(tmp_path):
    study = optuna.create_study(study_name="r", directions=["maximize", "minimize"],
                                storage=f"sqlite:///{tmp_path / 'r.db'}")
    study.set_metric_names(["val_acc", "latency_ms"])
    study.set_user_attr(ATTR_SPACE_YAML, "study: {name: r, metrics: [val_acc, latency_ms]}\n"
                                         "fixed: {backbone: resnet18}\n")
    dist = {"backbone": CategoricalDistribution(["resnet18", "resnet10t"])}
    for i, (bb, acc, ms) in enumerate([("resnet18", 0.8, 9.0), ("resnet10t", 0.7, 4.0)]):
        study.add_trial(create_trial(
            params={"backbone": bb}, distributions=dist, values=[acc, ms],
            user_attrs={"num_params": 1000 + i,
                        "confusion": {"epoch": 1, "class_names": CLASSES, "matrix": MATRIX}}))
    out = tmp_path / "report"
    report = write_full_report(study, out, formats=("html",))
    titles = {p.name: p.title for p in report.plots}
    assert "lowest yellow 25%" in titles["confusion"]
    page = (out / "latency_ms-2trials.html").read_text()
    assert "batch-1 forward pass, eager PyTorch on the trial's device" in page
    assert "not an exported model" in page
    assert json.loads((out / "index.json").read_text())["plots"]
