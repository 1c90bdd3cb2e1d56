"""The one table of per-trial artifact kinds: names, patterns, places and content types, each
kind round-tripped through a real store folder, found by the readers, named nowhere else."""

from __future__ import annotations

import io
import re
from pathlib import Path

import optuna
import pytest

from hpo.trial.artifact_kinds import KINDS, PLACES, ArtifactKind, kind_of
from hpo.trial.artifacts import artifact_store, artifacts_of, download, upload

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

ROOT = Path(__file__).resolve().parents[3]

#: The names studies already hold (on disk, in their attrs): a kind may be added, never renamed.
PINNED = {
    "confusion_png": "confusion_matrix.png",
    "confusion_json": "confusion_matrix.json",
    "learning_curves": "learning_curves.png",
    "val_record": "val-step3.bin",
    "checkpoint": "checkpoints/trial-3.pt",
    "weights": "trial-3-weights.pt",
}
ARTIFACTS = [k for k in KINDS.values() if k.place != "key"]
KEYS = [k for k in KINDS.values() if k.place == "key"]


def _values(kind: ArtifactKind) -> dict[str, int]:
    return dict.fromkeys(kind.fields, 3)


def test_the_table_is_keyed_by_each_kinds_own_name_and_no_name_is_two_kinds():
    assert all(name == kind.name for name, kind in KINDS.items())
    names = [kind.filename(**_values(kind)) for kind in KINDS.values()]
    assert len(set(names)) == len(names)
    for kind in KINDS.values():  # no pattern claims another kind's files
        name = kind.filename(**_values(kind))
        assert [k.name for k in KINDS.values() if k.match(name) is not None] == [kind.name]


@pytest.mark.parametrize("name, filename", sorted(PINNED.items()))
def test_existing_kinds_keep_the_names_studies_already_hold(name, filename):
    kind = KINDS[name]
    assert kind.filename(**_values(kind)) == filename
    assert kind.key(**_values(kind)) == filename  # no scope: the key it always had


@pytest.mark.parametrize("kind", KINDS.values(), ids=list(KINDS))
def test_a_name_parses_back_to_its_fields_and_kind(kind):
    for n in (0, 7, 1234):
        values = dict.fromkeys(kind.fields, n)
        name = kind.filename(**values)
        assert kind.match(name) == values
        assert kind_of(name) is kind
        assert kind.match("x" + name) is None and kind.match(name + ".part") is None
    assert kind.place in PLACES and "/" in kind.mimetype
    with pytest.raises(TypeError, match="takes the fields"):
        kind.filename(**_values(kind), other=1)


def test_a_bad_kind_is_refused_with_the_options():
    with pytest.raises(ValueError, match="place must be one of trial, study, key"):
        ArtifactKind("x", "x.bin", "elsewhere", "application/octet-stream", "")
    with pytest.raises(ValueError, match=r"fields must be number, step, got \{epoch\}"):
        ArtifactKind("x", "x-{epoch}.bin", "trial", "application/octet-stream", "")


@pytest.fixture
def study(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 's.db'}"
    return optuna.create_study(storage=url, study_name="s"), artifact_store(url, "s")


@pytest.mark.parametrize("kind", ARTIFACTS, ids=[k.name for k in ARTIFACTS])
def test_each_artifact_kind_round_trips_through_a_store_with_its_content_type(
        kind, study, tmp_path):
    """Uploaded under its name to the trial or the study it belongs to, listed back with its
    fields and the table's content type, downloaded byte for byte."""
    st, store = study
    owner = st.ask() if kind.place == "trial" else st
    path = tmp_path / kind.filename(**_values(kind))
    path.write_bytes(b"\x00\x01payload")
    (tmp_path / "other.txt").write_text("not a kind")
    upload(owner, store, tmp_path / "other.txt")
    upload(owner, store, path)
    ((fields, meta),) = artifacts_of(owner, kind)
    assert fields == _values(kind)
    assert meta.mimetype == kind.mimetype
    assert download(store, meta.artifact_id, tmp_path / "back").read_bytes() == b"\x00\x01payload"


@pytest.mark.parametrize("kind", KEYS, ids=[k.name for k in KEYS])
def test_each_key_kind_round_trips_in_its_scope_apart_from_the_unscoped_key(kind, study):
    _, store = study
    plain, scoped = kind.key(**_values(kind)), kind.key("abc", **_values(kind))
    assert scoped != plain and scoped.startswith(kind.folder + "/abc/")
    store.write(plain, io.BytesIO(b"old study"))
    store.write(scoped, io.BytesIO(b"new study"))
    with store.open_reader(plain) as a, store.open_reader(scoped) as b:
        assert (a.read(), b.read()) == (b"old study", b"new study")


def test_the_readers_find_their_kinds_through_the_table(study, tmp_path):
    """Kept weights and validation records are found by `artifacts_of` of their kind."""
    from hpo.trial.checkpoint import kept_weights
    from hpo.trial.record_store import record_steps

    st, store = study
    trial = st.ask()
    for name in (KINDS["val_record"].filename(step=4), KINDS["weights"].filename(number=2),
                 "val-step-x.bin", "trial-x-weights.pt"):
        (tmp_path / name).write_bytes(b"x")
    upload(trial, store, tmp_path / "val-step-x.bin")
    upload(trial, store, tmp_path / KINDS["val_record"].filename(step=4))
    upload(st, store, tmp_path / "trial-x-weights.pt")
    upload(st, store, tmp_path / KINDS["weights"].filename(number=2))
    st.tell(trial, 1.0)
    assert record_steps(st.trials[0]) == [4]
    assert list(kept_weights(st)) == [2]


def test_the_figures_writer_names_its_files_from_the_table(tmp_path):
    from hpo.train import EpochMetrics
    from hpo.trial.figures import write_trial_figures

    epoch = EpochMetrics(epoch=0, train_loss=1.0, val_loss=1.0, val_acc=0.5, val_macro_f1=0.5,
                         seconds=1.0, images_per_s=10.0, lr=0.01, confusion=((1, 1), (0, 2)))
    written = write_trial_figures(tmp_path, [epoch], ["a", "b"], epoch=epoch)
    assert sorted(kind_of(p.name).name for p in written) == [
        "confusion_json", "confusion_png", "learning_curves"]


_FIELD = r"[\d<{(*]"  # how a field is spelled in code or prose: 3, <N>, {number}, (\d+), *


def _spellings(kind: ArtifactKind) -> list[re.Pattern[str]]:
    """The pattern's literal runs as code or prose would spell them: a run beside a field must
    touch one (`-weights.pt` after `<N>` or `)`, not in `bare-weights.pt`); runs of a few
    letters (`.png` alone) are not searched."""
    out = []
    parts = re.split(r"(\{\w+\})", kind.pattern)
    for i, run in enumerate(parts):
        if i % 2 or len(run.strip("./-_")) <= 3:
            continue
        before = r"(?<=[\d>})*])" if i > 0 else ""
        after = "(?=" + _FIELD + ")" if i + 1 < len(parts) else ""
        out.append(re.compile(before + re.escape(run) + after))
    return out


@pytest.mark.parametrize("kind", KINDS.values(), ids=list(KINDS))
def test_no_module_spells_a_kinds_file_name_but_the_table(kind):
    """One declared place: hpo/ and bench/ name these files only through `KINDS`."""
    table = ROOT / "hpo" / "trial" / "artifact_kinds.py"
    spellings = _spellings(kind)
    assert spellings, kind.pattern
    found = [f"{path.relative_to(ROOT)}: {m.group(0)!r}"
             for folder in ("hpo", "bench") for path in sorted((ROOT / folder).rglob("*.py"))
             if path != table
             for spelling in spellings for m in spelling.finditer(path.read_text("utf-8"))]
    assert not found, f"{kind.name}: write {kind.name}.filename(...) instead: {found}"
