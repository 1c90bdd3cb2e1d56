"""The Python API (`hpo.run_study`) against the CLI, finite grids, and the one ranking rule."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import hpo
from hpo.cli import main
from hpo.errors import ConfigError
from hpo.study import FixedInputError, build_storage, run_trials, top_trial_ids, top_trials

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

_GRID = """\
study:
  name: grid
  metric: val_acc
  direction: maximize
  n_trials: 5
  sampler: {type: Grid}
  pruner: null
hyperparameters:
  lr: {type: categorical, choices: [0.001, 0.01]}
fixed:
  backbone: resnet10t
  epochs: 1
  image_size: 32
  max_train_samples: 32
  synthetic_size: 64
  batch_size: 32
  device: cpu
"""


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)


def _by_number(study):
    return {t.number: (t.state, t.params, t.values) for t in study.trials}


def _readme_example() -> str:
    text = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = text.split("### From Python", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_example_gives_the_same_study_as_the_cli(tiny_space, tmp_path, capsys):
    # the space fixes other values than the example's overrides, so they must reach the trials
    space_file = tiny_space(epochs=2)
    space_file.write_text(space_file.read_text().replace("image_size: 32", "image_size: 40"))
    tiny = ["epochs=1", "image_size=32"]
    assert main(["run", "--space", str(space_file), "--n-trials", "2", "--storage",
                 f"sqlite:///{tmp_path / 'cli.db'}", "--quiet", "--threads", "1",
                 *(a for s in tiny for a in ("--set", s))]) == 0

    # the README's example, word for word apart from the paths, the budget and the threads
    code = _readme_example()
    for word, instead in (('"hyperparameters.yaml"', repr(str(space_file))),
                          ('"sqlite:///studies/demo.db"', repr(f"sqlite:///{tmp_path / 'api.db'}")),
                          ("n_trials=4", "n_trials=2"), ("overrides=", "threads=1, overrides=")):
        assert word in code
        code = code.replace(word, instead)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own example
    result = scope["result"]

    cli = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'cli.db'}")
    assert _by_number(result.study) == _by_number(cli)
    assert result.reason == "target reached" and result.finished == 2 and result.ran == 2
    assert result.counts["COMPLETE"] + result.counts["PRUNED"] == 2
    assert result.best is not None and result.best.number == top_trials(cli, 1)[0].number
    for trial in result.study.trials:  # one epoch, not the space's two
        assert list(trial.intermediate_values) == [0] and len(trial.user_attrs["epoch_seconds"]) == 1
    assert result.study.user_attrs["overrides"] == {"epochs": 1, "image_size": 32}
    again = hpo.run_study(space_file, storage=f"sqlite:///{tmp_path / 'api.db'}", n_trials=2,
                          overrides={"epochs": 1, "image_size": 32}, threads=1)
    assert again.ran == 0 and len(again.study.trials) == 2  # a rerun at the target adds nothing


def test_callback_may_stop_the_run(tiny_space, tmp_path):
    seen = []

    def stop_after_first(study, trial):
        seen.append(trial.number)
        study.stop()

    result = hpo.run_study(tiny_space(epochs=1), storage=f"sqlite:///{tmp_path / 's.db'}",
                           overrides={"image_size": 32}, callbacks=[stop_after_first], threads=1)
    assert seen == [0] and result.reason == "stopped" and len(result.study.trials) == 1


def test_grid_run_to_its_last_point_ends_cleanly(tmp_path, capsys):
    space = tmp_path / "grid.yaml"
    space.write_text(_GRID)
    assert main(["validate", "--space", str(space)]) == 0
    assert "n_trials 5 exceeds the Grid grid of 2 points" in capsys.readouterr().out

    assert main(["run", "--space", str(space), "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert "grid exhausted: 2 of 2 points" in out and "Traceback" not in err
    assert "exceeds the Grid grid of 2 points" in err
    study = optuna.load_study(study_name="grid", storage="sqlite:///studies/grid.db")
    assert sorted(t.params["lr"] for t in study.trials) == [0.001, 0.01]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)

    assert main(["run", "--space", str(space), "--threads", "1"]) == 0  # resumed: nothing to do
    assert "grid exhausted: 2 of 2 points" in capsys.readouterr().out
    assert len(optuna.load_study(study_name="grid", storage="sqlite:///studies/grid.db").trials) == 2


def test_brute_force_grid_points_follow_conditions(tmp_path):
    from hpo.run.api import grid_points

    space = hpo.parse_search_space(_GRID.replace("type: Grid", "type: BruteForce").replace(
        "  lr: {type: categorical, choices: [0.001, 0.01]}\n",
        "  lr: {type: categorical, choices: [0.001, 0.01]}\n"
        "  loss_fn: {type: categorical, choices: [cross_entropy, focal]}\n"
        "  focal_gamma: {type: float, low: 1.0, high: 3.0, step: 1.0, when: {loss_fn: focal}}\n"))
    assert grid_points(space) == 2 * (1 + 3)  # focal_gamma only under focal


def _study(tmp_path, direction="maximize"):
    storage = build_storage(f"sqlite:///{tmp_path / f'{direction}.db'}")
    return optuna.create_study(storage=storage, study_name="s", direction=direction)


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_top_trials_ranks_like_the_sql_query(tmp_path, direction):
    study = _study(tmp_path, direction)
    for v in (0.5, 0.9, 0.1, 0.9, float("nan"), 0.3):
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        study.tell(trial, v)  # NaN: FAIL
    trial = study.ask()
    study.tell(trial, state=TrialState.PRUNED)
    ranked = [t.number for t in top_trials(study)]
    expect = [1, 3, 0, 5, 2] if direction == "maximize" else [2, 5, 0, 1, 3]
    assert ranked == expect
    assert [t.number for t in top_trials(study, 3)] == expect[:3]  # the SQL path
    ids = top_trial_ids(study._storage, study._study_id, 5, maximize=direction == "maximize")
    assert [study._storage.get_trial(i).number for i in ids] == expect


def test_same_config_error_with_other_params_stops_the_run(tmp_path):
    study = _study(tmp_path)

    def broken(trial):
        trial.suggest_float("x", 0, 1)
        raise ConfigError("device: must be a CUDA device present here, got 'cuda:7'")

    with pytest.raises(FixedInputError, match="trials 0 and 1 failed with the same error"):
        run_trials(study, broken, n_trials=10)
    assert len(study.trials) == 2


def test_config_error_that_follows_the_params_does_not_stop_the_run(tmp_path):
    study = _study(tmp_path)

    def picky(trial):
        x = trial.suggest_int("x", 0, 3)
        if trial.number in (1, 2):  # two different params, two different messages
            raise ConfigError(f"lr: too high for x={x}, got {trial.number}")
        return float(x)

    assert run_trials(study, picky, n_trials=3).ran == 5
