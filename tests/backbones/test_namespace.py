"""The lazy package namespaces: every public name resolves, and the light modules stay light."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC = [(pkg, name) for pkg in ("backbones", "hpo")
          for name in importlib.import_module(pkg).__all__]


@pytest.mark.parametrize(("package", "name"), PUBLIC)
def test_public_name_resolves_and_is_listed(package, name):
    module = importlib.import_module(package)
    assert getattr(module, name) is not None
    assert name in dir(module)


@pytest.mark.parametrize("package", ["backbones", "hpo"])
def test_unknown_name_is_an_attribute_error(package):
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        importlib.import_module(package).nope  # noqa: B018


@pytest.mark.slow
def test_errors_and_registry_import_without_torch():
    code = ("import sys, hpo.errors, hpo.study; "
            "from backbones import BACKBONE_NAMES, BackboneError, NameTable, Registry, did_you_mean; "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
