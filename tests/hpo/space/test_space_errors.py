"""Bad search spaces: every case names its YAML path, line and rule; the CLI exits 2; the JSON
Schema rejects exactly the cases marked structural."""

from __future__ import annotations

import re

import jsonschema
import pytest

from hpo.cli import main
from hpo.space import SearchSpaceError, parse_search_space, schema
from hpo.space._yaml import _read_yaml

P = "hyperparameters:\n  lr: {type: float, low: 1.0e-4, high: 0.1, log: true}\n"  # a valid block
ST, SE, SY = "structural", "semantic", "syntax"


def H(*lines: str) -> str:
    return "hyperparameters:\n" + "".join(f"  {line}\n" for line in lines)


def S(study: str) -> str:
    return f"study: {study}\n" + P


def F(fixed: str) -> str:
    return P + f"fixed: {fixed}\n"


CAT = "loss_fn: {type: categorical, choices: [cross_entropy, focal]}"

# (id, kind, document, yaml path (None: whole document), rule fragment)
BAD = [
    # top level
    ("top_unknown_key", ST, "hyperparams:\n  lr: {type: float, low: 0.1, high: 0.2}\n", "hyperparams",
     "unknown key in the top level"),
    ("top_missing_hyperparameters", ST, "study: {name: x}\n", "hyperparameters", "must list at least one parameter"),
    ("top_empty_hyperparameters", ST, "hyperparameters: {}\n", "hyperparameters", "must list at least one"),
    ("top_hyperparameters_list", ST, "hyperparameters: [lr, dropout]\n", "hyperparameters", "must be a mapping"),
    ("top_list", ST, "- lr\n- dropout\n", "(top level)", "must be a mapping with study"),
    ("top_empty", ST, "# nothing\n", "(top level)", "the search space is empty"),
    # parameter structure
    ("param_scalar", ST, H("lr: 0.01"), "hyperparameters.lr", "must be a mapping with a type"),
    ("param_missing_type", ST, H("lr: {low: 0.1, high: 0.2}"), "hyperparameters.lr.type", "is required"),
    ("param_bad_type", ST, H("lr: {type: double, low: 0.1, high: 0.2}"), "hyperparameters.lr.type",
     "must be categorical, float or int"),
    ("param_typo_key", ST, H("lr: {type: float, low: 0.1, high: 0.2, lgo: true}"), "hyperparameters.lr.lgo",
     "unknown key in a float parameter, got 'lgo'. Did you mean 'log'?"),
    ("param_choices_on_float", ST, H("lr: {type: float, low: 0.1, high: 0.2, choices: [1, 2]}"),
     "hyperparameters.lr.choices", "not a key of a float parameter"),
    ("param_log_on_categorical", ST, H("optimizer: {type: categorical, choices: [sgd, adam], log: true}"),
     "hyperparameters.optimizer.log", "not a key of a categorical parameter"),
    ("param_unknown_name", ST, H("lrr: {type: float, low: 0.1, high: 0.2}"), "hyperparameters.lrr",
     "not a trainer field, got 'lrr'. Did you mean 'lr'?"),
    ("param_input_size", ST, H("input_size: {type: categorical, choices: [32, 64]}"),
     "hyperparameters.input_size", "not a trainer field"),
    ("param_float_on_bool_field", ST, H("augment: {type: float, low: 0, high: 1}"),
     "hyperparameters.augment.type", "augment is a bool field"),
    ("param_float_on_int_field", ST, H("epochs: {type: float, low: 1, high: 5}"), "hyperparameters.epochs.type",
     "epochs is an integer field"),
    # categorical
    ("cat_missing_choices", ST, H("optimizer: {type: categorical}"), "hyperparameters.optimizer.choices",
     "is required for a categorical parameter"),
    ("cat_choices_string", ST, H("backbone: {type: categorical, choices: resnet18}"),
     "hyperparameters.backbone.choices", "must be a list, got 'resnet18'"),
    ("cat_choices_empty", ST, H("backbone: {type: categorical, choices: []}"), "hyperparameters.backbone.choices",
     "needs at least 2 choices"),
    ("cat_single_choice", ST, H("backbone: {type: categorical, choices: [resnet18]}"),
     "hyperparameters.backbone.choices", "needs at least 2 choices"),
    ("cat_duplicate", ST, H("batch_size: {type: categorical, choices: [16, 32, 16]}"),
     "hyperparameters.batch_size.choices[2]", "duplicate choice"),
    ("cat_duplicate_int_float", ST, H("batch_size: {type: categorical, choices: [16, 16.0]}"),
     "hyperparameters.batch_size.choices[1]", "duplicate choice"),
    ("cat_nested_choice", ST, H("batch_size: {type: categorical, choices: [[16, 32], 64]}"),
     "hyperparameters.batch_size.choices[0]", "each choice must be a single value"),
    ("cat_unknown_backbone", ST, H("backbone: {type: categorical, choices: [resnet18, resnet19]}"),
     "hyperparameters.backbone.choices[1]", "must be a registered backbone, got 'resnet19'"),
    ("cat_unknown_loss", ST, H("loss_fn: {type: categorical, choices: [cross_entropy, focla]}"),
     "hyperparameters.loss_fn.choices[1]", "must be a registered loss, got 'focla'. Did you mean 'focal'?"),
    ("cat_unknown_fusion", ST, H("fusion: {type: categorical, choices: [last, mssf]}"),
     "hyperparameters.fusion.choices[1]", "must be a registered fusion"),
    ("cat_unknown_optimizer", ST, H("optimizer: {type: categorical, choices: [sgd, adamx]}"),
     "hyperparameters.optimizer.choices[1]", "must be a registered optimizer"),
    ("cat_wrong_choice_type", ST, H("batch_size: {type: categorical, choices: [16, big]}"),
     "hyperparameters.batch_size.choices[1]", "must be an integer"),
    ("cat_quoted_number", ST, H("lr: {type: categorical, choices: ['1e-3', 0.01]}"),
     "hyperparameters.lr.choices[0]", "must be a number, not a quoted string"),
    ("cat_nan_choice", SE, H("lr: {type: categorical, choices: [.nan, 0.01]}"), "hyperparameters.lr.choices[0]",
     "must be finite"),
    ("cat_default_not_choice", SE, H("batch_size: {type: categorical, choices: [16, 32], default: 64}"),
     "hyperparameters.batch_size.default", "must be one of the choices"),
    ("cat_choice_out_of_range", SE, H("dropout: {type: categorical, choices: [0.5, 1.5]}"),
     "hyperparameters.dropout.choices[1]", "must lie in [0.0, 1.0)"),
    # numeric
    ("num_missing_low", ST, H("lr: {type: float, high: 0.1}"), "hyperparameters.lr.low",
     "is required for a float parameter"),
    ("num_quoted_exponent", ST, H("lr: {type: float, low: '1e-5', high: 0.1, log: true}"),
     "hyperparameters.lr.low", "must be a number, not a quoted string, got '1e-5'. Write it unquoted: 1e-5"),
    ("num_string_bound", ST, H("lr: {type: float, low: small, high: 0.1}"), "hyperparameters.lr.low",
     "must be a number"),
    ("num_bool_bound", ST, H("dropout: {type: float, low: true, high: 0.5}"), "hyperparameters.dropout.low",
     "must be a number, got true"),
    ("num_nan_bound", SE, H("lr: {type: float, low: .nan, high: 0.1}"), "hyperparameters.lr.low",
     "must be finite, got .nan"),
    ("num_inf_bound", SE, H("weight_decay: {type: float, low: 0.0, high: .inf}"),
     "hyperparameters.weight_decay.high", "must be finite, got .inf"),
    ("int_fractional_bound", ST, H("epochs: {type: int, low: 1.5, high: 5}"), "hyperparameters.epochs.low",
     "must be a whole number for an int parameter, got 1.5"),
    ("num_log_not_bool", ST, H("lr: {type: float, low: 0.001, high: 0.1, log: 'true'}"), "hyperparameters.lr.log",
     "must be true or false"),
    ("num_negative_step", ST, H("dropout: {type: float, low: 0.0, high: 0.5, step: -0.1}"),
     "hyperparameters.dropout.step", "must be positive"),
    ("int_zero_step", ST, H("epochs: {type: int, low: 1, high: 5, step: 0}"), "hyperparameters.epochs.step",
     "must be positive"),
    ("num_log_with_step", ST, H("lr: {type: float, low: 0.001, high: 0.1, log: true, step: 0.001}"),
     "hyperparameters.lr.step", "cannot be combined with log: true"),
    ("int_log_with_step", ST, H("batch_size: {type: int, low: 8, high: 64, log: true, step: 8}"),
     "hyperparameters.batch_size.step", "cannot be combined with log: true"),
    ("num_low_above_high", SE, H("lr: {type: float, low: 0.1, high: 0.01}"), "hyperparameters.lr.high",
     "must be greater than low"),
    ("num_low_equals_high", SE, H("epochs: {type: int, low: 3, high: 3}"), "hyperparameters.epochs.high",
     "must be greater than low"),
    ("num_log_nonpositive", SE, H("weight_decay: {type: float, low: 0.0, high: 0.1, log: true}"),
     "hyperparameters.weight_decay.low", "must be > 0 on a log scale"),
    ("num_step_not_dividing", SE, H("dropout: {type: float, low: 0.0, high: 0.5, step: 0.3}"),
     "hyperparameters.dropout.step", "must divide high - low (0.5), got 0.3. Set high to 0.3"),
    ("int_step_not_dividing", SE, H("epochs: {type: int, low: 1, high: 10, step: 2}"),
     "hyperparameters.epochs.step", "must divide high - low (9)"),
    ("num_default_outside", SE, H("lr: {type: float, low: 0.001, high: 0.1, default: 0.5}"),
     "hyperparameters.lr.default", "must lie in [0.001, 0.1]"),
    ("num_default_off_step", SE, H("dropout: {type: float, low: 0.0, high: 0.5, step: 0.1, default: 0.25}"),
     "hyperparameters.dropout.default", "must lie in [0, 0.5] on step 0.1"),
    ("num_default_string", ST, H("lr: {type: float, low: 0.001, high: 0.1, default: high}"),
     "hyperparameters.lr.default", "must be a number"),
    ("num_field_range", SE, H("dropout: {type: float, low: 0.0, high: 1.0}"), "hyperparameters.dropout.high",
     "must lie in [0.0, 1.0)"),
    ("num_lr_zero", SE, H("lr: {type: float, low: 0.0, high: 0.1}"), "hyperparameters.lr.low", "must lie in"),
    # conditions
    ("when_not_mapping", ST, H(CAT, "focal_gamma: {type: float, low: 1, high: 3, when: loss_fn}"),
     "hyperparameters.focal_gamma.when", "must be a mapping of parameter"),
    ("when_nested_list", ST, H(CAT, "focal_gamma: {type: float, low: 1, high: 3, when: {loss_fn: [[focal]]}}"),
     "hyperparameters.focal_gamma.when.loss_fn[0]", "must be a single value"),
    ("when_unknown_param", SE, H(CAT, "focal_gamma: {type: float, low: 1, high: 3, when: {los_fn: focal}}"),
     "hyperparameters.focal_gamma.when.los_fn", "conditions must name a searched parameter"),
    ("when_unsearched_field", SE, H("focal_gamma: {type: float, low: 1, high: 3, when: {loss_fn: focal}}"),
     "hyperparameters.focal_gamma.when.loss_fn", "conditions must name a searched parameter"),
    ("when_fixed_param", SE, H("focal_gamma: {type: float, low: 1, high: 3, when: {loss_fn: focal}}")
     + "fixed: {loss_fn: focal}\n", "hyperparameters.focal_gamma.when.loss_fn", "loss_fn is fixed, not searched"),
    ("when_impossible_value", SE, H(CAT, "focal_gamma: {type: float, low: 1, high: 3, when: {loss_fn: focla}}"),
     "hyperparameters.focal_gamma.when.loss_fn", "impossible condition: loss_fn never takes this value"),
    ("when_float_parent", SE, H("lr: {type: float, low: 0.001, high: 0.1}",
                                "momentum: {type: float, low: 0.8, high: 0.9, when: {lr: 0.01}}"),
     "hyperparameters.momentum.when.lr", "a condition's parameter must be categorical"),
    ("when_self", SE, H("optimizer: {type: categorical, choices: [sgd, adam], when: {optimizer: sgd}}"),
     "hyperparameters.optimizer.when.optimizer", "a parameter cannot depend on itself"),
    ("when_cycle", SE, H("optimizer: {type: categorical, choices: [sgd, adam], when: {loss_fn: focal}}",
                         "loss_fn: {type: categorical, choices: [cross_entropy, focal], when: {optimizer: sgd}}"),
     "hyperparameters.optimizer.when", "conditions form a cycle, got 'optimizer -> loss_fn -> optimizer'"),
    ("when_never_holds", SE, H("optimizer: {type: categorical, choices: [sgd, adam]}",
                               "scheduler: {type: categorical, choices: [cosine, step], when: {optimizer: sgd}}",
                               "warmup_epochs: {type: int, low: 0, high: 2, "
                               "when: {optimizer: adam, scheduler: step}}"),
     "hyperparameters.warmup_epochs.when", "can never hold"),
    ("when_empty_list", ST, H(CAT, "focal_gamma: {type: float, low: 1, high: 3, when: {loss_fn: []}}"),
     "hyperparameters.focal_gamma.when.loss_fn", "must list at least one value"),
    # fixed
    ("fixed_unknown", ST, F("{epoch: 3}"), "fixed.epoch", "not a trainer field, got 'epoch'. Did you mean 'epochs'?"),
    ("fixed_list", ST, F("{epochs: [1, 2]}"), "fixed.epochs", "must be a single value"),
    ("fixed_wrong_type", ST, F("{epochs: three}"), "fixed.epochs", "must be an integer"),
    ("fixed_bool", ST, F("{augment: 1}"), "fixed.augment", "must be true or false"),
    ("fixed_backbone", ST, F("{backbone: resnet19}"), "fixed.backbone",
     "must be a registered backbone, got 'resnet19'. Did you mean 'resnet18'?"),
    ("fixed_quoted_number", ST, F("{lr: '1e-3'}"), "fixed.lr", "must be a number, not a quoted string"),
    ("fixed_range", SE, F("{epochs: 0}"), "fixed.epochs", "must lie in [1, inf)"),
    ("fixed_device", SE, F("{device: gpu}"), "fixed.device", "must be auto, cpu, cuda or cuda:N"),
    ("fixed_not_mapping", ST, F("[epochs]"), "fixed", "must be a mapping of field: value"),
    ("fixed_and_searched", SE, F("{lr: 0.01}"), "fixed.lr", "is both searched and fixed"),
    # study
    ("study_unknown_key", ST, S("{trials: 5}"), "study.trials", "unknown key in study"),
    ("study_choose_unknown", ST, S("{trial_length: compute, choose: cheapest}"), "study.choose",
     "must be one of best, cheapest_within_1se, got 'cheapest'. Did you mean 'cheapest_within_1se'?"),
    ("study_choose_without_compute", SE, S("{choose: cheapest_within_1se}"), "study.choose",
     "compares the costs per image that trial_length: compute measures"),
    ("study_choose_not_val_acc", SE,
     S("{trial_length: compute, choose: cheapest_within_1se, metric: val_macro_f1}"),
     "study.choose", "needs metric val_acc alone"),
    ("study_not_mapping", ST, S("demo"), "study", "must be a mapping"),
    ("study_bad_name", ST, S("{name: 'my study'}"), "study.name", "must be a name of letters"),
    ("study_bad_direction", ST, S("{direction: maximise}"), "study.direction",
     "must be one of maximize, minimize, got 'maximise'. Did you mean 'maximize'?"),
    ("study_direction_list", ST, S("{direction: [maximize]}"), "study.direction",
     "must be a single name; a list belongs under directions"),
    ("study_both_directions", ST, S("{direction: maximize, directions: [maximize]}"), "study.directions",
     "give either direction or directions"),
    ("study_directions_string", ST, S("{directions: maximize}"), "study.directions", "must be a list"),
    ("study_unknown_metric", ST, S("{metric: accuracy}"), "study.metric", "must be one of val_acc"),
    ("study_metrics_twice", ST, S("{metrics: [val_acc, val_acc]}"), "study.metrics", "lists a metric twice"),
    ("study_n_trials_zero", ST, S("{n_trials: 0}"), "study.n_trials", "must be a positive whole number"),
    ("study_n_trials_text", ST, S("{n_trials: ten}"), "study.n_trials", "must be a positive whole number"),
    ("study_timeout_negative", ST, S("{timeout: -5}"), "study.timeout", "must be positive"),
    ("study_timeout_inf", SE, S("{timeout: .inf}"), "study.timeout", "must be finite"),
    ("study_stall_without_isolation", SE, S("{trial_stall_timeout: 60}"),
     "study.trial_stall_timeout", ("applies to trial_isolation: process only, got 60. Add "
                                   "trial_isolation: process")),
    ("study_stall_zero", ST, S("{trial_isolation: process, trial_stall_timeout: 0}"),
     "study.trial_stall_timeout", "must be positive (seconds) or null, got 0"),
    ("study_stall_text", ST, S("{trial_isolation: process, trial_stall_timeout: ten}"),
     "study.trial_stall_timeout", "must be a number, got 'ten'"),
    ("study_direction_vs_metric", SE, S("{direction: maximize, metric: val_loss}"), "study.direction",
     "val_loss is improved by minimize, got 'maximize'"),
    ("study_count_mismatch", SE, S("{directions: [maximize, minimize], metrics: [val_acc]}"),
     "study.directions", "needs one direction per metric"),
    ("study_directions_without_metrics", SE, S("{directions: [maximize, minimize]}"), "study.directions",
     "needs metrics: one per direction"),
    ("study_multi_objective_pruner", SE,
     S("{metrics: [val_acc, latency_ms], pruner: {type: MedianPruner}}"), "study.pruner",
     "Optuna cannot prune a multi-objective study"),
    ("study_cmaes_multi_objective", SE, S("{metrics: [val_acc, params_m], sampler: {type: CmaEs}}"),
     "study.sampler.type", "CmaEs supports one objective only"),
    # sampler / pruner
    ("sampler_unknown", ST, S("{sampler: {type: TPS}}"), "study.sampler.type",
     "unknown sampler, got 'TPS'. Did you mean 'TPE'?"),
    ("sampler_missing_type", ST, S("{sampler: {seed: 1}}"), "study.sampler", "needs a type"),
    ("sampler_unknown_arg", ST, S("{sampler: {type: TPE, n_startup: 5}}"), "study.sampler.n_startup",
     "not an argument of TPESampler, got 'n_startup'. Did you mean 'n_startup_trials'?"),
    ("sampler_arg_type", ST, S("{sampler: {type: TPE, seed: abc}}"), "study.sampler.seed",
     "must be an integer or null"),
    ("sampler_seed_negative", ST, S("{sampler: {type: Random, seed: -1}}"), "study.sampler",
     "RandomSampler rejects these arguments (Seed must be between 0 and 2**32 - 1)"),
    ("sampler_object_arg", ST, S("{sampler: {type: TPE, gamma: 0.5}}"), "study.sampler.gamma",
     "TPESampler.gamma takes a Python object"),
    ("sampler_grid_search_space", ST, S("{sampler: {type: Grid, search_space: null}}"),
     "study.sampler.search_space", "Grid sets search_space itself"),
    ("sampler_grid_continuous", SE, S("{sampler: {type: Grid}}"), "hyperparameters.lr",
     "Grid needs a finite space"),
    ("sampler_grid_too_big", SE, "study: {sampler: Grid}\n"
     + H("max_train_samples: {type: int, low: 1, high: 1000000}", "epochs: {type: int, low: 1, high: 100}"),
     "study.sampler.type", "the grid has 100000000 points"),
    ("sampler_null", ST, S("{sampler: null}"), "study.sampler", "must name a sampler"),
    ("pruner_unknown", ST, S("{pruner: {type: Median2}}"), "study.pruner.type", "unknown pruner"),
    ("pruner_unknown_arg", ST, S("{pruner: {type: MedianPruner, n_warmup: 1}}"), "study.pruner.n_warmup",
     "not an argument of MedianPruner"),
    ("pruner_missing_required", ST, S("{pruner: {type: Percentile}}"), "study.pruner.percentile",
     "PercentilePruner requires percentile"),
    ("pruner_bad_value", SE, S("{pruner: {type: MedianPruner, n_startup_trials: -1}}"), "study.pruner",
     "MedianPruner rejects these arguments (Number of startup trials cannot be negative"),
    ("pruner_threshold_empty", SE, S("{pruner: {type: Threshold}}"), "study.pruner",
     "ThresholdPruner rejects these arguments (Either lower or upper must be specified.)"),
    ("pruner_patient_nested", ST, S("{pruner: {type: Patient, patience: 1, wrapped_pruner: {type: Nope}}}"),
     "study.pruner.wrapped_pruner.type", "unknown pruner"),
    # YAML itself
    ("yaml_unclosed", SY, "hyperparameters:\n  lr: {type: float, low: 0.1\n", None, "not valid YAML"),
    ("yaml_tab", SY, "hyperparameters:\n\tlr: {type: float}\n", None, "not valid YAML"),
    ("yaml_two_documents", SY, P + "---\n" + P, None, "not valid YAML"),
    ("yaml_python_tag", SY, "hyperparameters: !!python/object/apply:os.system [ls]\n", "hyperparameters",
     "unsupported YAML tag, got 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("yaml_python_scalar_tag", SY, "hyperparameters:\n  lr: !!python/name:os.system\n", None, "not valid YAML"),
    ("yaml_bad_int_tag", SY, "hyperparameters:\n  lr: {type: float, low: !!int abc, high: 1}\n",
     "hyperparameters.lr.low", "cannot read this value"),
    ("yaml_duplicate_key", SE, P + "  lr: {type: float, low: 0.1, high: 0.2}\n", "hyperparameters.lr",
     "duplicate key"),
]

_IDS = [b[0] for b in BAD]
_LINE = re.compile(r"^t\.yaml: (?:(?P<path>.+?) )?\(line (?P<line>\d+)\): (?P<rest>.+)$")


def test_bad_corpus_is_large_and_unique():
    assert len(BAD) >= 50 and len(set(_IDS)) == len(_IDS)


@pytest.mark.parametrize("case", BAD, ids=_IDS)
def test_space_bad_snippet_names_path_line_and_rule(case):
    _, _, doc, path, rule = case
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(doc, source="t.yaml")
    errors = info.value.errors
    assert str(info.value) == "\n".join(errors)
    assert all(_LINE.match(e) for e in errors), errors  # every line: file: path (line N): ...
    hits = [e for e in errors if rule in e and (path is None or _LINE.match(e)["path"] == path)]
    assert hits, f"want path {path!r} and rule {rule!r} in:\n" + "\n".join(errors)
    line = int(_LINE.match(hits[0])["line"])
    assert 1 <= line <= doc.count("\n") + 1
    # Shape `rule[, got value]. Fix`: a fix sentence follows the rule on every line.
    assert all(re.search(r"\. [A-Z]", _LINE.match(e)["rest"]) for e in errors), errors


@pytest.mark.parametrize("case", BAD, ids=_IDS)
def test_cli_validate_bad_snippet_exits_2(case, tmp_path, capsys):
    _, _, doc, path, rule = case
    f = tmp_path / "t.yaml"
    f.write_text(doc)
    assert main(["validate", "--space", str(f)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert rule in err and "Traceback" not in err
    assert path is None or f"{f}: {path} (line" in err


@pytest.mark.parametrize("case", [b for b in BAD if b[1] != SY], ids=[b[0] for b in BAD if b[1] != SY])
def test_schema_rejects_exactly_the_structural_cases(case):
    _, kind, doc, _, _ = case
    data, _, _ = _read_yaml(doc, "t.yaml")
    valid = jsonschema.Draft202012Validator(schema()).is_valid(data)
    assert valid == (kind == SE), f"schema says {'valid' if valid else 'invalid'} for a {kind} case"


def test_errors_are_all_collected_and_sorted_by_line():
    doc = ("study: {direction: maximise, sampler: {type: TPS}}\n"
           "hyperparameters:\n"
           "  lrr: {type: float, low: 0.1, high: 0.2}\n"
           "  dropout: {type: float, low: 0.0, high: 0.5, step: 0.3}\n"
           "fixed: {epoch: 3}\n")
    with pytest.raises(SearchSpaceError) as info:
        parse_search_space(doc, source="t.yaml")
    lines = [int(_LINE.match(e)["line"]) for e in info.value.errors]
    assert len(info.value.errors) == 5 and lines == sorted(lines) == [1, 1, 3, 4, 5]


def test_numeric_string_rule_plain_vs_quoted():
    """Plain 1e-5 is a number (YAML 1.2); quoted "1e-5" is a string and rejected with the fix."""
    ok = parse_search_space(H("lr: {type: float, low: 1e-5, high: 1E-1, log: true}"))
    assert (ok.param("lr").low, ok.param("lr").high) == (1e-5, 0.1)
    with pytest.raises(SearchSpaceError, match=r'Write it unquoted: 1e-5'):
        parse_search_space(H('lr: {type: float, low: "1e-5", high: 0.1, log: true}'))
