"""What vcr-hpo ships and what a space asks for: `backbones`, `validate`, `spaces`."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ._common import print_table
from ._registry import command


@command("backbones", "list registered backbones: family, channels and strides of c2..c5, parameters")
def _cmd_backbones(ns: argparse.Namespace) -> int:
    import torch

    from backbones import BACKBONES, create_backbone

    rows = []
    for name in BACKBONES.names():
        with torch.device("meta"):  # shapes and counts only: no weight init, no memory
            b = create_backbone(name)
        ch, st = b.get_feature_channels(), b.get_feature_strides()
        rows.append([
            name, BACKBONES.get(name).family,
            "/".join(str(ch[k]) for k in ch), "/".join(str(st[k]) for k in st),
            f"{b.num_params() / 1e6:.2f}M",
        ])
    print_table(["name", "family", "channels c2/c3/c4/c5", "strides", "params"], rows)
    return 0


def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, metavar="FILE",
                   help="search-space YAML (a bare name is also looked up in search_spaces/)")


@command("validate", "check a search space and print its parameters, or every error", args=_validate_args)
def _cmd_validate(ns: argparse.Namespace) -> int:
    import json

    from ..run.api import grid_note
    from ..run.preflight import preflight
    from ..space import SearchSpaceError, load_search_space

    try:
        space = load_search_space(ns.space)
    except SearchSpaceError as exc:
        if getattr(ns, "debug", False):
            raise
        for line in exc.errors:
            print(line, file=sys.stderr)
        if len(exc.errors) > 1:  # a single error stays a single line
            print(f"{len(exc.errors)} errors; nothing was written to any study", file=sys.stderr)
        return 2
    preflight(space.config_for(space.baseline()), space=space, where=str(space.source))  # this machine
    st = space.study
    objectives = ", ".join(f"{d} {m}" for d, m in zip(st.directions, st.metrics))
    print(f"space:    {space.source}")
    print(f"study:    {st.name}: {objectives}; n_trials {st.n_trials if st.n_trials else 'unlimited'}; "
          f"timeout {f'{st.timeout:g} s' if st.timeout else 'none'}")
    print(f"sampler:  {st.sampler.describe()}")
    steps = {"seconds": f"; steps: seconds of training, a report every {st.report_seconds} s "
                        "(fidelity: seconds)",
             "compute": "; steps: epochs of the default's compute (fidelity: compute)"}
    print(f"pruner:   {st.pruner.describe() if st.pruner else 'none'}"
          f"{steps.get(st.fidelity, '') if st.pruner else ''}")
    if st.trial_length != "epochs":
        print(f"trials:   each trains the compute of the default's epochs (trial_length: "
              f"{st.trial_length})")
    if st.portfolio or st.neighbours:  # what runs right after trial 0
        from ..run import portfolio as start

        if st.portfolio:
            print(f"start-up: {start.describe(start.plan_portfolio(space), st.portfolio)}")
        if st.neighbours:
            print("start-up: " + start.describe_neighbours(start.plan_neighbours(space),
                                                           st.neighbours))
    if st.choose != "best":
        print("to train: the cheapest trial within one paired standard error of the best "
              f"(choose: {st.choose})")

    def scalars(values: dict) -> str:  # YAML spelling: true/false/null, as in the file
        return ", ".join(f"{k}={json.dumps(v) if v is None or isinstance(v, bool) else v}"
                         for k, v in values.items())

    print(f"fixed:    {scalars(dict(space.fixed)) or '-'}")
    print(f"baseline: {scalars(space.default_params() or {}) or 'none (no defaults)'}")
    print(f"fingerprint: {space.fingerprint[:16]}")
    if note := grid_note(space, st.n_trials):
        print(note)
    print()
    print_table(["name", "type", "range / choices", "log/step", "condition"], space.describe())
    return 0


def _spaces_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--copy", metavar="NAME", help="copy the shipped space NAME as a starting point")
    p.add_argument("dest", nargs="?", metavar="DEST",
                   help="with --copy: the new file or a folder (default: NAME here); never overwrites")


@command("spaces", "list the search spaces shipped with vcr-hpo, or copy one (--copy NAME [DEST])",
         args=_spaces_args)
def _cmd_spaces(ns: argparse.Namespace) -> int:
    from ..space import copy_shipped_space, shipped_spaces

    if ns.copy is None:
        if ns.dest is not None:
            raise ConfigError(f"DEST: only with --copy NAME, got {ns.dest!r}. "
                              f"Write vcr-hpo spaces --copy NAME {ns.dest}")
        print_table(["name", "description"], [(s.name, s.description) for s in shipped_spaces()])
        print("\nuse one by name (vcr-hpo run --space NAME), or copy it: vcr-hpo spaces --copy NAME")
        return 0
    path = copy_shipped_space(ns.copy, ns.dest)
    print(f"{path}: copied from the shipped {ns.copy}; edit it, then vcr-hpo validate --space {path}")
    return 0
