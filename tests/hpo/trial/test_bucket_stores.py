"""Artifact stores in buckets, against local fakes: S3 (moto's server) and GCS
(gcp-storage-emulator). A real run writes its trial files there and `vcr-hpo best` reads the
weights back; a missing bucket or a dead endpoint stops the run in preflight."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from hpo.cli import main
from hpo.trial.artifacts import (
    BUCKET_STORES,
    artifact_store,
    check_bucket,
    download,
    list_trial_artifacts,
    study_location,
)
from tests._net import free_port
from tests.conftest import has_module

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

BUCKET = "vcr-bucket"
FAKES = {"s3": ("moto's S3 server and boto3", ("moto.server", "boto3")),
         "gs": ("gcp-storage-emulator and google-cloud-storage",
                ("gcp_storage_emulator", "google.cloud.storage"))}


@dataclass
class Fake:
    """A bucket on a local fake: its objects by key, and how to make the endpoint go away."""

    scheme: str
    keys: Callable[[], list[str]]
    read: Callable[[str], bytes]
    point_nowhere: Callable[[pytest.MonkeyPatch], None]


def _s3(monkeypatch) -> Iterator[Fake]:
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps its buckets in the process, across servers: start each test from an empty one
    urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{port}/moto-api/reset", method="POST"), timeout=10).close()
    for name, value in {"AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
                        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE":
                        "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)

    def keys() -> list[str]:
        return [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]

    def nowhere(mp) -> None:
        mp.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")

    try:
        yield Fake("s3", keys, lambda k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read(),
                   nowhere)
    finally:
        server.stop()


def _gcs(monkeypatch) -> Iterator[Fake]:
    from gcp_storage_emulator.server import create_server
    from google.cloud import storage

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
    bucket = storage.Client().bucket(BUCKET)

    def nowhere(mp) -> None:
        mp.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")

    try:
        yield Fake("gs", lambda: [b.name for b in bucket.list_blobs()],
                   lambda k: bucket.blob(k).download_as_bytes(), nowhere)
    finally:
        server.stop()


_START = {"s3": _s3, "gs": _gcs}


def test_every_bucket_store_has_a_fake_here():
    assert set(_START) == set(BUCKET_STORES) == set(FAKES)


@pytest.fixture(params=list(BUCKET_STORES))
def fake(request, monkeypatch, require) -> Iterator[Fake]:
    what, modules = FAKES[request.param]
    require(what, all(has_module(m) for m in modules), 'pip install -e ".[dev]"')
    yield from _START[request.param](monkeypatch)


def test_the_preflight_probe_passes_on_a_writable_bucket_and_leaves_nothing(fake):
    check_bucket(f"{fake.scheme}://{BUCKET}/runs/a")
    check_bucket(f"{fake.scheme}://{BUCKET}")  # no prefix
    assert fake.keys() == []


def test_a_checkpoint_round_trips_through_the_bucket(fake, tmp_path):
    """Resume reads a checkpoint with torch.load, which needs a seekable file (boto3's body is a
    stream)."""
    import torch

    from hpo.trial.checkpoint import checkpoint_key, find_checkpoint, save_checkpoint

    store = artifact_store(f"sqlite:///{tmp_path / 'b.db'}", "tiny", f"{fake.scheme}://{BUCKET}/p")
    save_checkpoint(store, 3, "same", {"epoch": 1, "model": {"w": torch.arange(4.0)}})
    assert checkpoint_key(3) == "checkpoints/trial-3.pt" and fake.keys() == [
        "p/checkpoints/trial-3.pt"]
    found = find_checkpoint(store, [3], "same")
    assert found.note is None and found.origin == 3, found
    assert found.state["epoch"] == 1 and found.state["model"]["w"].tolist() == [0, 1, 2, 3]


@pytest.mark.slow  # a real trial (about 30 s on an idle core)
def test_a_run_writes_its_trial_files_to_the_bucket_and_best_reads_them_back(
        fake, tiny_space, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'b.db'}"
    location = f"{fake.scheme}://{BUCKET}/runs/a"
    assert main(["run", "--space", str(tiny_space(epochs=1)), "--storage", url, "--artifacts",
                 location, "--n-trials", "1", "--quiet"]) == 0

    study = optuna.load_study(study_name="tiny", storage=url)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert "artifact_error" not in trial.user_attrs, trial.user_attrs
    assert study_location(study, url) == location  # recorded: later commands need no flag
    keys = fake.keys()
    assert keys and all(k.startswith("runs/a/") for k in keys), keys
    assert not [k for k in keys if "write-check" in k]  # the preflight probe left nothing
    assert not list(tmp_path.glob("*-artifacts"))  # nothing went to a local folder instead
    metas = list_trial_artifacts(trial)
    names = {m.filename for m in metas}
    assert {"confusion_matrix.png", "learning_curves.png", "val-step0.bin"} <= names, names
    for meta in metas:  # each listed file is the object under the prefix, byte for byte
        assert f"runs/a/{meta.artifact_id}" in keys
    png = next(m for m in metas if m.filename == "confusion_matrix.png")
    assert fake.read(f"runs/a/{png.artifact_id}")[:8] == b"\x89PNG\r\n\x1a\n"

    capsys.readouterr()
    assert main(["best", "--storage", url, "-o", str(tmp_path / "best.yaml")]) == 0
    out = capsys.readouterr().out
    weights = tmp_path / "best.pt"
    assert f"weights of trial #0 -> {weights}" in out, out
    stored = [k for k in keys if fake.read(k) == weights.read_bytes()]
    assert len(stored) == 1, stored  # the kept weights came from the bucket
    store = artifact_store(url, "tiny", location)  # the download path reads the same bytes
    got = download(store, png.artifact_id, tmp_path / "c.png").read_bytes()
    assert got == fake.read(f"runs/a/{png.artifact_id}")


@pytest.mark.parametrize("fault", ["no such bucket", "nothing listening"])
def test_a_bucket_the_run_cannot_write_is_one_line_exit_2_and_no_study(
        fault, fake, tiny_space, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bucket = "no-such-bucket" if fault == "no such bucket" else BUCKET
    if fault == "nothing listening":
        fake.point_nowhere(monkeypatch)
    location = f"{fake.scheme}://{bucket}/runs/a"
    db = tmp_path / "b.db"
    space = tiny_space(epochs=1)
    assert main(["run", "--space", str(space), "--storage", f"sqlite:///{db}", "--artifacts",
                 location]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith(f"error: --artifacts: must be a bucket this run can write, got "
                             f"{location!r} ("), err
    assert err[0].endswith(f"{BUCKET_STORES[fake.scheme].fix}, or give a folder"), err
    assert sorted(Path(tmp_path).iterdir()) == [space]  # no study file, no folder
