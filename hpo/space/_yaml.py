"""YAML text -> plain data with each value's line number, and the error collector.

Number rule: a *plain* YAML scalar that YAML 1.2 reads as a number is a number here, so
`1e-5` and `1E+3` are floats (PyYAML alone, following YAML 1.1, reads them as strings). A
*quoted* scalar is always a string: `"1e-5"` where a number belongs is an error that says to
unquote it. Editors that check files against `hpo/schema.json` use YAML 1.2 and agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from backbones import did_you_mean

from .._values import show
from ..errors import SearchSpaceError

_MAX_NODES = 100_000
#: "not given" (None is a value in YAML)
_MISSING = object()


def _path_text(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


class _Errors:
    """Collects `file: yaml.path (line N): rule, got value. fix` lines."""

    def __init__(self, source: str, lines: Mapping[tuple, int]) -> None:
        self.source = source
        self.lines = lines
        self.items: list[tuple[int, int, str]] = []

    def add(self, path: Sequence[Any], rule: str, got: Any = _MISSING, fix: str = "") -> None:
        text = rule + ("" if got is _MISSING else f", got {show(got)}")
        if fix:
            text += f". {fix.rstrip('.')}"
        self.add_text(path, text)

    def add_text(self, path: Sequence[Any], text: str) -> None:
        line = self.line(path)
        where = f"{self.source}: {_path_text(path)}" + (f" (line {line})" if line else "")
        self.items.append((line or 0, len(self.items), f"{where}: {text}"))

    def line(self, path: Sequence[Any]) -> int | None:
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return 1  # the document itself starts on line 1
            path = path[:-1]

    def __bool__(self) -> bool:
        return bool(self.items)

    def error(self) -> SearchSpaceError:
        return SearchSpaceError([text for _, _, text in sorted(self.items)])


# --------------------------------------------------------------------------- YAML with lines


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 exponent floats (1e-5, 2E+3) as numbers."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _read_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int], _Errors]:
    """Parse YAML into plain data plus a map from each value's path to its 1-based line."""
    lines: dict[tuple, int] = {}
    errs = _Errors(source, lines)
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters up front
        errs.items.append((0, 0, f"{source}: not valid YAML, got {_yaml_problem(exc)}. Fix the YAML text"))
        return None, lines, errs
    budget = [_MAX_NODES]

    def convert(node: yaml.Node, path: tuple, stack: frozenset) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooBig()
        lines.setdefault(path, node.start_mark.line + 1)
        if id(node) in stack:
            errs.add(path, "a YAML alias refers to itself", fix="Remove the recursive alias")
            return None
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
            errs.add(path, "unsupported YAML tag", node.tag, "Remove the tag")
            return None
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)  # resolves `<<: *anchor` merge keys
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    errs.add(path, "mapping keys must be plain names", fix="Write name: value")
                    continue
                key = _scalar(key_node, path)
                if not isinstance(key, (str, int, float, bool)) and key is not None:
                    key = str(key)
                lines[path + (key,)] = key_node.start_mark.line + 1
                if key in out:
                    errs.add(path + (key,), "duplicate key", key, "Keep one of them")
                out[key] = convert(value_node, path + (key,), stack | {id(node)})
            return out
        if isinstance(node, yaml.SequenceNode):
            return [convert(v, path + (i,), stack | {id(node)}) for i, v in enumerate(node.value)]
        return _scalar(node, path)

    def _scalar(node: yaml.Node, path: tuple) -> Any:
        try:
            return loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError) as exc:
            errs.add(path, f"cannot read this value ({exc})", node.value, "Fix the value")
            return None

    try:
        node = loader.get_single_node()
        data = None if node is None else convert(node, (), frozenset())
    except _TooBig:
        errs.add((), f"document too large (over {_MAX_NODES} values)", fix="Shorten it")
        data = None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "syntax error"
        where = f"{source}: (line {line})" if line else source
        errs.items.append((line or 0, 0, f"{where}: not valid YAML, got {problem}. Fix the YAML syntax"))
        data = None
    except yaml.YAMLError as exc:
        errs.items.append((0, 0, f"{source}: not valid YAML, got {_yaml_problem(exc)}. Fix the YAML syntax"))
        data = None
    except RecursionError:
        errs.add((), "nested too deeply", fix="Flatten the document")
        data = None
    finally:
        loader.dispose()
    return data, lines, errs


def _yaml_problem(exc: Exception) -> str:
    return " ".join(str(exc).split())[:120]


_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _TooBig(Exception):
    pass


# --------------------------------------------------------------------------- value checks


def _looks_numeric(text: str) -> bool:
    try:
        float(text.replace("_", ""))
    except ValueError:
        return False
    return True


def _number(errs: _Errors, path: tuple, value: Any, *, integer: bool = False) -> Any:
    """A finite number (an int when `integer`), or _MISSING after recording why not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str) and _looks_numeric(value):
            errs.add(path, "must be a number, not a quoted string", value,
                     f"Write it unquoted: {value.strip()}")
        else:
            errs.add(path, "must be a whole number" if integer else "must be a number", value,
                     "Write a number such as 3" if integer else "Write a number such as 0.001")
        return _MISSING
    if isinstance(value, float) and not math.isfinite(value):
        errs.add(path, "must be finite", value, "Write a finite number")
        return _MISSING
    if integer and not float(value).is_integer():
        errs.add(path, "must be a whole number for an int parameter", value,
                 f"Write {math.floor(value)} or {math.ceil(value)}, or use type: float")
        return _MISSING
    return int(value) if integer else value


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _unknown_key(errs: _Errors, path: tuple, key: Any, allowed: Sequence[str], what: str) -> None:
    errs.add(path, f"unknown key in {what}", key,
             f"{did_you_mean(key, allowed)}Allowed: {', '.join(allowed)}")


def _did_you_mean(value: Any, options: Sequence[str]) -> str:
    """The closest option, if any, then every option: the fix part of an unknown-name message."""
    return f"{did_you_mean(value, options)}Options: {', '.join(options)}"

