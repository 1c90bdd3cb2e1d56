"""TrainConfig's name checks: torch-free name tables that equal the registries, no import cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

import backbones
import hpo
from backbones import BACKBONE_NAMES, BACKBONES, NameTable, Registry
from hpo._choices import FUSION_NAMES, LOSS_NAMES, OPTIMIZER_NAMES, SCHEDULER_NAMES
from hpo.config import FIELD_REGISTRIES, TrainConfig, check_field
from hpo.errors import UnknownNameError
from hpo.train.heads import HEADS
from hpo.train.losses import LOSSES
from hpo.train.optim import OPTIMIZERS, SCHEDULERS

HPO = Path(hpo.__file__).parent


@pytest.mark.parametrize("table, registry", [
    (BACKBONE_NAMES, BACKBONES),
    (FUSION_NAMES, HEADS),
    (LOSS_NAMES, LOSSES),
    (OPTIMIZER_NAMES, OPTIMIZERS),
    (SCHEDULER_NAMES, SCHEDULERS),
], ids=lambda x: getattr(x, "kind", None))
def test_name_table_lists_exactly_what_its_registry_registers(table, registry):
    assert table.builtin == registry.names()
    assert table.kind == registry.kind


def test_config_validates_names_through_the_tables():
    assert set(FIELD_REGISTRIES) == {"backbone", "fusion", "loss_fn", "optimizer", "scheduler"}
    assert TrainConfig(loss_fn="focal", fusion="msff", backbone="resnet10t").fusion == "msff"
    with pytest.raises(UnknownNameError, match=r"^x: loss_fn: unknown loss 'focla'\. "
                                               r"Did you mean 'focal'\? Options: cross_entropy"):
        check_field("loss_fn", "focla", where="x")


def test_a_name_registered_at_run_time_counts_once_its_module_is_loaded(monkeypatch):
    module = types.ModuleType("vcr_test_plugins")
    module.REG = Registry("loss")
    table = NameTable("loss", ("ce",), live="vcr_test_plugins:REG")
    module.REG.register("mine", object())
    assert "mine" not in table and table.names() == ["ce"]  # module not imported: built-ins only
    monkeypatch.setitem(sys.modules, "vcr_test_plugins", module)
    assert "mine" in table and table.names() == ["ce", "mine"] and table.get("mine") == "mine"
    with pytest.raises(backbones.UnknownNameError, match="unknown loss 'mien'. Did you mean 'mine'"):
        table.get("mien")  # a plain NameTable raises backbones' error; hpo's pass their own


def _imports(path: Path) -> set[str]:
    """Every module a file imports, TYPE_CHECKING blocks included (relative names resolved)."""
    package = ["hpo", *path.relative_to(HPO).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            found.add(".".join([*base, *([node.module] if node.module else [])]))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_config_and_the_registries_do_not_import_each_other():
    registries = {"hpo.train.heads", "hpo.train.losses", "hpo.train.optim"}
    assert not _imports(HPO / "config.py") & (registries | {"hpo.train", "torch"})
    for name in ("heads.py", "losses.py", "optim.py"):
        assert "hpo.config" not in _imports(HPO / "train" / name), name


def test_importing_config_loads_no_torch():
    code = ("import sys, hpo.config; from hpo.config import check_field; "
            "check_field('backbone', 'resnet50'); check_field('loss_fn', 'focal'); "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision', 'hpo.train.losses') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
