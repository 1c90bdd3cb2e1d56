"""Every file a trial leaves in its study's artifact store, declared once: `KINDS`.

A kind is a name, a file name pattern (fields `{number}`: the trial number, `{step}`: a
reported step), where it goes and its content type:

- `trial`: an artifact of the trial (Optuna's artifact API, listed in the dashboard under it),
- `study`: an artifact of the study (listed under the study),
- `key`: a plain key in the store, replaced in place and not listed (a running trial's
  checkpoint). A study with a scope (`hpo.trial.artifacts.study_scope`) keeps its keys in a
  sub-folder of that name, so two studies sharing one store never touch each other's.

Writers name their files with `kind.filename(...)`, readers parse them back with `kind.match`;
`upload` takes the content type from here. Adding a per-trial artifact is one entry below plus
its writer.

Imports nothing heavy (`vcr-hpo status` reads records through it).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "CHECKPOINT",
    "CONFUSION_JSON",
    "CONFUSION_PNG",
    "CURVES_PNG",
    "KINDS",
    "PLACES",
    "VAL_RECORD",
    "WEIGHTS",
    "ArtifactKind",
    "kind_of",
]

#: Where a kind goes (see the module docstring).
PLACES = ("trial", "study", "key")
_FIELDS = ("number", "step")  # the integer fields a pattern may hold


@dataclass(frozen=True)
class ArtifactKind:
    """One kind of per-trial file: its name, file name pattern, place and content type."""

    name: str
    #: `str.format` pattern of the file name (a key may hold a folder: `checkpoints/...`)
    pattern: str
    #: "trial", "study" or "key" (`PLACES`)
    place: str
    mimetype: str
    #: what it holds, for the reader of this table
    doc: str
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.place not in PLACES:
            raise ValueError(f"artifact kind {self.name!r}: place must be one of "
                             f"{', '.join(PLACES)}, got {self.place!r}")
        parts = []
        for literal, name, _, _ in string.Formatter().parse(self.pattern):
            parts.append(re.escape(literal))
            if name is not None:
                if name not in _FIELDS:
                    raise ValueError(f"artifact kind {self.name!r}: pattern fields must be "
                                     f"{', '.join(_FIELDS)}, got {{{name}}}")
                parts.append(rf"(?P<{name}>\d+)")
        object.__setattr__(self, "_regex", re.compile("".join(parts)))

    @property
    def fields(self) -> tuple[str, ...]:
        """The pattern's fields, in order (`("number",)`, `("step",)` or none)."""
        return tuple(name for _, name, _, _ in string.Formatter().parse(self.pattern) if name)

    def filename(self, **values: int) -> str:
        """The file name (a `trial`/`study` artifact) or key (scope aside) for these fields.

        Raises:
            TypeError: a field missing or extra.
        """
        if set(values) != set(self.fields):
            raise TypeError(f"artifact kind {self.name!r}: takes the fields "
                            f"{', '.join(self.fields) or 'none'}, got {', '.join(values) or 'none'}")
        return self.pattern.format(**{k: int(v) for k, v in values.items()})

    def key(self, scope: str = "", **values: int) -> str:
        """The store key of a `key` kind: `filename`, inside the folder `scope` when given
        (`checkpoints/<scope>/trial-3.pt`; no scope: `checkpoints/trial-3.pt`, as before)."""
        name = self.filename(**values)
        if not scope:
            return name
        folder, _, base = name.rpartition("/")
        return f"{folder}/{scope}/{base}" if folder else f"{scope}/{base}"

    @property
    def folder(self) -> str:
        """The folder of the pattern ("" when none): what preflight checks can be written."""
        return self.pattern.rpartition("/")[0]

    def match(self, filename: str) -> dict[str, int] | None:
        """The fields of a file name of this kind, None for any other name."""
        m = self._regex.fullmatch(filename)
        return None if m is None else {k: int(v) for k, v in m.groupdict().items()}


CONFUSION_PNG = ArtifactKind("confusion_png", "confusion_matrix.png", "trial", "image/png",
                             "the best epoch's val confusion matrix, drawn")
CONFUSION_JSON = ArtifactKind("confusion_json", "confusion_matrix.json", "trial",
                              "application/json",
                              "the same matrix with per-class precision, recall and support")
CURVES_PNG = ArtifactKind("learning_curves", "learning_curves.png", "trial", "image/png",
                          "loss and metrics per epoch")
VAL_RECORD = ArtifactKind("val_record", "val-step{step}.bin", "trial",
                          "application/octet-stream",
                          "per-image correctness and loss at a reported step (hpo.records)")
CHECKPOINT = ArtifactKind("checkpoint", "checkpoints/trial-{number}.pt", "key",
                          "application/octet-stream",
                          "a running trial's one checkpoint, replaced as it trains, removed when "
                          "it ends (hpo.trial.checkpoint)")
WEIGHTS = ArtifactKind("weights", "trial-{number}-weights.pt", "study",
                       "application/octet-stream",
                       "a top trial's final weights (study.keep_weights, `vcr-hpo best`)")

#: Every per-trial artifact kind, by name.
KINDS: Mapping[str, ArtifactKind] = MappingProxyType({k.name: k for k in (
    CONFUSION_PNG, CONFUSION_JSON, CURVES_PNG, VAL_RECORD, CHECKPOINT, WEIGHTS)})


def kind_of(filename: str) -> ArtifactKind | None:
    """The kind whose pattern a file name (or unscoped key) matches, None for any other."""
    return next((k for k in KINDS.values() if k.match(filename) is not None), None)
