"""Search-space parser: good snippets -> exact Optuna distributions, study block, API of SearchSpace."""

from __future__ import annotations

import pickle

import optuna
import pytest
from optuna.distributions import CategoricalDistribution as C
from optuna.distributions import FloatDistribution as F
from optuna.distributions import IntDistribution as I

from hpo.config import TrainConfig
from hpo.errors import ConfigError
from hpo.space import AlgorithmSpec, SearchSpaceError, load_search_space, parse_search_space

# (hyperparameters block, expected distributions). One snippet per grammar feature.
GOOD = [
    ("lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}", {"lr": F(1e-4, 0.1, log=True)}),
    ("lr: {type: float, low: 1e-4, high: 1e-1, log: true}", {"lr": F(1e-4, 0.1, log=True)}),
    ("lr: {type: float, low: 1E-4, high: 2e+0}", {"lr": F(1e-4, 2.0)}),
    ("lr: {type: float, low: 0.001, high: 1}", {"lr": F(0.001, 1.0)}),
    ("dropout: {type: float, low: 0.0, high: 0.5, step: 0.1}", {"dropout": F(0.0, 0.5, step=0.1)}),
    ("dropout: {type: float, low: 0, high: 0.9, step: 0.3}", {"dropout": F(0.0, 0.9, step=0.3)}),
    ("dropout: {type: float, low: 0.1, high: 0.5, step: null}", {"dropout": F(0.1, 0.5)}),
    ("dropout: {type: float, low: 0.1, high: 0.5, log: false}", {"dropout": F(0.1, 0.5)}),
    ("epochs: {type: int, low: 1, high: 10}", {"epochs": I(1, 10)}),
    ("epochs: {type: int, low: 2, high: 10, step: 2}", {"epochs": I(2, 10, step=2)}),
    ("batch_size: {type: int, low: 8, high: 256, log: true}", {"batch_size": I(8, 256, log=True)}),
    ("batch_size: {type: int, low: 8.0, high: 1e2}", {"batch_size": I(8, 100)}),
    ("warmup_epochs: {type: int, low: 0, high: 3}", {"warmup_epochs": I(0, 3)}),
    ("lr: {type: int, low: 1, high: 3}", {"lr": I(1, 3)}),
    ("backbone: {type: categorical, choices: [resnet18, efficientnet_b0]}",
     {"backbone": C(["resnet18", "efficientnet_b0"])}),
    ("batch_size: {type: categorical, choices: [16, 32, 64]}", {"batch_size": C([16, 32, 64])}),
    ("batch_size: {type: categorical, choices: [16.0, 32]}", {"batch_size": C([16, 32])}),
    ("lr: {type: categorical, choices: [1e-3, 1e-2, 1]}", {"lr": C([0.001, 0.01, 1.0])}),
    ("augment: {type: categorical, choices: [true, false]}", {"augment": C([True, False])}),
    ("focal_alpha: {type: categorical, choices: [null, 0.25]}", {"focal_alpha": C([None, 0.25])}),
    ("fusion: {type: categorical, choices: [last, simple_concat, msff]}",
     {"fusion": C(["last", "simple_concat", "msff"])}),
    ("optimizer: {type: categorical, choices: [sgd, adam, adamw], default: adam}",
     {"optimizer": C(["sgd", "adam", "adamw"])}),
    ("device: {type: categorical, choices: [cpu, 'cuda:0']}", {"device": C(["cpu", "cuda:0"])}),
    ("loss_fn: {type: categorical, choices: [cross_entropy, focal]}\n"  # noqa: ISC004
     "focal_gamma: {type: float, low: 0.5, high: 4.0, when: {loss_fn: focal}}",
     {"loss_fn": C(["cross_entropy", "focal"]), "focal_gamma": F(0.5, 4.0)}),
    ("optimizer: {type: categorical, choices: [sgd, adam, adamw]}\n"  # noqa: ISC004
     "momentum: {type: float, low: 0.8, high: 0.99, when: {optimizer: [sgd]}}",
     {"optimizer": C(["sgd", "adam", "adamw"]), "momentum": F(0.8, 0.99)}),
    ("lr:\n  type: float\n  low: 1.0e-5\n  high: 1.0e-2\n  log: true\n  default: 1.0e-3",
     {"lr": F(1e-5, 1e-2, log=True)}),
    ("image_size: {type: int, low: 32, high: 96, step: 32}", {"image_size": I(32, 96, step=32)}),
]


def _space(params: str, study: str = "", fixed: str = ""):
    text = "hyperparameters:\n" + "\n".join("  " + line for line in params.splitlines())
    if study:
        text = f"study: {study}\n" + text
    if fixed:
        text += f"\nfixed: {fixed}\n"
    return parse_search_space(text, source="t.yaml")


@pytest.mark.parametrize("snippet,expected", GOOD, ids=[g[0].split(":")[0] + str(i) for i, g in enumerate(GOOD)])
def test_space_good_snippet_gives_exact_distributions(snippet, expected):
    space = _space(snippet)
    assert space.distributions() == expected
    for name, dist in expected.items():
        assert type(space.param(name).distribution()) is type(dist)


def test_space_good_corpus_is_large():
    assert len(GOOD) >= 20


def test_space_numeric_types_are_normalised():
    space = _space("batch_size: {type: categorical, choices: [16.0, 32]}\n"
                   "lr: {type: categorical, choices: [1, 2.5]}")
    assert [type(c) for c in space.param("batch_size").choices] == [int, int]
    assert [type(c) for c in space.param("lr").choices] == [float, float]


def test_space_study_defaults():
    space = _space("lr: {type: float, low: 0.01, high: 0.1}")
    st = space.study
    assert (st.name, st.directions, st.metrics) == ("t", ("maximize",), ("val_acc",))
    assert (st.n_trials, st.timeout, st.pruner) == (None, None, None)
    assert st.sampler == AlgorithmSpec("TPE", {})


@pytest.mark.parametrize("study,directions,metrics", [
    ("{metric: val_loss}", ("minimize",), ("val_loss",)),
    ("{direction: maximize, metric: val_macro_f1}", ("maximize",), ("val_macro_f1",)),
    ("{metrics: [val_acc, latency_ms]}", ("maximize", "minimize"), ("val_acc", "latency_ms")),
    ("{directions: [maximize, minimize], metrics: [val_acc, params_m]}", ("maximize", "minimize"),
     ("val_acc", "params_m")),
    ("{directions: [maximize]}", ("maximize",), ("val_acc",)),
])
def test_space_study_objectives(study, directions, metrics):
    st = _space("lr: {type: float, low: 0.01, high: 0.1}", study=study).study
    assert (st.directions, st.metrics) == (directions, metrics)


def test_space_study_block_full():
    st = _space("lr: {type: float, low: 0.01, high: 0.1}",
                study="{name: demo-1, n_trials: 7, timeout: 60, sampler: {type: RandomSampler, seed: 3},"
                      " pruner: {type: Patient, patience: 2, wrapped_pruner: {type: MedianPruner, "
                      "n_warmup_steps: 1}}}").study
    assert (st.name, st.n_trials, st.timeout) == ("demo-1", 7, 60.0)
    assert st.sampler == AlgorithmSpec("Random", {"seed": 3})  # Optuna class name is an alias
    assert st.pruner.type == "Patient" and st.pruner.args["patience"] == 2
    assert st.pruner.args["wrapped_pruner"] == AlgorithmSpec("MedianPruner", {"n_warmup_steps": 1})


def test_space_sampler_and_pruner_shorthand():
    st = _space("lr: {type: float, low: 0.01, high: 0.1}",
                study="{sampler: Random, pruner: Hyperband}").study
    assert st.sampler == AlgorithmSpec("Random", {}) and st.pruner == AlgorithmSpec("Hyperband", {})


def test_space_fixed_values_are_checked_and_normalised():
    space = _space("lr: {type: float, low: 0.01, high: 0.1}", fixed="{epochs: 2.0, dropout: 0, weights: null}")
    assert dict(space.fixed) == {"epochs": 2, "dropout": 0.0, "weights": None}
    assert type(space.fixed["epochs"]) is int and type(space.fixed["dropout"]) is float


def test_space_is_frozen_and_picklable():
    space = load_search_space("hyperparameters.yaml")
    with pytest.raises(AttributeError):
        space.fingerprint = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        space.fixed["epochs"] = 1  # type: ignore[index]
    clone = pickle.loads(pickle.dumps(space))
    assert clone == space and clone.fingerprint == space.fingerprint


def test_space_fingerprint_ignores_comments_order_and_spelling():
    a = "hyperparameters:\n  lr: {type: float, low: 1.0e-4, high: 0.1, log: true}\n  epochs: {type: int, low: 1, high: 3}\n"
    b = ("# comment\nhyperparameters:\n  epochs:\n    type: int\n    high: 3\n    low: 1\n"
         "  lr: {log: true, type: float, high: 1e-1, low: 1e-4}  # same\n")
    c = a.replace("high: 0.1", "high: 0.2")
    fa, fb, fc = (parse_search_space(t, source="s.yaml").fingerprint for t in (a, b, c))
    assert fa == fb != fc
    # Pinned: a change to the canonical form makes every stored study look changed on resume.
    assert fa == "69e0f46d702bea4f0b709e7b5b2f83c70025b2aeff16a1b8ff4d9a9740270934"


def test_space_fingerprint_changes_with_choice_order():
    a = _space("batch_size: {type: categorical, choices: [16, 32]}")
    b = _space("batch_size: {type: categorical, choices: [32, 16]}")
    assert a.fingerprint != b.fingerprint  # choice order is Optuna's internal index


def test_space_canonical_is_json_round_trip():
    import json

    space = load_search_space("vcr_full.yaml")
    canon = space.canonical()
    assert json.loads(json.dumps(canon)) == canon
    assert canon["params"]["focal_gamma"]["when"] == {"loss_fn": ["focal"]}
    assert canon["study"]["sampler"] == {"type": "TPE", "args": {
        "constant_liar": True, "group": True, "multivariate": True, "n_startup_trials": 10,
        "seed": 42}}


def test_space_default_params_baseline():
    space = _space("loss_fn: {type: categorical, choices: [cross_entropy, focal, smooth_modulation], "
                   "default: focal}\n"
                   "focal_gamma: {type: float, low: 1.0, high: 4.0, when: {loss_fn: focal}}\n"
                   "tau: {type: float, low: 0.5, high: 1.5, when: {loss_fn: smooth_modulation}}\n"
                   "lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
                   "epochs: {type: int, low: 1, high: 5}\n"
                   "dropout: {type: float, low: 0.0, high: 0.4, step: 0.2, default: 0.4}")
    base = space.default_params()
    assert base == {"loss_fn": "focal", "focal_gamma": 2.5, "lr": pytest.approx(1e-3), "epochs": 3,
                    "dropout": 0.4}
    for name, value in base.items():
        assert space.param(name).distribution()._contains(space.param(name).distribution().to_internal_repr(value))


def test_space_default_params_none_without_defaults():
    assert _space("lr: {type: float, low: 0.01, high: 0.1}").default_params() is None


def test_space_baseline_without_defaults_walks_the_conditions():
    """Central values; a conditional parameter is in when its parent's baseline enables it."""
    space = _space("optimizer: {type: categorical, choices: [sgd, adam]}\n"
                   "momentum: {type: float, low: 0.8, high: 0.9, when: {optimizer: sgd}}\n"
                   "loss_fn: {type: categorical, choices: [cross_entropy, focal]}\n"
                   "focal_gamma: {type: float, low: 1.0, high: 4.0, when: {loss_fn: focal}}\n"
                   "lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}")
    assert space.default_params() is None
    assert space.baseline() == {"optimizer": "sgd", "momentum": pytest.approx(0.85),
                                "loss_fn": "cross_entropy", "lr": pytest.approx(1e-3)}
    space.config_for(space.baseline())  # a valid TrainConfig


def test_space_baseline_is_the_enqueued_trial_when_there_are_defaults():
    space = _space("optimizer: {type: categorical, choices: [sgd, adam], default: adam}\n"
                   "momentum: {type: float, low: 0.8, high: 0.9, when: {optimizer: sgd}}\n"
                   "lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, default: 0.005}")
    assert space.baseline() == space.default_params() == {"optimizer": "adam", "lr": 0.005}


def test_space_active_follows_chain():
    space = _space("optimizer: {type: categorical, choices: [sgd, adam]}\n"
                   "momentum: {type: categorical, choices: [0.8, 0.9], when: {optimizer: sgd}}\n"
                   "weight_decay: {type: float, low: 0.0, high: 0.1, when: {momentum: 0.9}}")
    assert space.active({"optimizer": "adam", "momentum": 0.9}) == {"optimizer"}
    assert space.active({"optimizer": "sgd", "momentum": 0.8}) == {"optimizer", "momentum"}
    assert space.active({"optimizer": "sgd", "momentum": 0.9}) == {"optimizer", "momentum", "weight_decay"}


def test_space_params_in_dependency_order():
    space = _space("momentum: {type: float, low: 0.8, high: 0.9, when: {optimizer: sgd}}\n"
                   "optimizer: {type: categorical, choices: [sgd, adam]}")
    assert [p.name for p in space.params] == ["optimizer", "momentum"]


def test_space_config_for_merges_fixed_params_overrides():
    space = _space("lr: {type: float, low: 0.01, high: 0.1}", fixed="{epochs: 2, lr: 0.5}"
                   .replace(", lr: 0.5", ""))
    cfg = space.config_for({"lr": 0.05}, {"epochs": 5})
    assert isinstance(cfg, TrainConfig) and (cfg.lr, cfg.epochs) == (0.05, 5)
    assert space.config_for({"lr": 0.05}).epochs == 2
    with pytest.raises(ConfigError, match="t.yaml: lrr: not a trainer field"):
        space.config_for({"lrr": 0.05})


def test_space_describe_rows():
    rows = load_search_space("hyperparameters.yaml").describe()
    by_name = {r[0]: r for r in rows}
    assert by_name["lr"] == ("lr", "float", "[0.0001, 0.03] default 0.003", "log", "")
    assert by_name["dropout"][3] == "step 0.1"
    assert by_name["focal_gamma"][4] == "loss_fn=focal"
    assert all(len(r) == 5 for r in rows)


def test_space_suggest_uses_public_trial_api():
    space = _space("backbone: {type: categorical, choices: [resnet18, resnet34]}\n"
                   "lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}\n"
                   "epochs: {type: int, low: 1, high: 5, step: 2}")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask(space.distributions())
    fixed = dict(trial.params)
    # `ask` with fixed distributions pre-samples; suggest must return the same values through suggest_*.
    assert space.suggest(trial) == fixed
    assert set(fixed) == {"backbone", "lr", "epochs"} and fixed["epochs"] in (1, 3, 5)


def test_load_search_space_bare_name_and_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_search_space("hyperparameters.yaml").study.name == "vcr-demo"
    with pytest.raises(ConfigError, match="search space file not found") as info:
        load_search_space("nope.yaml")
    assert not isinstance(info.value, SearchSpaceError)
    (tmp_path / "hyperparameters.yaml").write_text("hyperparameters:\n  lr: {type: float, low: 0.1, high: 0.2}\n")
    assert load_search_space("hyperparameters.yaml").study.name == "hyperparameters"  # cwd wins


def test_load_search_space_non_utf8(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_bytes(b"hyperparameters:\n  lr: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_search_space(p)
