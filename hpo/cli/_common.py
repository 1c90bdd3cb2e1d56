"""What several commands share: positive numbers, `--set`, `--artifacts`, finding the study, tables."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..errors import ConfigError


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Left-aligned columns under a dashed rule (`backbones`, `validate`, `spaces`)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def positive(kind: type, what: str):
    """An argparse type: a `kind` number > 0, else one line that quotes the text."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return value

    parse.__name__ = what
    return parse


def read_sets(items: Sequence[str]) -> dict[str, object]:
    """`--set key=value` pairs, values read as YAML scalars; unchecked (`parse_sets` checks)."""
    import yaml

    out: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set: must be key=value, got {item!r}. Write e.g. --set epochs=2")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        if isinstance(value, str):
            try:  # YAML 1.1 reads 1e-3 as a string; a number is what anyone means here
                value = float(value) if value.strip().lower() not in ("nan", "inf", "-inf") else value
            except ValueError:
                pass
        out[key] = value
    return out


def parse_sets(items: Sequence[str]) -> dict[str, object]:
    """`read_sets`, then each value checked like a TrainConfig field (`vcr-hpo run` leaves the
    check to `plan_run`)."""
    from ..config import check_field

    return {k: check_field(k, v, where=f"--set {k}") for k, v in read_sets(items).items()}


def artifacts_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts", metavar="LOCATION",
                   help="checkpoints, kept weights and trial files: a folder, s3://bucket/prefix "
                        "or gs://bucket/prefix (default: the study's, else studies/<study>-artifacts)")


def study_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="URL", help="default: the files in studies/")
    p.add_argument("--study-name", metavar="NAME", help="default: every study in the storage")


def storages(ns: argparse.Namespace) -> list[str]:
    """The URLs a reading command looks in: --storage, else studies/<study-name>.db, else studies/*.db."""
    from pathlib import Path

    from ..study import check_storage_url, default_storage_url, sqlite_path

    if ns.storage:
        return [check_storage_url(ns.storage)]
    if ns.study_name:
        url = default_storage_url(ns.study_name)
        path = sqlite_path(url)
        if path is None or not path.is_file():
            raise ConfigError(f"--study-name: no file {path}, got "
                              f"{ns.study_name!r}. Pass --storage URL or run the study first")
        return [url]
    files = sorted(Path("studies").glob("*.db"))
    if not files:
        raise ConfigError("--storage: no study files in studies/, got none. Pass --storage URL "
                          "or run `vcr-hpo run --space hyperparameters.yaml` first")
    return [f"sqlite:///{f}" for f in files]


def open_existing(url: str):
    """Storage without heartbeats (reading must not fail anyone's trials); the file must exist."""
    from ..study import build_storage, sqlite_path

    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise ConfigError(f"--storage: no such SQLite file, got {url!r}. Check the path")
    return build_storage(url, heartbeat_interval=None, grace_period=None)


def load_one(ns: argparse.Namespace):
    """The one study `best` and `report` act on (URL, study)."""
    import optuna

    urls = storages(ns)
    found = []
    for url in urls:
        storage = open_existing(url)
        names = [s.study_name for s in storage.get_all_studies()]
        if ns.study_name:
            if ns.study_name in names:
                found.append((url, storage, ns.study_name))
        else:
            found += [(url, storage, n) for n in names]
    if len(found) != 1:
        listing = ", ".join(f"{n} ({u})" for u, _, n in found) or "(none)"
        rule = "no such study" if not found else "several studies match"
        raise ConfigError(f"--study-name: {rule}, got {ns.study_name!r}. Studies: {listing}")
    url, storage, name = found[0]
    return url, optuna.load_study(study_name=name, storage=storage)
