"""The shipped start-up portfolio file: where it lives and how it is read (no projection)."""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any

from ..errors import ConfigError

__all__ = ["PORTFOLIO_FILE", "load_portfolio", "read_portfolio"]

#: The file beside the shipped spaces (hpo/search_spaces/ in a wheel); not a search space.
PORTFOLIO_FILE = "portfolio.yaml"

def _where(path: Any) -> str:
    return f"{path}: portfolio"


def read_portfolio(path: Any) -> tuple[dict[str, Any], ...]:
    """Read and validate a portfolio file: `portfolio:` a list of TrainConfig name -> value.

    Raises:
        ConfigError: not readable, not that shape, or an unknown name or bad value (one line).
    """
    import yaml

    from ..config import check_field

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: must be a readable YAML file, got "
                          f"{str(exc).splitlines()[0][:100]}. Rebuild it with "
                          "bench/build_portfolio.py") from None
    entries = raw.get("portfolio") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{_where(path)}: must be a non-empty list of configs, got "
                          f"{entries!r}. Write portfolio: [{{backbone: resnet18, lr: 0.003}}]")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry:
            raise ConfigError(f"{_where(path)}[{i}]: must be a mapping of trainer fields, got "
                              f"{entry!r}. Write {{backbone: resnet18, lr: 0.003}}")
        out.append({k: check_field(str(k), v, where=f"{_where(path)}[{i}]")
                    for k, v in entry.items()})
    return tuple(out)


@functools.lru_cache(maxsize=1)
def load_portfolio() -> tuple[dict[str, Any], ...]:
    """The shipped portfolio, best first (`read_portfolio` of hpo/search_spaces/portfolio.yaml).

    Raises:
        ConfigError: missing from this installation, or invalid.
    """
    res = importlib.resources.files("hpo") / "search_spaces" / PORTFOLIO_FILE
    if not res.is_file():
        raise ConfigError(f"study.portfolio: needs {PORTFOLIO_FILE} beside the shipped spaces, "
                          f"got none in {res}. Reinstall vcr-hpo, or set portfolio: 0")
    return read_portfolio(res)
