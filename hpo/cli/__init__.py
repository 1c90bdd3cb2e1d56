"""The `vcr-hpo` command line: parses arguments, builds objects, calls the library.

Each subcommand is a function registered with `@command(...)` in a private module by command
group (`_catalog`, `_run`, `_inspect`, `_train`, `_serve`); its `args` callback adds its options.
Usage and configuration errors print one line on stderr and exit 2; runtime errors exit 1;
`--debug` shows the traceback. The command modules import torch, Optuna and the library inside
the commands, so importing this package (and `vcr-hpo status`) stays light.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..errors import INPUT_ERRORS, RAISED_ERRORS
from . import _catalog, _inspect, _run, _serve, _train  # noqa: F401 - importing registers them
from ._registry import COMMANDS, Parser, UsageError, command

__all__ = ["command", "main"]

# The order `vcr-hpo --help` lists the commands in; one registered elsewhere comes last.
_ORDER = ("backbones", "validate", "run", "status", "best", "train", "export", "predict",
          "dashboard", "storage-proxy", "report", "spaces")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="vcr-hpo", description="Hyperparameter search for vehicle-colour CNNs.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    rank = {name: i for i, name in enumerate(_ORDER)}
    for cmd in sorted(COMMANDS.values(), key=lambda c: rank.get(c.name, len(rank))):
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
        code = COMMANDS[ns.command].run(ns)
        sys.stdout.flush()  # a closed pipe fails here, inside the handlers below, not at exit
        return code
    except UsageError as exc:
        if debug:
            raise
        print(str(exc), file=sys.stderr)
        return 2
    except INPUT_ERRORS as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RAISED_ERRORS as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `vcr-hpo status | head`: the reader left; no traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # flush at exit can't fail
        return 141
