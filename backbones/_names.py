"""Name tables: the names a registry holds, read from its modules' source without importing them.

A builder registers itself where it is defined (`@register_backbone(("resnet18", ...), family=...)`,
`@LOSSES.register("focal")`), as timm does; validating a config needs only the names, and those
modules import torch. A `NameTable` reads the names from the registration calls in the modules'
source (`ast`, no import), and counts names added to the live registry at run time (a user's own
backbone or loss) once that registry's module is imported.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, UnknownNameError
from .registry import Registry

__all__ = ["NameTable", "Registration", "scan_registrations"]


@dataclass(frozen=True)
class Registration:
    """One registration call at a module's top level: the names and its literal keywords."""

    module: str
    names: tuple[str, ...]
    keywords: Mapping[str, object]


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _constants(tree: ast.Module) -> dict[str, object]:
    """Module-level `NAME = <literal>` assignments."""
    found: dict[str, object] = {}
    for stmt in tree.body:
        target, value = None, None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        if isinstance(target, ast.Name) and value is not None:
            try:
                found[target.id] = ast.literal_eval(value)
            except ValueError:
                pass
    return found


def _top_level_calls(tree: ast.Module) -> Iterable[ast.Call]:
    """Calls in decorators and top-level expressions; not inside function bodies."""
    for stmt in tree.body:
        if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            roots: list[ast.expr] = list(stmt.decorator_list)
        elif isinstance(stmt, (ast.Expr, ast.Assign, ast.AnnAssign)) and stmt.value is not None:
            roots = [stmt.value]
        else:
            continue
        for root in roots:
            yield from (n for n in ast.walk(root) if isinstance(n, ast.Call))


@functools.cache
def _source_path(module: str) -> str | None:
    """The file of `module`, found without importing its parent packages (`find_spec` of a
    submodule imports them: `hpo.train`'s would load torch): the top package's spec, then the
    folders below it."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or not rest:
        return spec.origin if spec is not None else None
    loaded = sys.modules.get(top)  # its __path__ as it is now (a plug-in folder may be added)
    for root in getattr(loaded, "__path__", None) or spec.submodule_search_locations or ():
        base = Path(root).joinpath(*rest)
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return str(path)
    return None


def scan_registrations(module: str, call: str) -> tuple[Registration, ...] | None:
    """The `call(names, **keywords)` registrations at `module`'s top level, read from its source.

    `names` is a string or a tuple of strings, written out or as a module-level constant; the
    keywords are kept when they are literals. None when the module has no source file to read
    (the caller imports it instead). Cached: a module's source is read once.

    Raises:
        ConfigError: a registration whose names are not literal strings.
    """
    origin = _source_path(module)
    if origin is None or not origin.endswith(".py") or not Path(origin).is_file():
        return None
    source = Path(origin).read_text(encoding="utf-8")
    if call.rsplit(".", 1)[-1] + "(" not in source:
        return ()
    tree = ast.parse(source, origin)
    constants = _constants(tree)
    found = []
    for node in _top_level_calls(tree):
        if _dotted(node.func) != call or not node.args:
            continue
        arg = node.args[0]
        try:
            value = constants[arg.id] if isinstance(arg, ast.Name) else ast.literal_eval(arg)
        except (KeyError, ValueError):
            value = None
        names = (value,) if isinstance(value, str) else value
        if not (isinstance(names, (tuple, list)) and names and all(isinstance(n, str) for n in names)):
            raise ConfigError(
                f"{origin}:{node.lineno}: {call}: names must be literal strings (or a module-level "
                f"constant of them), got {ast.unparse(arg)}. Write them out, e.g. (\"net_s\", \"net_m\")"
            )
        keywords = {}
        for kw in node.keywords:
            if isinstance(kw.value, ast.Name) and kw.value.id in constants:
                keywords[str(kw.arg)] = constants[kw.value.id]
            elif kw.arg is not None:
                try:
                    keywords[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    pass
        found.append(Registration(module, tuple(names), keywords))
    return tuple(found)


class NameTable(Registry[str]):
    """The built-in names of a registry, plus whatever was registered at run time.

    Args:
        kind: what the names are, used in messages ("backbone", "loss", ...).
        names: built-in names given here (a test's table); usually none.
        scan: the modules whose registration calls hold the built-in names (read, not imported),
            or a function returning them (called on first use).
        call: the registration call in those modules, e.g. "register_backbone", "LOSSES.register".
        live: "module:attribute" of the registry that holds the builders.
        error: what `get` raises for an unknown name (see `Registry`).
    """

    def __init__(self, kind: str, names: Iterable[str] = (), *, live: str,
                 scan: Iterable[str] | Callable[[], Iterable[str]] = (), call: str = "",
                 error: type[LookupError] = UnknownNameError) -> None:
        super().__init__(kind, error=error)
        for name in names:
            self.register(name, name)
        self._live = live
        self._scan, self._call = scan, call
        self._scanned: tuple[Registration, ...] | None = None

    def registrations(self) -> tuple[Registration, ...]:
        """The registration calls found in the scanned modules' source (read once).

        A module without source (bytecode only) is imported instead: its builders then register
        in the live registry, which `names()` reads.
        """
        if self._scanned is None:
            modules = self._scan() if callable(self._scan) else self._scan
            found: list[Registration] = []
            for module in modules:
                regs = scan_registrations(module, self._call)
                if regs is None:
                    importlib.import_module(module)
                else:
                    found += regs
            self._scanned = tuple(found)
        return self._scanned

    def _builtin(self) -> frozenset[str]:
        return frozenset({*self._entries, *(n for r in self.registrations() for n in r.names)})

    @property
    def builtin(self) -> list[str]:
        """The built-in names (given, and read from source), without run-time additions."""
        return sorted(self._builtin())

    def live_registry(self) -> Registry | None:
        """The registry that holds the builders, when its module is already imported."""
        module, _, attr = self._live.partition(":")
        if module not in sys.modules:
            return None
        return getattr(importlib.import_module(module), attr)

    def names(self) -> list[str]:
        live = self.live_registry()
        return sorted({*self._builtin(), *(live.names() if live is not None else ())})

    def get(self, name: str) -> str:
        """Return `name` when it is known.

        Raises:
            UnknownNameError: not a known name; lists the options and the closest match.
        """
        if name not in self:
            raise self.error(self.unknown_message(name))
        return name

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name in self._builtin():
            return True
        live = self.live_registry()
        return live is not None and name in live

    def __len__(self) -> int:
        return len(self.names())
