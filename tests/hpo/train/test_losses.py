"""Losses against hand-computed values: focal vs cross-entropy, smooth_modulation's weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hpo.config import TrainConfig
from hpo.errors import UnknownNameError
from hpo.train.losses import LOSSES, CrossEntropy, FocalLoss, SmoothModulationLoss, build_loss

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
TARGET = torch.tensor([0, 0, 2, 1])


def _softmax_row(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_ce(i: int) -> float:
    return -math.log(_softmax_row(LOGITS[i].tolist())[int(TARGET[i])])


def test_losses_registry_names():
    assert {"cross_entropy", "focal", "smooth_modulation"} <= set(LOSSES.names())


def test_cross_entropy_equals_hand_computed():
    expected = sum(_hand_ce(i) for i in range(4)) / 4
    assert CrossEntropy(0.0)(LOGITS, TARGET).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_focal_equals_cross_entropy_at_gamma_zero(smoothing):
    focal = FocalLoss(focal_gamma=0.0, focal_alpha=None, label_smoothing=smoothing)(LOGITS, TARGET)
    ce = F.cross_entropy(LOGITS, TARGET, label_smoothing=smoothing)
    assert focal.item() == pytest.approx(ce.item(), rel=1e-6)


def test_focal_matches_hand_computed_at_gamma_two():
    gamma, alpha = 2.0, 0.25
    terms = []
    for i in range(4):
        p = _softmax_row(LOGITS[i].tolist())[int(TARGET[i])]
        terms.append(alpha * (1 - p) ** gamma * -math.log(p))
    got = FocalLoss(focal_gamma=gamma, focal_alpha=alpha, label_smoothing=0.0)(LOGITS, TARGET).item()
    assert got == pytest.approx(sum(terms) / 4, rel=1e-6)
    # down-weights easy examples: strictly below alpha * CE
    assert got < alpha * F.cross_entropy(LOGITS, TARGET).item()


def _hand_weighted_ce(weights: list[float]) -> float:
    num = sum(weights[int(TARGET[i])] * _hand_ce(i) for i in range(4))
    return num / sum(weights[int(TARGET[i])] for i in range(4))


def test_smooth_modulation_weights_first_and_last_epoch():
    counts, tau, epochs = [100, 10, 1], 1.0, 5
    loss = SmoothModulationLoss(counts, tau=tau, label_smoothing=0.0)
    raw = [1 / 100, 1 / 10, 1.0]  # (1/n_c)^tau
    target = [w / (sum(raw) / 3) for w in raw]  # normalised to mean 1

    loss.set_epoch(0, epochs)
    assert loss.weights.tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert loss(LOGITS, TARGET).item() == pytest.approx(_hand_weighted_ce([1, 1, 1]), rel=1e-6)

    loss.set_epoch(epochs - 1, epochs)
    assert loss.weights.tolist() == pytest.approx(target, rel=1e-6)
    assert loss(LOGITS, TARGET).item() == pytest.approx(_hand_weighted_ce(target), rel=1e-5)

    loss.set_epoch(2, epochs)  # half-way: the average of uniform and target
    assert loss.weights.tolist() == pytest.approx([(1 + t) / 2 for t in target], rel=1e-6)


def test_smooth_modulation_tau_zero_stays_uniform():
    loss = SmoothModulationLoss([500, 5, 1], tau=0.0, label_smoothing=0.0)
    loss.set_epoch(9, 10)
    assert loss.weights.tolist() == pytest.approx([1.0, 1.0, 1.0])


@pytest.mark.parametrize(
    "fields, cls",
    [
        ({"loss_fn": "cross_entropy", "label_smoothing": 0.1}, CrossEntropy),
        ({"loss_fn": "focal", "focal_gamma": 1.5, "focal_alpha": 0.5}, FocalLoss),
        ({"loss_fn": "smooth_modulation", "tau": 0.5}, SmoothModulationLoss),
    ],
)
def test_build_loss_takes_hyperparameters_from_config(fields, cls):
    loss = build_loss(TrainConfig(**fields), class_counts=[30, 10, 5])
    assert type(loss) is cls
    if cls is FocalLoss:
        assert (loss.gamma, loss.alpha) == (1.5, 0.5)
    elif cls is CrossEntropy:
        assert loss.label_smoothing == 0.1
    else:
        loss.set_epoch(1, 2)
        raw = torch.tensor([30.0, 10.0, 5.0]) ** -0.5
        assert loss.weights.tolist() == pytest.approx((raw / raw.mean()).tolist(), rel=1e-5)


def test_unknown_loss_lists_options():
    with pytest.raises(UnknownNameError, match="Did you mean 'focal'.*Options: cross_entropy"):
        LOSSES.get("focla")
