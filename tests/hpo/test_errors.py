"""The two error roots: hpo's registries raise hpo's errors, and the CLI and a worker turn either
package's errors into one line with the right exit code."""

from __future__ import annotations

import argparse

import pytest

import backbones
from hpo.cli import main
from hpo.cli._registry import COMMANDS, Command
from hpo.errors import (
    INPUT_ERRORS,
    RAISED_ERRORS,
    ConfigError,
    SearchSpaceError,
    UnknownNameError,
    VcrHpoError,
)


def test_hpo_registries_raise_hpo_errors_and_backbones_its_own():
    from hpo._choices import LOSS_NAMES
    from hpo.train.losses import LOSSES

    for registry in (LOSSES, LOSS_NAMES):
        with pytest.raises(UnknownNameError, match=r"unknown loss 'focla'\. Did you mean 'focal'\?"):
            registry.get("focla")
    assert issubclass(UnknownNameError, VcrHpoError) and issubclass(UnknownNameError, LookupError)
    with pytest.raises(backbones.UnknownNameError) as info:
        backbones.BACKBONE_NAMES.get("resnet5")
    assert not isinstance(info.value, VcrHpoError)  # the leaf knows nothing of hpo


@pytest.mark.parametrize(("error", "code"), [
    (ConfigError("x.yaml: lr: must be a number, got 'a'. Write a number"), 2),
    (SearchSpaceError(["x.yaml: a: bad", "x.yaml: b: bad"]), 2),
    (UnknownNameError("unknown loss 'x'. Options: focal"), 2),
    (backbones.ConfigError("pretrained: must be true or false, got 1. Write true"), 2),
    (backbones.UnknownNameError("unknown backbone 'x'. Options: resnet18"), 2),
    (backbones.WeightsNotFoundError("resnet18: no weights on this machine. Put them in ~/.cache"), 1),
    (VcrHpoError("study 's': no trials, got 0. Run the study first"), 1),
])
def test_cli_turns_either_packages_error_into_one_line(monkeypatch, capsys, error, code):
    def run(ns: argparse.Namespace) -> int:
        raise error

    monkeypatch.setitem(COMMANDS, "boom", Command("boom", "raise", lambda p: None, run))
    assert main(["boom"]) == code
    err = capsys.readouterr().err
    assert err == f"error: {error}\n"
    assert isinstance(error, RAISED_ERRORS) and isinstance(error, INPUT_ERRORS) == (code == 2)


def test_an_error_outside_both_roots_is_a_traceback(monkeypatch):
    """Bugs are not dressed up as input errors."""
    def run(ns: argparse.Namespace) -> int:
        raise KeyError("bug")

    monkeypatch.setitem(COMMANDS, "boom", Command("boom", "raise", lambda p: None, run))
    with pytest.raises(KeyError):
        main(["boom"])
