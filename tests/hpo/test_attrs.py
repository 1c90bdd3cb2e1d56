"""User-attr keys are named constants in hpo/attrs.py: no module writes or reads a bare key."""

from __future__ import annotations

import ast
from pathlib import Path

import hpo.attrs

ROOT = Path(__file__).resolve().parents[2]

#: Modules other work is changing now; their keys move to hpo.attrs when it lands.
PENDING = {"hpo/trial/objective.py", "hpo/run/console.py", "hpo/report/__init__.py",
           "hpo/cli/_inspect.py"}


def _is_user_attrs(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "user_attrs"


def bare_keys(source: str) -> list[tuple[int, str]]:
    """(line, key) of each string literal used as a user-attr key."""
    found = []
    for node in ast.walk(ast.parse(source)):
        keys: list[ast.expr] = []
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, args = node.func.attr, node.args
            if name == "set_user_attr" and args:
                keys.append(args[0])
            elif name == "set_trial_user_attr" and len(args) > 1:
                keys.append(args[1])
            elif name == "get" and args and _is_user_attrs(node.func.value):
                keys.append(args[0])
        if isinstance(node, ast.Call):
            keys += [k for kw in node.keywords if kw.arg == "user_attrs"
                     and isinstance(kw.value, ast.Dict) for k in kw.value.keys if k is not None]
        elif isinstance(node, ast.Subscript) and _is_user_attrs(node.value):
            keys.append(node.slice)
        elif isinstance(node, ast.Compare) and any(_is_user_attrs(c) for c in node.comparators):
            keys.append(node.left)
        found += [(k.lineno, k.value) for k in keys
                  if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return found


def test_bare_keys_are_found():
    src = ('t.set_user_attr("a", 1)\ns.set_trial_user_attr(i, "b", 2)\nt.user_attrs.get("c")\n'
           't.user_attrs["d"]\n"e" in t.user_attrs\nq(user_attrs={"f": 1})\nt.set_user_attr(KEY, 1)')
    assert sorted(k for _, k in bare_keys(src)) == list("abcdef")


def test_no_module_uses_a_bare_user_attr_key():
    faults = []
    for path in sorted([*(ROOT / "hpo").rglob("*.py"), *(ROOT / "bench").rglob("*.py")]):
        rel = path.relative_to(ROOT).as_posix()
        if rel in PENDING:
            continue
        faults += [f"{rel}:{line}: {key!r}: use the constant in hpo/attrs.py"
                   for line, key in bare_keys(path.read_text(encoding="utf-8"))]
    assert not faults, "\n".join(faults)


def test_each_key_has_one_name():
    keys = {k: v for k, v in vars(hpo.attrs).items() if k.isupper()}
    assert len(set(keys.values())) == len(keys)
