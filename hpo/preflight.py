"""Facts about this machine that parsing must not check: devices, data, drivers, weight files.

A space parses the same on every machine (so `vcr-hpo best` reads a study anywhere); `run`,
`validate` and `train` call `preflight` before any storage is touched, so a missing GPU, an
undecodable image, an absent database driver or weight file is one line and exit 2, not a
study of failing trials. Imports torch only to count CUDA devices when one is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, WeightsNotFoundError

if TYPE_CHECKING:
    from .config import TrainConfig
    from .space import SearchSpace

__all__ = [
    "check_data",
    "check_device",
    "check_storage_driver",
    "check_weights",
    "preflight",
    "weight_backbones",
]


def check_device(device: str, *, where: str = "device") -> None:
    """A `cuda`, `cuda:N` or `mps` device must exist here; `auto` and `cpu` always do.

    Raises:
        ConfigError: the device is not on this machine.
    """
    if device in ("auto", "cpu"):
        return
    from .train import resolve_device

    try:
        resolve_device(device)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def check_data(data: str, *, where: str = "data", decode: bool = True) -> int:
    """The data source exists, has the layout, and (with `decode`) every image decodes.

    Returns the number of images checked.

    Raises:
        ConfigError: one line naming the source, or the files that do not decode.
    """
    from ._synthetic import is_synthetic, parse_synthetic

    if is_synthetic(data):
        parse_synthetic(data, where=where)
        return 0
    from .data import check_data_source, check_images_decode

    check_data_source(data, where=where)
    return check_images_decode(data, where=where) if decode else 0


def _driver_fix(backend: str) -> str:
    return {
        "postgresql": 'Run: pip install -e ".[postgres]" (psycopg2)',
        "mysql": "Run: pip install pymysql and write mysql+pymysql://..., or pip install mysqlclient",
    }.get(backend, f"Install the SQLAlchemy driver for {backend}")


def check_storage_driver(url: str, *, where: str = "--storage") -> None:
    """The database driver (DBAPI module) of a storage URL can be imported here.

    Raises:
        ConfigError: the driver is missing or unknown to SQLAlchemy.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    from .study._grpc import is_grpc_url, require_grpc
    from .study._storage import postgres_driver

    if is_grpc_url(url):  # the proxy holds the database driver; here only grpcio is needed
        require_grpc(where)
        return

    try:
        parsed = make_url(postgres_driver(url))
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except NoSuchModuleError as exc:
        raise ConfigError(f"{where}: unknown database driver, got {url!r} ({exc}). "
                          "Use sqlite:///... or postgresql://...") from None
    except (ArgumentError, ValueError):
        raise ConfigError(f"{where}: not a database URL, got {url!r}. "
                          "Use sqlite:///studies/NAME.db or postgresql://user@host:5432/db") from None
    except ImportError as exc:
        shown = parsed.render_as_string(hide_password=True)
        raise ConfigError(f"{where}: the database driver is not installed, got {shown!r} "
                          f"({exc}). {_driver_fix(parsed.get_backend_name())}") from None


def weight_backbones(space: SearchSpace | None, cfg: TrainConfig) -> list[tuple[str, str]]:
    """(backbone, where) pairs whose pretrained weights a trial may load; [] when none may.

    Covers every searched backbone choice, and a searched `pretrained` that may be True.
    """
    params = {p.name: p for p in space.params} if space is not None else {}
    if "pretrained" in params:
        may_pretrain = True in (params["pretrained"].choices or ())
    else:
        may_pretrain = cfg.pretrained is True
    if not may_pretrain and cfg.weights is None:  # a weights file loads even without pretrained
        return []
    if "backbone" in params:
        return [(name, f"hyperparameters.backbone.choices[{i}]")
                for i, name in enumerate(params["backbone"].choices or ())]
    return [(cfg.backbone, "backbone")]


def check_weights(space: SearchSpace | None, cfg: TrainConfig, *, where: str,
                  override: bool = False) -> None:
    """Every pretrained weight file a trial may load is on this machine (no network).

    Args:
        where: the file the values come from (the space or config file), or the flag
            (`--set weights`) when `override`.
        override: the weights/pretrained value came from the command line, not the file.

    Raises:
        ConfigError: one line for the first backbone whose file is missing, with where it is
            expected and how to get it.
    """
    wanted = weight_backbones(space, cfg)
    if not wanted:
        return
    from backbones import find_pretrained_weights

    prefix = "fixed." if space is not None else ""
    for name, path in wanted:
        try:
            find_pretrained_weights(name, cfg.weights)
        except WeightsNotFoundError as exc:
            if override:
                raise ConfigError(f"{where}: {exc}") from None
            at = f"{prefix}weights" if cfg.weights is not None else (
                path if path.startswith("hyperparameters") else f"{prefix}{path}")
            raise ConfigError(f"{where}: {at}: {exc}") from None


def preflight(
    cfg: TrainConfig,
    *,
    space: SearchSpace | None = None,
    overrides: Mapping[str, Any] | None = None,
    storage: str | None = None,
    where: str = "config",
) -> None:
    """Every check of this machine a run needs, before any storage is touched.

    Args:
        cfg: the baseline TrainConfig (fixed values + overrides).
        space: its search space (searched backbones and `pretrained` are covered).
        overrides: CLI `--set`/`--data`/`--device` values; a failing one is named as the flag.
        storage: a storage URL whose driver must import.
        where: where the fixed values come from (the space file or the config file).

    Raises:
        ConfigError: the first fault, one line.
    """
    overrides = overrides or {}

    def origin(field: str) -> str:
        if field in overrides:
            return f"--{field}" if field in ("data", "device") else f"--set {field}"
        return f"{where}: fixed.{field}" if space is not None else f"{where}: {field}"

    check_device(cfg.device, where=origin("device"))
    if storage is not None:
        check_storage_driver(storage)
    key = "weights" if "weights" in overrides else "pretrained"
    if key in overrides:
        check_weights(space, cfg, where=origin(key), override=True)
    else:
        check_weights(space, cfg, where=str(space.source) if space is not None else where)
    check_data(cfg.data, where=origin("data"))
