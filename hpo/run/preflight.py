"""Facts about this machine that parsing must not check: devices, data, drivers, weight files,
and the folders a run writes.

A space parses the same on every machine (so `vcr-hpo best` reads a study anywhere); `run`,
`validate` and `train` call `preflight` before any storage is touched, so a missing GPU, an
undecodable image, an absent database driver or weight file is one line and exit 2, not a
study of failing trials; `run` also calls `check_run_locations`, so a folder it cannot write
(under a file, read-only, forbidden) is one line before the study exists. Imports torch only to
count CUDA devices when one is asked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, WeightsNotFoundError

if TYPE_CHECKING:
    from ..config import TrainConfig
    from ..space import SearchSpace

__all__ = [
    "check_data",
    "check_device",
    "check_run_locations",
    "check_storage_driver",
    "check_weights",
    "check_writable_folder",
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
    from ..train import resolve_device

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
    from ..data._synthetic import is_synthetic, parse_synthetic

    if is_synthetic(data):
        parse_synthetic(data, where=where)
        return 0
    from ..data import check_data_source, check_images_decode

    if decode:  # lists the source once, with the same checks as check_data_source
        return check_images_decode(data, where=where)
    check_data_source(data, where=where)
    return 0


def check_storage_driver(url: str, *, where: str = "--storage") -> None:
    """What a client of the storage URL's backend needs imports here: its database driver (DBAPI
    module), or grpcio for a `grpc://` proxy (which holds the driver itself).

    Raises:
        ConfigError: an unknown scheme, or the driver is missing or unknown to SQLAlchemy.
    """
    from ..study import storage_backend

    storage_backend(url, where=where).check_client(url, where)


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


# --------------------------------------------------------------------------- folders a run writes


def check_writable_folder(path: str | os.PathLike, *, where: str, fix: str) -> None:
    """`path` is a folder this process can create (or write in, when it exists).

    Checked without leaving anything behind: the nearest existing folder on the way must be a
    folder (not a file) in which a folder can be made; the probe folder is removed at once
    (permission bits alone would say yes to root, and /proc or a read-only mount say no only
    when asked).

    Raises:
        ConfigError: `<where>: must be a folder this run can write, got <path> (<why>). <fix>`.
    """
    import tempfile

    shown = str(path)
    target = Path(os.path.abspath(Path(path).expanduser()))
    nearest = target
    while not nearest.exists() and nearest.parent != nearest:
        nearest = nearest.parent
    rule = f"{where}: must be a folder this run can write, got {shown!r}"
    if not nearest.is_dir():
        why = "it is a file" if nearest == target else f"{nearest} is a file"
        raise ConfigError(f"{rule} ({why}). {fix}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".vcr-hpo-write-check-", dir=nearest))
    except OSError as exc:
        raise ConfigError(f"{rule} (no folder can be made in {nearest}: {exc.strerror or exc}). "
                          f"{fix}") from None


def check_run_locations(url: str, study_name: str, artifacts: str | None) -> None:
    """Every folder a run writes can be written, before the study is created: the SQLite file's
    folder (and the file, when it exists), the artifact store's folder and its checkpoints' folder
    (a bucket: a probe object written and removed, `check_bucket`), and the data cache when `$VCR_HPO_CACHE` names one (the default cache
    falls back to a private copy when it cannot be written).

    Raises:
        ConfigError: the first location that cannot be written, one line.
    """
    from ..study import sqlite_path
    from ..trial.artifact_kinds import CHECKPOINT
    from ..trial.artifacts import check_bucket, default_location

    db = sqlite_path(url)
    if db is not None:
        fix = "Give --storage sqlite:///FOLDER/NAME.db in a folder you can write"
        check_writable_folder(db.parent, where="--storage", fix=fix)
        if db.exists():
            try:
                with open(db, "r+b"):  # opened for writing, nothing written
                    pass
            except OSError as exc:
                raise ConfigError(f"--storage: the SQLite file must be writable, got {url!r} "
                                  f"({exc.strerror or exc}). {fix}") from None
    location = artifacts if artifacts is not None else default_location(url, study_name)
    if "://" in location:  # a bucket (check_location has turned file:// into a path)
        check_bucket(location, where="--artifacts")
    else:
        where = "--artifacts" if artifacts is not None else f"--artifacts (default {location})"
        fix = "Give --artifacts FOLDER in a folder you can write, or s3:// or gs://"
        check_writable_folder(location, where=where, fix=fix)
        check_writable_folder(Path(location) / CHECKPOINT.folder, where=f"{where} checkpoints",
                              fix=fix)
    cache = os.environ.get("VCR_HPO_CACHE", "").strip()
    if cache and cache.lower() not in ("0", "off", "none", "false"):
        check_writable_folder(cache, where="$VCR_HPO_CACHE",
                              fix="Set it to a folder you can write, or to off")
