"""The `vcr-hpo` command line: parses arguments, builds objects, calls the library.

Each subcommand is a function registered with `@command(...)`; its `args` callback adds its
options. Usage and configuration errors print one line on stderr and exit 2; runtime errors
exit 1; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from backbones.errors import ConfigError, UnknownNameError, VcrHpoError

__all__ = ["main", "command"]


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


_COMMANDS: dict[str, _Command] = {}


def command(name: str, help: str, args: Callable[[argparse.ArgumentParser], None] = lambda p: None):
    """Register `fn(ns) -> exit code` as the subcommand `name`."""

    def deco(fn: Callable[[argparse.Namespace], int]):
        if name in _COMMANDS:
            raise ValueError(f"command {name!r} is already registered")
        _COMMANDS[name] = _Command(name, help, args, fn)
        return fn

    return deco


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str):
        raise _UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vcr-hpo", description="Hyperparameter search for vehicle-colour CNNs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd in _COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
        cmd.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vcr-hpo` console script. Returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        ns = build_parser().parse_args(argv)
        if not ns.command:
            build_parser().print_help()
            return 2
        return _COMMANDS[ns.command].run(ns)
    except _UsageError as exc:
        if debug:
            raise
        print(str(exc), file=sys.stderr)
        return 2
    except (ConfigError, UnknownNameError) as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except VcrHpoError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


# --------------------------------------------------------------------------- backbones


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
    _print_table(["name", "family", "channels c2/c3/c4/c5", "strides", "params"], rows)
    return 0


# --------------------------------------------------------------------------- validate


def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--space", required=True, metavar="FILE",
                   help="search-space YAML (a bare name is also looked up in search_spaces/)")


@command("validate", "check a search space and print its parameters, or every error", args=_validate_args)
def _cmd_validate(ns: argparse.Namespace) -> int:
    from .space import SearchSpaceError, load_search_space

    try:
        space = load_search_space(ns.space)
    except SearchSpaceError as exc:
        if getattr(ns, "debug", False):
            raise
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"{len(exc.errors)} error(s); nothing was written to any study", file=sys.stderr)
        return 2
    st = space.study
    objectives = ", ".join(f"{d} {m}" for d, m in zip(st.directions, st.metrics))
    print(f"space:    {space.source}")
    print(f"study:    {st.name}: {objectives}; n_trials {st.n_trials if st.n_trials else 'unlimited'}; "
          f"timeout {f'{st.timeout:g} s' if st.timeout else 'none'}")
    print(f"sampler:  {st.sampler.describe()}")
    print(f"pruner:   {st.pruner.describe() if st.pruner else 'none'}")
    fixed = ", ".join(f"{k}={v}" for k, v in space.fixed.items())
    print(f"fixed:    {fixed or '-'}")
    print(f"baseline: {space.default_params() or 'none (no defaults)'}")
    print(f"fingerprint: {space.fingerprint[:16]}")
    print()
    _print_table(["name", "type", "range / choices", "log/step", "condition"], space.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
