"""Search quality at equal compute: held-out accuracy of the model each strategy ends with.

Datasets (--datasets): `demo` and `hard`, the synthetic colour set at two sizes, held out on
fresh images of another generator seed; `digits`, scikit-learn's handwritten digits (bundled, no
download) written once as an ImageFolder (8x8 grey upscaled to 32 px RGB PNGs, 10 classes) under
~/.cache/vcr-hpo/ ($VCR_HPO_BENCH_CACHE), split by a fixed seed into search/train, search/val
(what the search sees, through `data: <folder>` as a user gives it) and holdout/ (never seen by
any search). `quick` and `digits-quick` are smoke sizes.

Budget: modelled CPU seconds of one torch thread. A cost table (set-up per run, CPU s per training
image and per evaluated image, for every backbone x batch size of the space, at the trial's px)
is measured once and kept in bench/results/search_quality-v2-costs.json; every epoch any
strategy trains is charged from it. Measured CPU time is no budget on a shared 2-core machine:
the same epoch cost 2.5 s at load 2 and 8-11 s at load 8, and it drifted within one run, which
is why v1's default config (epochs fixed from a 2-epoch pilot) used 460-500 of its 600 s. With
the table every strategy's `used` is its budget to half an epoch, and runs of different sessions
compare. Sampler, storage and checkpoint time are not charged; each run line keeps the measured
CPU seconds beside the charge.

Strategies (--strategies, --strategy):
  shipped   the space's own study block (sampler, pruner and every other key it sets), seeded
  random    the space's study block with a Random sampler, no pruner, no start-up (portfolio or
            neighbours) and every trial the space's epochs (trial_length: epochs): plain random
            search
  default   the space's `default:` config trained once for the whole budget (no search)
  LABEL=final[{PARAM: VALUE, ...}]  no search: the space's default config with these values,
            trained once for the --refit share of the budget, as a search's final training
            that chose it would be (an upper bound on what a choice can reach at that share)
  LABEL=SAMPLER|PRUNER[|STUDY]  SAMPLER, PRUNER: a YAML flow mapping, `shipped` or `none`;
            STUDY: a flow mapping of any further study keys, e.g. {portfolio: 4, fidelity: seconds};
            the space is re-parsed by the project's parser, which checks them.
Every search runs through `hpo.run_study` (the loop `vcr-hpo run` uses: trial 0 is the default,
a temporary SQLite study, its artifact store beside it) for (1 - --refit) of the budget (the
trial that crosses it counts and is paid from the rest); then its best trial (the project's
ranking; with a `choose:` study key, the trial `vcr-hpo best` exports, its reason kept as
`choice`) is trained once, as `vcr-hpo train` does, for as many epochs as the rest buys.

Headline: accuracy on the held-out images of the model each strategy ends with (the final run's;
the default's one run), mean +- standard error over seeds. The search's best val_acc is printed
too but is NOT the headline: it is the maximum of many noisy scores on the same val images.
to_random: the budget fraction of the search part at which the mean (over seeds) held-out
accuracy of the running best trial (best val_acc so far; its final weights, kept by the study,
scored on the held-out images off the budget) reaches random's mean at the end of its search.

Every finished run appends one self-contained line `# run {json}` to --results; --summarise
FILE... recomputes the tables and the issue's verdict from such lines alone.

    python bench/search_quality.py --estimate                  # the compute a run would take
    python bench/search_quality.py --jobs 2 --results bench/results/search_quality-v2-x.txt
    python bench/search_quality.py --summarise bench/results/search_quality-v2-*.txt
    python bench/search_quality.py --quick                     # smoke size (seconds)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: bench/_common.py

import _common as C

from hpo.attrs import EPOCH_SECONDS

FORMAT = 2  # of the per-run lines
RUN_PREFIX = "# run "
COSTS = C.ROOT / "bench" / "results" / "search_quality-v2-costs.json"
DIGITS_VERSION = 1  # bump when the digits folder's layout or images change
HOLDOUT_SEED = 1  # the synthetic held-out images' generator seed (training images: seed 0)
_FRACTIONS = [i / 20 for i in range(1, 21)]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One bench dataset: where its images come from and how many a trial sees."""

    name: str
    kind: str  # "synthetic" or "digits"
    train: int  # training images (digits: a cap on its search/train folder)
    val: int  # validation images the search scores on
    holdout: int  # images no search sees, scoring the model a strategy ends with

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "train": self.train, "val": self.val, "holdout": self.holdout}


DATASETS = {
    "demo": Dataset("demo", "synthetic", 200, 80, 500),
    "hard": Dataset("hard", "synthetic", 400, 100, 500),
    "digits": Dataset("digits", "digits", 200, 100, 500),
    "quick": Dataset("quick", "synthetic", 40, 20, 40),
    "digits-quick": Dataset("digits-quick", "digits", 40, 30, 40),
}


# --------------------------------------------------------------------------- data


def _cache_root() -> Path:
    return Path(os.environ.get("VCR_HPO_BENCH_CACHE") or Path.home() / ".cache" / "vcr-hpo")


def digits_folder(holdout: int, val: int, root: Path | None = None) -> Path:
    """scikit-learn's digits as PNG folders (written once): `search/{train,val}/<digit>/` and
    `holdout/<digit>/`, split stratified by a fixed seed; returns the folder."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    out = (root or _cache_root()) / f"digits-v{DIGITS_VERSION}-h{holdout}-v{val}"
    if (out / "done").is_file():
        return out
    digits = load_digits()
    images, labels = digits.images, digits.target
    rng = np.random.default_rng(20240)
    order = rng.permutation(len(labels))
    part = {}  # index -> "holdout" | "val" | "train", stratified: round-robin over classes
    by_class = [[i for i in order if labels[i] == c] for c in range(10)]
    queue = [i for rank in range(max(map(len, by_class))) for cls in by_class
             for i in cls[rank:rank + 1]]
    for k, i in enumerate(queue):
        part[i] = "holdout" if k < holdout else "val" if k < holdout + val else "train"
    tmp = Path(tempfile.mkdtemp(prefix=out.name + "-", dir=out.parent if out.parent.is_dir()
                                else _mkdir(out.parent)))
    for i, where in part.items():
        folder = tmp / ("holdout" if where == "holdout" else f"search/{where}") / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        grey = (images[i] * (255.0 / 16.0)).round().astype("uint8")
        Image.fromarray(grey, mode="L").resize((32, 32), Image.BILINEAR).convert("RGB").save(
            folder / f"{i:04d}.png")
    (tmp / "done").write_text(f"scikit-learn load_digits, {len(labels)} images, holdout "
                              f"{holdout}, val {val}, version {DIGITS_VERSION}\n")
    try:
        tmp.rename(out)
    except OSError:  # another process wrote it first: theirs is the same
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def overrides_for(ds: Dataset, seed: int, epochs: int, px: int) -> dict[str, Any]:
    """The TrainConfig fields every trial of `ds` gets (as `--set`/`--data` would give them)."""
    if ds.kind == "synthetic":
        return {**C.tiny_overrides(epochs=epochs, image_size=px, train=ds.train, val=ds.val),
                "seed": seed}
    return {"data": str(digits_folder(ds.holdout, ds.val) / "search"), "epochs": epochs,
            "image_size": px, "max_train_samples": ds.train, "device": "auto", "seed": seed}


def holdout_images(ds: Dataset, px: int):
    """(images, labels) no search sees: fresh synthetic draws, or the digits' holdout folder
    decoded by the project's loader."""
    import torch

    from hpo.config import TrainConfig
    from hpo.data import load_dataset, make_synthetic

    if ds.kind == "synthetic":
        return make_synthetic(ds.holdout, px, seed=HOLDOUT_SEED)
    cfg = TrainConfig(data=str(digits_folder(ds.holdout, ds.val) / "holdout"), image_size=px,
                      val_fraction=0.5)
    s = load_dataset(cfg)
    return (torch.cat([s.train_images, s.val_images]), torch.cat([s.train_labels, s.val_labels]))


def split_sizes(space, ds: Dataset, epochs: int, px: int) -> tuple[int, int, int]:
    """Training and validation images a trial of `ds` actually gets, and its classes."""
    from hpo.data import load_dataset

    cfg = space.config_for(_baseline(space), overrides_for(ds, 0, epochs, px))
    s = load_dataset(cfg)
    return len(s.train_labels), len(s.val_labels), s.num_classes


def _baseline(space) -> dict[str, Any]:
    return space.baseline()


# --------------------------------------------------------------------------- cost table


@dataclasses.dataclass(frozen=True)
class Costs:
    """CPU seconds (1 thread) per run set-up, training image and evaluated image, per
    `backbone/batch_size`: what every epoch of every strategy is charged."""

    entries: dict[str, tuple[float, float, float]]
    note: str = ""

    def _get(self, backbone: str, batch: int) -> tuple[float, float, float]:
        key = f"{backbone}/{batch}"
        if key not in self.entries:
            raise KeyError(f"cost table: no entry {key!r}, got {sorted(self.entries)}")
        return self.entries[key]

    def setup(self, backbone: str, batch: int) -> float:
        return self._get(backbone, batch)[0]

    def epoch(self, backbone: str, batch: int, n_train: int, n_val: int) -> float:
        _, train, val = self._get(backbone, batch)
        return n_train * train + n_val * val

    def run(self, backbone: str, batch: int, epochs: int, n_train: int, n_val: int) -> float:
        return self.setup(backbone, batch) + epochs * self.epoch(backbone, batch, n_train, n_val)

    def mean_trial(self, epochs: int, n_train: int, n_val: int) -> float:
        """A trial's cost averaged over the table (backbone and batch size drawn uniformly)."""
        return statistics.fmean(s + epochs * (n_train * t + n_val * v)
                                for s, t, v in self.entries.values())


def _combos(space) -> list[tuple[str, int]]:
    base = space.config_for(_baseline(space), {})

    def values(name: str, fallback):
        p = next((p for p in space.params if p.name == name), None)
        return list(p.choices) if p is not None and p.choices else [fallback]

    return [(b, int(bs)) for b in values("backbone", base.backbone)
            for bs in values("batch_size", base.batch_size)]


def calibrate(space, px: int, *, train: int = 256, val: int = 128, epochs: int = 2,
              combos: list[tuple[str, int]] | None = None) -> dict[str, list[float]]:
    """Measure the cost table: per combo, `build_state` (set-up), `validate` (per val image) and
    the fastest of `epochs` epochs minus validation (per training image), in process CPU time."""
    from hpo.train import build_state, train_epoch, validate

    ov = {**C.tiny_overrides(epochs=epochs, image_size=px, train=train, val=val), "seed": 0}
    C.warm_up(space, ov)
    out = {}
    for backbone, batch in combos or _combos(space):
        cfg = space.config_for({**_baseline(space), "backbone": backbone, "batch_size": batch}, ov)
        t = time.process_time()
        s = build_state(cfg)
        setup = time.process_time() - t
        t = time.process_time()
        validate(s)
        per_val = (time.process_time() - t) / val
        fastest = math.inf
        for _ in range(epochs):
            t = time.process_time()
            train_epoch(s)
            fastest = min(fastest, time.process_time() - t)
        out[f"{backbone}/{batch}"] = [round(setup, 4), round(max(fastest - per_val * val, 0.0)
                                                              / train, 7), round(per_val, 7)]
    return out


def load_costs(space, space_name: str, px: int, path: Path | None, quick: bool) -> Costs:
    """The kept cost table for this space, px and torch (measured and saved when missing)."""
    import torch

    key = f"{space_name}|{px}px|torch {torch.__version__.split('+')[0]}|{platform.machine()}"
    kept = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    entry = kept.get(key, {"entries": {}})
    missing = [c for c in _combos(space) if f"{c[0]}/{c[1]}" not in entry["entries"]]
    if missing:
        size = {"train": 32, "val": 16, "epochs": 1} if quick else {}
        entry["entries"].update(calibrate(space, px, combos=missing, **size))
        entry["measured"] = f"{time.strftime('%Y-%m-%d %H:%M')} on {C.conditions()}"
        if path is not None:
            kept[key] = entry
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n")
    where = "measured now, not kept" if path is None else str(path)
    return Costs({k: tuple(v) for k, v in entry["entries"].items()},
                 f"{key}: {where}; measured {entry.get('measured', '?')}")


# --------------------------------------------------------------------------- strategies


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A search (changes to the space's study block) or the default config alone."""

    label: str
    text: str
    sampler: Any = "shipped"  # a mapping, "shipped" or None
    pruner: Any = "shipped"
    study: dict[str, Any] = dataclasses.field(default_factory=dict)
    default: bool = False
    final: dict[str, Any] | None = None  # LABEL=final{...}: this config, the refit share only

    @property
    def searches(self) -> bool:
        return not self.default and self.final is None


def _flow(text: str, what: str, label: str) -> Any:
    import yaml

    text = text.strip()
    if text in ("shipped", "none"):
        return None if text == "none" else "shipped"
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError:
        raw = None
    if not isinstance(raw, dict):
        from hpo.errors import ConfigError

        raise ConfigError(f"--strategy {label}: {what} must be a YAML flow mapping, shipped or "
                          f"none, got {text!r}. Write e.g. \"{{type: TPE, multivariate: true}}\"")
    return raw


def parse_strategy(text: str) -> Strategy:
    """`shipped`, `random`, `default` or `LABEL=SAMPLER|PRUNER[|STUDY]` (see the module doc)."""
    from hpo.errors import ConfigError

    if text in ("shipped", "default"):
        return Strategy(text, text, default=text == "default")
    if text == "random":
        return Strategy("random", text, {"type": "Random"}, None, dict(C.FIXED_LENGTH))
    label, sep, rest = text.partition("=")
    if sep and label.strip() and rest.strip().startswith("final"):
        params = rest.strip()[len("final"):].strip()
        fixed = _flow(params, "final{PARAM: VALUE, ...}", label.strip()) if params else {}
        return Strategy(label.strip(), text, final=dict(fixed))
    parts = rest.split("|", 2)
    if not sep or len(parts) < 2 or not label.strip():
        raise ConfigError(f"--strategy: shipped, random, default, LABEL=final{{...}} or "
                          f"LABEL=SAMPLER|PRUNER[|STUDY], got {text!r}. Write e.g. "
                          f"\"gp-pf=shipped|shipped|{{portfolio: 4}}\"")
    label = label.strip()
    study = _flow(parts[2], "STUDY", label) if len(parts) == 3 else {}
    if study in (None, "shipped"):
        study = {}
    return Strategy(label, text, _flow(parts[0], "SAMPLER", label), _flow(parts[1], "PRUNER",
                                                                         label), study)


def space_text(name: str) -> tuple[str, str]:
    """(YAML text, source name) of `name`: a file in search_spaces/ or a path."""
    path = C.ROOT / "search_spaces" / name
    path = path if path.is_file() else Path(name)
    return path.read_text(encoding="utf-8"), path.name


def strategy_space(text: str, source: str, strategy: Strategy, seed: int):
    """The space `strategy` searches with seed `seed`: its study block changed, then parsed by
    the project's parser (which checks every key, known to this bench or not)."""
    import yaml

    from hpo.errors import ConfigError
    from hpo.space import parse_search_space

    raw = yaml.safe_load(text)
    study = dict(raw.get("study") or {})
    if strategy.sampler != "shipped":
        study["sampler"] = dict(strategy.sampler)
    if strategy.pruner != "shipped":
        study["pruner"] = None if strategy.pruner is None else dict(strategy.pruner)
    study.update(strategy.study)
    sampler = study.get("sampler") or {"type": "TPE"}
    sampler = {"type": sampler} if isinstance(sampler, str) else dict(sampler)
    study["sampler"] = {**sampler, "seed": seed}
    study["n_trials"], study["timeout"] = None, None  # the bench's budget ends the run
    raw["study"] = study
    try:
        return parse_search_space(yaml.safe_dump(raw, sort_keys=False),
                                  source=f"{source} [{strategy.label}]")
    except ConfigError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise ConfigError(f"--strategy {strategy.label}: {first}") from None


def final_params(strategy: Strategy, space) -> dict[str, Any]:
    """The config a `LABEL=final{...}` strategy trains: the space's default with its values,
    fitted to the space by the warm start's rule (a name it lacks, or a value off its range,
    choices or step: one line)."""
    from hpo.errors import ConfigError
    from hpo.run.warm_start import fit_params

    assert strategy.final is not None
    names = [p.name for p in space.params]
    unknown = sorted(set(strategy.final) - set(names))
    if unknown:
        raise ConfigError(f"--strategy {strategy.label}: final{{...}} sets {unknown}, which the "
                          f"space does not search. Use some of {names}")
    fitted, bad, left_out = fit_params(space, {**_baseline(space), **strategy.final})
    if fitted is None or left_out:
        why = bad or [f"{n} is switched off by its when:" for n in left_out]
        raise ConfigError(f"--strategy {strategy.label}: final{{...}}: {'; '.join(why)}. Give "
                          "a value the space allows")
    for p in space.params:  # a parameter its values switched on (focal_gamma): its baseline
        if p.name not in fitted and p.enabled(fitted):
            fitted[p.name] = p.baseline()
    return fitted


def describe(strategy: Strategy, space) -> str:
    if strategy.default:
        return "the space's default: config, trained once for the whole budget"
    if strategy.final is not None:
        return (f"no search: {final_params(strategy, space)} trained once for the --refit share "
                "of the budget")
    st = space.study
    keys = {**({"portfolio": st.portfolio} if st.portfolio else {}),
            **({"neighbours": st.neighbours} if st.neighbours else {}),
            **({"fidelity": st.fidelity} if st.fidelity != "epochs" else {}),
            **({"trial_length": st.trial_length} if st.trial_length != "epochs" else {}),
            **strategy.study}
    extra = f", study keys {keys}" if keys else ""
    return (f"sampler {st.sampler.describe()}, pruner "
            f"{'none' if st.pruner is None else st.pruner.describe()}{extra}")


# --------------------------------------------------------------------------- one run


@dataclasses.dataclass(frozen=True)
class Job:
    strategy: Strategy
    dataset: Dataset
    seed: int
    budget: float
    trials_budget: float | None
    refit: float
    epochs: int
    px: int
    tmp: str


_W: dict[str, Any] = {}  # per worker process: space text, costs, split sizes, held-out images


def _init(threads: int, space_name: str, costs: Costs, datasets: list[Dataset], epochs: int,
          px: int) -> None:
    """Worker set-up (not charged): threads, quiet Optuna, data decoded, backbones built once."""
    import optuna
    import torch

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    text, source = space_text(space_name)
    space = strategy_space(text, source, Strategy("shipped", "shipped"), 0)
    _W.update(text=text, source=source, space_name=space_name, costs=costs, sizes={},
              holdout={})
    for ds in datasets:
        C.warm_up(space, overrides_for(ds, 0, epochs, px))
        _W["sizes"][ds.name] = split_sizes(space, ds, epochs, px)
        _W["holdout"][ds.name] = holdout_images(ds, px)


def _score(model, ds: Dataset) -> float:
    from hpo.train import evaluate, resolve_device

    images, labels = _W["holdout"][ds.name]
    device = next(model.parameters()).device
    _, acc, _ = evaluate(model, images, labels, _W["sizes"][ds.name][2],
                         device=resolve_device(str(device)), batch_size=256)
    return float(acc)


def final_epochs(left: float, setup: float, per_epoch: float) -> int:
    """Epochs a final run of `setup` + n x `per_epoch` gets from `left`: the nearest whole
    number, so its charge lands within half an epoch of `left` (0: not even half an epoch)."""
    return max(0, math.floor((left - setup) / per_epoch + 0.5))


def _train_final(space, params: dict, job: Job, left: float) -> dict[str, Any]:
    """Train `params` once for as many epochs as `left` buys (rounded: `used` lands within
    half an epoch of the budget), as `vcr-hpo train` does; score its final model."""
    from hpo.train import train_model

    overrides = overrides_for(job.dataset, job.seed, job.epochs, job.px)
    cfg = space.config_for(params, overrides)
    n_train, n_val, _ = _W["sizes"][job.dataset.name]
    costs: Costs = _W["costs"]
    n = final_epochs(left, costs.setup(cfg.backbone, cfg.batch_size),
                     costs.epoch(cfg.backbone, cfg.batch_size, n_train, n_val))
    if n < 1:
        return {"final_epochs": 0, "final_charge": 0.0}
    cfg = space.config_for(params, {**overrides, "epochs": n})
    result = train_model(cfg)
    return {"final_epochs": n, "final_charge": costs.run(cfg.backbone, cfg.batch_size, n,
                                                          n_train, n_val),
            "final_val": round(result.history[-1].val_acc, 4),
            "holdout": round(_score(result.model, job.dataset), 4)}


def _kept_model_score(study, url: str, number: int, space, job: Job) -> float | None:
    """Held-out accuracy of trial `number`'s final weights, kept in the study's artifact store."""
    import torch

    from hpo.data import load_dataset
    from hpo.train import build_state
    from hpo.trial.artifacts import artifact_store, study_location
    from hpo.trial.checkpoint import read_weights

    store = artifact_store(url, study.study_name, study_location(study, url))
    with tempfile.TemporaryDirectory(prefix="bench-sq-weights-") as tmp:
        path = read_weights(store, study, number, Path(tmp) / "w.pt")
        if path is None:
            return None
        blob = torch.load(path, map_location="cpu", weights_only=True)
    params = study.trials[number].params
    cfg = space.config_for(params, overrides_for(job.dataset, job.seed, job.epochs, job.px))
    state = build_state(cfg, data=load_dataset(cfg))
    state.model.load_state_dict(blob["model"])
    return _score(state.model, job.dataset)


def _run_search(job: Job) -> dict[str, Any]:
    import optuna

    from hpo.study import top_trials

    space = strategy_space(_W["text"], _W["source"], job.strategy, job.seed)
    overrides = overrides_for(job.dataset, job.seed, job.epochs, job.px)
    n_train, n_val, _ = _W["sizes"][job.dataset.name]
    costs: Costs = _W["costs"]
    search_budget = job.budget * (1.0 - job.refit)
    charged, curve, scored, pending = [0.0], [], {}, []
    anytime = [0.0]
    name = f"sq-{job.strategy.label}-{job.dataset.name}-{job.seed}-{job.budget:g}"  # own artifacts folder
    url = (f"sqlite:///{job.tmp}/{job.dataset.name}-{job.strategy.label}-{job.seed}-"
           f"{job.budget:g}.db")

    def score_pending(study) -> None:
        t = time.process_time()
        for number in [n for n in pending if n not in scored]:
            got = _kept_model_score(study, url, number, space, job)
            if got is not None:  # its weights are promoted after this trial's callbacks
                scored[number] = round(got, 4)
                pending.remove(number)
        anytime[0] += time.process_time() - t

    def on_trial(study, frozen) -> None:
        cfg = space.config_for(frozen.params, overrides)
        epochs = len(frozen.user_attrs.get(EPOCH_SECONDS, ()))
        charged[0] += costs.run(cfg.backbone, cfg.batch_size, epochs, n_train, n_val)
        score_pending(study)
        top = top_trials(study, 1)
        best = top[0] if top else None
        if best is not None and best.number not in scored and best.number not in pending:
            pending.append(best.number)
        curve.append([round(charged[0], 2), frozen.state.name[0],
                      None if best is None else round(best.value, 4),
                      None if best is None else best.number])

    t0 = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GP/multivariate TPE on conditionals: Optuna warns
        records = C.run_study_loop(space, url, overrides=overrides, max_trials=100_000,
                                   stop=lambda _: charged[0] >= search_budget, name=name,
                                   on_trial=on_trial)
    study = optuna.load_study(study_name=name, storage=url)
    score_pending(study)
    top = top_trials(study, 1)
    why, val_best = None, (round(top[0].value, 4) if top else None)
    if top and space.study.choose != "best":  # the trial `vcr-hpo best` would export
        from hpo.outputs.configs import chosen_trial
        from hpo.trial.artifacts import artifact_store, study_location

        chosen, why = chosen_trial(study, store=artifact_store(url, name,
                                                               study_location(study, url)))
        top = [chosen]
    out: dict[str, Any] = {
        "trials": len(records), "pruned": sum(r.state == "PRUNED" for r in records),
        "search_epochs": sum(len(study.trials[r.number].user_attrs.get(EPOCH_SECONDS, ()))
                             for r in records),
        "search_charge": round(charged[0], 2), "curve": curve,
        "scored": {str(k): v for k, v in scored.items()}}
    if not top:
        out.update(holdout=None, val_best=None, chosen=None, final_epochs=0, final_charge=0.0)
    else:
        best = top[0]
        out.update(val_best=val_best, chosen_trial=best.number,
                   chosen=dict(best.params), **({"choice": why} if why else {}))
        if job.refit > 0:
            out.update(_train_final(space, dict(best.params), job, job.budget - charged[0]))
        if out.get("final_epochs", 0) == 0:  # no final run: the model is the trial's own
            out.update(final_epochs=0, final_charge=0.0, holdout=scored.get(best.number))
    out["used"] = round(charged[0] + out["final_charge"], 2)
    out["cpu_s"] = round(time.process_time() - t0 - anytime[0], 1)
    out["anytime_cpu_s"] = round(anytime[0], 1)
    return out


def _run_default(job: Job) -> dict[str, Any]:
    """The default config for the whole budget, or a `final{...}` config for the refit share."""
    space = strategy_space(_W["text"], _W["source"], Strategy("shipped", "shipped"), job.seed)
    if job.strategy.final is None:
        params, left = _baseline(space), job.budget
    else:
        params, left = final_params(job.strategy, space), job.budget * job.refit
    t0 = time.process_time()
    out = _train_final(space, params, job, left)
    out.update(trials=1, pruned=0, search_epochs=0, search_charge=0.0,
               val_best=out.get("final_val"), chosen=params, used=round(out["final_charge"], 2),
               cpu_s=round(time.process_time() - t0, 1), anytime_cpu_s=0.0)
    return out


def fingerprint(space, final: dict[str, Any] | None = None) -> str:
    """What a strategy ran, seed aside: a digest of its space (study block and parameters)
    and, when set, its `choose:` rule (left out of the study's own fingerprint: it picks among
    finished trials, but here it picks what the strategy ends with)."""
    import hashlib

    what = space.canonical()
    if space.study.choose != "best":
        what = {**what, "choose": space.study.choose}
    if final is not None:
        what = {**what, "final": final}
    return hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()
                        ).hexdigest()[:10]


def _commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(C.ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10, check=False).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def run_one(job: Job) -> dict[str, Any]:
    """One (dataset, strategy, seed, budget): the self-contained record of a per-run line."""
    w0 = time.perf_counter()
    body = _run_search(job) if job.strategy.searches else _run_default(job)
    shown = job.strategy if job.strategy.searches else Strategy("shipped", "shipped")
    fp = fingerprint(strategy_space(_W["text"], _W["source"], shown, 0), job.strategy.final)
    head = {"format": FORMAT, "dataset": job.dataset.name, "data": job.dataset.spec(),
            "epochs": job.epochs, "px": job.px, "space": _W["space_name"],
            "strategy": job.strategy.label, "spec": job.strategy.text, "fingerprint": fp,
            "seed": job.seed, "budget": round(job.budget, 2), "trials_budget": job.trials_budget,
            "refit": job.refit, "kind": ("search" if job.strategy.searches else
                                         "default" if job.strategy.default else "final")}
    tail = {"wall_s": round(time.perf_counter() - w0, 1), "load": C.load_text(),
            "host": platform.node(), "commit": _commit()}
    clash = (head.keys() | tail.keys()) & body.keys()
    if clash:  # a run's own figures must never overwrite what groups it
        raise RuntimeError(f"run record: keys {sorted(clash)} written twice")
    return {**head, **body, **tail}


# --------------------------------------------------------------------------- summary


def read_runs(paths: list[str]) -> list[dict[str, Any]]:
    """Every `# run {json}` line of the files, in order, each run once: a line that repeats a
    run already read (same group, strategy and seed; e.g. baselines copied into two results
    files summarised together) is dropped with a note, so it cannot shrink a standard error."""
    runs, seen, repeated = [], set(), 0
    for p in paths:
        for line in Path(p).read_text(encoding="utf-8").splitlines():
            if line.startswith(RUN_PREFIX):
                rec = json.loads(line[len(RUN_PREFIX):])
                if rec.get("format") != FORMAT:
                    continue
                key = _run_key(rec)
                if key in seen:
                    repeated += 1
                    continue
                seen.add(key)
                runs.append(rec)
    if repeated:
        print(f"# note: {repeated} run line(s) repeat a run already read (same dataset, budget, "
              "strategy and seed); each run is counted once, from its first line")
    return runs


def _group_key(r: dict[str, Any]) -> tuple:
    """Runs that compare: same dataset and sizes, trial length, space, budget and refit."""
    return (r["dataset"], json.dumps(r["data"], sort_keys=True), r["epochs"], r["px"],
            r["space"], round(r["budget"], 1), r["refit"])


def _run_key(r: dict[str, Any]) -> tuple:
    """One run: its group, strategy and seed (a results file holds each at most once)."""
    return (*_group_key(r), r["strategy"], r["seed"])


def searched(r: dict[str, Any]) -> bool:
    """Whether run `r` searched (lines before `kind` was kept: every strategy but default)."""
    return r.get("kind", "default" if r["strategy"] == "default" else "search") == "search"


def mean_se(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


def best_holdout_at(run: dict[str, Any], t: float) -> float:
    """Held-out accuracy of the running best trial after the trials that ended by charge `t`
    (0 before any trial completed; a best whose weights were not kept: the last scored one)."""
    got = 0.0
    for charge, _, _, number in run.get("curve", ()):
        if charge > t:
            break
        got = run["scored"].get(str(number), got) if number is not None else got
    return got


def to_random(runs: list[dict[str, Any]], randoms: list[dict[str, Any]]) -> float | None:
    """Smallest fraction (of 20 steps) of the search part of the budget at which the mean held-out
    accuracy of the running best trial reaches random's mean at the end of its search."""
    if not runs or not randoms or any("curve" not in r for r in runs):
        return None
    target = statistics.fmean(best_holdout_at(r, math.inf) for r in randoms)
    for f in _FRACTIONS:  # the last step counts the trial that crossed the search budget
        t = math.inf if f >= 1.0 else f * runs[0]["budget"] * (1.0 - runs[0]["refit"])
        if statistics.fmean(best_holdout_at(r, t) for r in runs) >= target - 1e-12:
            return f
    return None


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (group, strategy): means over seeds of what the per-run lines hold."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(_group_key(r), []).append(r)
    rows = []
    for key, group in groups.items():
        randoms = [r for r in group if r["strategy"] == "random"]
        for label in dict.fromkeys(r["strategy"] for r in group):
            mine = [r for r in group if r["strategy"] == label]
            held = [r["holdout"] for r in mine if r.get("holdout") is not None]
            hmean, hse = mean_se(held) if held else (math.nan, math.nan)
            vals = [r["val_best"] for r in mine if r.get("val_best") is not None]
            frac = to_random(mine, randoms) if searched(mine[0]) else None
            tb = mine[0].get("trials_budget")
            rows.append({
                "dataset": key[0], "budget": key[5], "trials_budget": tb, "strategy": label,
                "seeds": len(mine), "holdout": hmean, "se": hse, "n_holdout": len(held),
                "val_best": statistics.fmean(vals) if vals else math.nan,
                "to_random": frac,
                "trials": statistics.fmean(r["trials"] for r in mine),
                "used": statistics.fmean(r["used"] / r["budget"] for r in mine),
                "seed_list": sorted(r["seed"] for r in mine), "key": key,
                "searched": searched(mine[0])})
    return rows


def _fmt(x: Any, digits: int = 4) -> Any:
    if x is None:
        return ">1" if digits == 2 else "-"
    if isinstance(x, float) and math.isnan(x):
        return "-"
    return round(x, digits) if isinstance(x, float) else x


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    headers = ["dataset", "budget_s", "trials_b", "strategy", "seeds", "holdout", "se",
               "val_best*", "to_random", "trials", "used/budget"]
    table = [[r["dataset"], r["budget"], "-" if r["trials_budget"] is None else
              r["trials_budget"], r["strategy"], r["seeds"], _fmt(r["holdout"]), _fmt(r["se"]),
              _fmt(r["val_best"]), "-" if not r.get("searched", True) else
              _fmt(r["to_random"], 2), round(r["trials"], 1), round(r["used"], 3)]
             for r in rows]
    return C.format_table(headers, table)


def startup_lines(runs: list[dict[str, Any]], first: int = 5) -> list[str]:
    """How good the start-up is: per group and searching strategy, the held-out accuracy of the
    running best after its first `first` trials (trial 0 and the start-up: the portfolio's
    entries, or random draws), mean +- se over seeds, ranked within the group; and which backbone
    the search chose for the final training, with that model's mean held-out accuracy."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        if "curve" in r and len(r["curve"]) >= first:
            groups.setdefault(_group_key(r), []).append(r)
    table = []
    for key, group in groups.items():
        scores = {}
        for label in dict.fromkeys(r["strategy"] for r in group):
            mine = [r for r in group if r["strategy"] == label]
            scores[label] = mean_se([best_holdout_at(r, r["curve"][first - 1][0]) for r in mine])
        ranked = sorted(scores, key=lambda k: -scores[k][0])
        for label in scores:
            mine = [r for r in group if r["strategy"] == label]
            chosen: dict[str, list[float]] = {}
            for r in mine:
                if r.get("chosen") and r.get("holdout") is not None:
                    chosen.setdefault(r["chosen"].get("backbone", "?"), []).append(r["holdout"])
            table.append([key[0], key[5], label, len(mine), _fmt(scores[label][0]),
                          _fmt(scores[label][1]), f"{ranked.index(label) + 1}/{len(ranked)}",
                          ", ".join(f"{b} x{len(v)} ({statistics.fmean(v):.3f})"
                                    for b, v in sorted(chosen.items()))])
    if not table:
        return []
    title = (f"start-up (held-out accuracy of the running best after the first {first} trials: "
             "trial 0 and the start-up; chosen = backbone trained at the end, runs and their mean "
             "held-out):")
    return [title,
            *C.format_table(["dataset", "budget_s", "strategy", "seeds", f"after_{first}", "se",
                             "rank", "chosen"], table)]


def chosen_lines(runs: list[dict[str, Any]]) -> list[str]:
    """What a choice can reach: per group, the final models of every searching strategy pooled
    by the backbone the search chose, mean +- se of their held-out accuracy, against the default
    trained for the whole budget. A search ends above the default only by choosing from a group
    above it; when no group is, no choice of backbone among those the searches found could
    have beaten the default at that budget (their other hyperparameters vary within a group)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in runs:
        if r.get("holdout") is not None:
            groups.setdefault(_group_key(r), []).append(r)
    table = []
    for key, group in groups.items():
        default = [r["holdout"] for r in group if r["strategy"] == "default"]
        pooled: dict[str, list[float]] = {}
        for r in group:
            if searched(r) and r.get("chosen"):
                pooled.setdefault(r["chosen"].get("backbone", "?"), []).append(r["holdout"])
        if not default or not pooled:
            continue
        d_mean, d_se = mean_se(default)
        for backbone, held in sorted(pooled.items(), key=lambda kv: -statistics.fmean(kv[1])):
            mean, se = mean_se(held)
            table.append([key[0], key[5], backbone, len(held), _fmt(mean), _fmt(se),
                          _fmt(d_mean), _fmt(d_se), f"{mean - d_mean:+.4f}"])
    if not table:
        return []
    title = ("final models by the backbone the searches chose (every searching strategy "
             "pooled) against the default trained for the whole budget:")
    return [title,
            *C.format_table(["dataset", "budget_s", "chosen", "runs", "holdout", "se", "default",
                             "se", "vs_default"], table)]


def verdict(rows: list[dict[str, Any]], label: str = "shipped", small: float = 8.0
            ) -> list[str]:
    """The issue's three goals for strategy `label`, per dataset and overall."""
    by: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        by.setdefault(r["key"], {})[r["strategy"]] = r
    need = {label, "random", "default"}
    complete = {k: v for k, v in by.items() if need <= set(v)}
    datasets = list(dict.fromkeys(k[0] for k in complete))
    out, main_ok, fast, small_ok = [], [], [], []
    for ds in datasets:
        keys = [k for k in complete if k[0] == ds]
        main = max(keys, key=lambda k: k[5])
        s, r, d = (complete[main][x] for x in (label, "random", "default"))
        ok = s["holdout"] >= r["holdout"] + r["se"] and s["holdout"] > d["holdout"]
        main_ok.append(ok)
        out.append(f"{ds} @ {main[5]:g} s: {label} {s['holdout']:.4f} vs random "
                   f"{r['holdout']:.4f} + SE {r['se']:.4f} and default {d['holdout']:.4f} -> "
                   f"{'met' if ok else 'NOT met'}")
        f = s["to_random"]
        fast.append(f is not None and f <= 0.5)
        out.append(f"{ds} @ {main[5]:g} s: {label} reaches random's final held-out at "
                   f"{'never' if f is None else f'{f:g}'} of its search -> "
                   f"{'<= 0.5' if fast[-1] else '> 0.5'}")
        smalls = [k for k in keys if complete[k][label].get("trials_budget") is not None
                  and abs(complete[k][label]["trials_budget"] - small) <= 2]
        if smalls:
            k = min(smalls, key=lambda k: abs(complete[k][label]["trials_budget"] - small))
            s, r, d = (complete[k][x] for x in (label, "random", "default"))
            ok = s["holdout"] > r["holdout"] and s["holdout"] > d["holdout"]
            small_ok.append(ok)
            out.append(f"{ds} @ ~{small:g} trials ({k[5]:g} s): {label} {s['holdout']:.4f} vs "
                       f"random {r['holdout']:.4f}, default {d['holdout']:.4f} -> "
                       f"{'ahead of both' if ok else 'NOT ahead of both'}")
        else:
            out.append(f"{ds} @ ~{small:g} trials: no runs at that budget yet")
    n = len(datasets)
    out.append(f"goal 1 ({label} >= random + 1 SE and > default on each dataset): "
               f"{sum(main_ok)}/{n} -> {'met' if n >= 3 and all(main_ok) else 'NOT met'}")
    out.append(f"goal 2 (to_random <= 0.5 on >= 2 of 3): {sum(fast)}/{n} -> "
               f"{'met' if sum(fast) >= 2 else 'NOT met'}")
    out.append(f"goal 3 (ahead of random and default at ~{small:g} trials on >= 2 of 3): "
               f"{sum(small_ok)}/{len(small_ok)} -> {'met' if sum(small_ok) >= 2 else 'NOT met'}")
    return out


def mixed_labels(runs: list[dict[str, Any]]) -> list[str]:
    """Warnings for labels whose runs in one group ran different spaces or specs."""
    seen: dict[tuple, set[str]] = {}
    for r in runs:
        if r.get("fingerprint") and r["strategy"] != "default":  # no search: study block unused
            seen.setdefault((*_group_key(r)[:1], r["budget"], r["strategy"]), set()).add(
                r["fingerprint"])
    return [f"# warning: {k[0]} @ {k[1]:g} s: strategy {k[2]} mixes runs of {len(v)} different "
            "spaces or specs; give each its own label" for k, v in seen.items() if len(v) > 1]


def print_summary(runs: list[dict[str, Any]], label: str) -> None:
    rows = summarise(runs)
    for line in mixed_labels(runs):
        print(line)
    print("summary (mean over seeds; holdout = held-out accuracy of the model each strategy ends "
          "with, the headline, +- se = standard error; val_best* = the search's best val_acc, "
          "a maximum of noisy scores, NOT the headline; to_random = fraction of the search part "
          "at which the running best's held-out reaches random's final; used/budget = charged "
          "compute):")
    print("\n".join(summary_lines(rows)))
    print()
    for lines in (startup_lines(runs), chosen_lines(runs)):
        if lines:
            print("\n".join(lines))
            print()
    print(f"verdict (issue 19, strategy {label}):")
    for line in verdict(rows, label):
        print(f"  {line}")
    sys.stdout.flush()


# --------------------------------------------------------------------------- command line


def _budgets(args, costs: Costs, datasets: list[Dataset], space) -> list[tuple[Dataset, float,
                                                                               float | None]]:
    """(dataset, budget seconds, trials it buys in the search part) for every run budget."""
    out = []
    for i, ds in enumerate(datasets):
        n_train, n_val, _ = split_sizes(space, ds, args.epochs, args.px)
        trial = costs.mean_trial(args.epochs, n_train, n_val)
        if args.budgets:
            out.append((ds, args.budgets[i], round(args.budgets[i] * (1 - args.refit) / trial,
                                                   1)))
        for n in args.trials_budget if not args.budgets else []:
            out.append((ds, round(n * trial / (1.0 - args.refit), 1), n))
    # the first --trials-budget on every dataset before the next: a cut-off run set still
    # covers each dataset at the main budget
    return sorted(out, key=lambda p: [] if p[2] is None or args.budgets else
                  [args.trials_budget.index(p[2])])


def _emit(line: str, results: Path | None) -> None:
    print(line, flush=True)
    if results is not None:
        with results.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()


def run(args) -> int:
    import torch

    from hpo.errors import ConfigError, VcrHpoError

    torch.set_num_threads(args.threads)
    text, source = space_text(args.space)
    strategies = [parse_strategy(t) for t in [*args.strategies, *args.strategy]]
    space = strategy_space(text, source, Strategy("shipped", "shipped"), 0)
    for s in strategies:  # every strategy's space checked before any compute
        if s.searches:
            strategy_space(text, source, s, 0)
        elif s.final is not None:
            if args.refit <= 0:
                raise ConfigError(f"--strategy {s.label}: final{{...}} trains for the --refit "
                                  f"share, got --refit {args.refit:g}. Give --refit > 0")
            final_params(s, space)
    datasets = [DATASETS[d] for d in args.datasets]
    if args.val:  # a larger (or smaller) validation split: its own group in the summary
        datasets = [dataclasses.replace(ds, val=v) for ds, v in zip(datasets, args.val)]
    costs = load_costs(space, args.space, args.px, None if args.quick else Path(args.costs),
                       args.quick)
    plan = _budgets(args, costs, datasets, space)
    results = Path(args.results) if args.results else None
    header = [f"# search quality v{FORMAT}: held-out accuracy at equal compute",
              f"$ python {' '.join([os.path.relpath(sys.argv[0]), *sys.argv[1:]])}",
              f"# {C.conditions()}; commit {_commit()}",
              (f"# space {args.space}; {args.epochs} epochs per trial at {args.px} px; budget = "
               f"modelled CPU s of 1 torch thread (cost table {costs.note}); {args.threads} "
               f"thread(s), {args.jobs} process(es); seeds {args.seeds}; refit {args.refit:g}")]
    for ds in datasets:
        n_train, n_val, _ = split_sizes(space, ds, args.epochs, args.px)
        d = costs.run(space.config_for(_baseline(space), {}).backbone,
                      space.config_for(_baseline(space), {}).batch_size, args.epochs,
                      n_train, n_val)
        header.append(f"# dataset {ds.name}: {ds.kind}, {n_train} train / {n_val} val images, "
                      f"{ds.holdout} held out; one trial costs {costs.mean_trial(args.epochs, n_train, n_val):.1f} "
                      f"CPU s on average over the table ({d:.1f} s the default config)")
    for ds, budget, n in plan:
        header.append(f"# budget {ds.name}: {budget:g} s = {n:g} mean trials in the search part")
    for s in strategies:
        shown = strategy_space(text, source, s, 0) if s.searches else space
        header.append(f"# strategy {s.label}: {describe(s, shown)}")
    total = sum(b for _, b, _ in plan) * len(args.seeds) * len(strategies)
    probe = _probe_speed(space, costs, args.px)
    header.append(f"# estimate: {len(plan) * len(args.seeds) * len(strategies)} runs, "
                  f"{total:.0f} modelled CPU s; now 1 CPU s of the table takes {probe[0]:.2f} CPU s "
                  f"and {probe[1]:.2f} wall s -> about {total * probe[1] / args.jobs / 60:.0f} "
                  f"wall min with {args.jobs} process(es) (+ held-out scoring, off the budget)")
    for line in header:
        _emit(line, results)
    if args.estimate:
        return 0
    t0 = time.perf_counter()
    deadline = math.inf if args.max_wall_min is None else t0 + 60 * args.max_wall_min
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-search-quality-") as tmp:
        jobs = [Job(s, ds, seed, budget, n, args.refit, args.epochs, args.px, tmp)
                for ds, budget, n in plan for seed in args.seeds for s in strategies]
        done = _done_runs(results) if args.skip_done and results is not None else set()
        todo = [j for j in jobs if _job_key(j, args.space) not in done]
        if len(todo) < len(jobs):
            _emit(f"# skipped {len(jobs) - len(todo)} run(s) already in {results} "
                  "(--skip-done)", results)
        init = (args.threads, args.space, costs, datasets, args.epochs, args.px)
        try:
            left = _run_all(todo, init, args.jobs, deadline, lambda r: runs.append(
                _report(r, results)))
        except VcrHpoError as exc:
            print(f"search_quality: a run failed: {exc}", file=sys.stderr)
            return 1
        if left:
            _emit(f"# not started (--max-wall-min {args.max_wall_min:g}): " + ", ".join(
                f"{j.dataset.name}/{j.strategy.label}/seed {j.seed}/{j.budget:g} s"
                for j in left) + "; run the same command with --skip-done to add them", results)
    print()
    print_summary(runs, args.verdict_strategy)
    print(f"# total wall {time.perf_counter() - t0:.0f} s, {C.load_text()}")
    return 0


def _run_all(jobs: list[Job], init: tuple, n: int, deadline: float, done) -> list[Job]:
    """Run `jobs` in order on `n` processes, none started after `deadline`; returns those left."""
    todo = list(jobs)
    if n <= 1:
        _init(*init)
        while todo and time.perf_counter() < deadline:
            done(run_one(todo.pop(0)))
        return todo
    with ProcessPoolExecutor(n, initializer=_init, initargs=init) as pool:
        running = set()
        while todo or running:
            while todo and len(running) < n and time.perf_counter() < deadline:
                running.add(pool.submit(run_one, todo.pop(0)))
            if not running:
                break
            finished = next(as_completed(running))
            running.discard(finished)
            done(finished.result())
    return todo


def _job_key(job: Job, space: str) -> tuple:
    rec = {"dataset": job.dataset.name, "data": job.dataset.spec(), "epochs": job.epochs,
           "px": job.px, "space": space, "budget": round(job.budget, 2), "refit": job.refit,
           "strategy": job.strategy.label, "seed": job.seed}
    return _run_key(rec)


def _done_runs(results: Path) -> set[tuple]:
    if not results.is_file():
        return set()
    return {_run_key(r) for r in read_runs([str(results)])}


def _probe_speed(space, costs: Costs, px: int) -> tuple[float, float]:
    """(CPU s, wall s) one modelled CPU second takes now: one epoch of the default config."""
    from hpo.train import build_state, train_epoch

    ov = {**C.tiny_overrides(epochs=1, image_size=px, train=64, val=32), "seed": 0}
    cfg = space.config_for(_baseline(space), ov)
    s = build_state(cfg)
    c, w = time.process_time(), time.perf_counter()
    train_epoch(s)
    c, w = time.process_time() - c, time.perf_counter() - w
    model = costs.epoch(cfg.backbone, cfg.batch_size, 64, 32)
    return c / model, w / model


def _report(rec: dict[str, Any], results: Path | None) -> dict[str, Any]:
    print(f"# {rec['dataset']} {rec['strategy']} seed {rec['seed']} budget {rec['budget']:g}: "
          f"holdout {rec.get('holdout')}, val_best {rec.get('val_best')}, {rec['trials']} "
          f"trials, used {rec['used']:g}/{rec['budget']:g} s, {rec['cpu_s']} CPU s measured, "
          f"{rec['wall_s']} wall s", file=sys.stderr, flush=True)
    _emit(RUN_PREFIX + json.dumps(rec, separators=(",", ":")), results)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="hyperparameters.yaml",
                    help="a file in search_spaces/ or a path")
    ap.add_argument("--datasets", nargs="+", default=["demo", "hard", "digits"],
                    choices=sorted(DATASETS))
    ap.add_argument("--trials-budget", type=float, nargs="+", default=[12.0],
                    help="budgets as mean trials bought by the search part, per dataset from the "
                         "cost table (default 12; add 8 for the issue's small budget)")
    ap.add_argument("--budgets", type=float, nargs="+",
                    help="budgets in modelled CPU s, one per --datasets entry (instead of "
                         "--trials-budget)")
    ap.add_argument("--val", type=int, nargs="+",
                    help="validation images the search scores on, one per --datasets entry "
                         "(instead of each dataset's own; a run line keeps it in `data`)")
    ap.add_argument("--strategies", nargs="+", default=["shipped", "random", "default"],
                    help="shipped, random, default, LABEL=final{PARAM: VALUE, ...} or "
                         "LABEL=SAMPLER|PRUNER[|STUDY]")
    ap.add_argument("--strategy", action="append", default=[],
                    help="one more LABEL=final{...} or LABEL=SAMPLER|PRUNER[|STUDY] "
                         "(repeatable)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--refit", type=float, default=0.5,
                    help="budget fraction kept to train each search's best config once")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per trial (the demo space's)")
    ap.add_argument("--px", type=int, default=32, help="image size")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--results", metavar="FILE", help="append the header and per-run lines here")
    ap.add_argument("--costs", default=str(COSTS), metavar="FILE",
                    help="the kept cost table (measured and added to when missing)")
    ap.add_argument("--estimate", action="store_true", help="print the plan and exit")
    ap.add_argument("--max-wall-min", type=float, metavar="M",
                    help="start no run after M wall minutes (the rest is listed, not run)")
    ap.add_argument("--skip-done", action="store_true",
                    help="skip runs whose line is already in --results (continue a session)")
    ap.add_argument("--summarise", nargs="+", metavar="FILE",
                    help="no runs: the tables and verdict from these files' per-run lines")
    ap.add_argument("--verdict-strategy", default="shipped", metavar="LABEL",
                    help="the strategy the verdict judges (default shipped)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke size: quick + digits-quick, 1 epoch, 3 trials, 2 seeds")
    args = ap.parse_args(argv)
    if args.summarise:
        runs = read_runs(args.summarise)
        if not runs:
            ap.error(f"--summarise: files with '{RUN_PREFIX}{{json}}' lines of format {FORMAT}, "
                     f"got none in {args.summarise}")
        print_summary(runs, args.verdict_strategy)
        return 0
    if args.quick:
        args.datasets, args.seeds, args.epochs = ["quick", "digits-quick"], args.seeds[:2], 1
        args.trials_budget = [3.0] if args.trials_budget == [12.0] else args.trials_budget
    if args.budgets and len(args.budgets) != len(args.datasets):
        ap.error(f"--budgets: one per --datasets entry ({len(args.datasets)}), got "
                 f"{len(args.budgets)}")
    if args.val and (len(args.val) != len(args.datasets) or min(args.val) < 1):
        ap.error(f"--val: one positive count per --datasets entry ({len(args.datasets)}), got "
                 f"{args.val}")
    if not 0.0 <= args.refit < 1.0:
        ap.error(f"--refit: a fraction in [0, 1), got {args.refit}")
    if min(args.seeds) < 0:
        ap.error(f"--seeds: non-negative, got {args.seeds}")
    if min(args.trials_budget) <= 0:
        ap.error(f"--trials-budget: positive, got {args.trials_budget}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hpo.errors import VcrHpoError

    try:
        return run(args)
    except VcrHpoError as exc:
        print(str(exc).strip().splitlines()[-1], file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
