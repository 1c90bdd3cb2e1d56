"""Where a study's files live: Optuna artifact stores (folder, S3, GCS) and thin helpers.

One store per study. By default a folder beside the study: `studies/<study>-artifacts/` for
`sqlite:///studies/<study>.db` (the folder of the SQLite file), `studies/<study>-artifacts/`
in the current folder for server databases. `--artifacts LOCATION` picks another folder,
`s3://bucket/prefix` (extra `s3`: boto3) or `gs://bucket/prefix` (extra `gcs`). The location
a run used is stored in the study (user attr `artifacts`), so `best`, `dashboard` and `train`
find it without the flag.

    store = artifact_store("sqlite:///studies/demo.db", "demo")
    artifact_id = upload(trial, store, "confusion.png")
    for meta in list_trial_artifacts(trial):
        download(store, meta.artifact_id, f"out/{meta.filename}")

Files are written to a temporary name and renamed, so a process killed mid-write never leaves
a truncated file under the real name.

What a trial leaves there, by name, is `hpo.trial.artifact_kinds.KINDS`. Trial and study
artifacts get fresh ids, so studies sharing a store never mix them; plain keys (a running
trial's checkpoint) are named by trial number, so a study keeps them in a folder of its own:
its scope (study user attr `artifact_scope`), drawn on its first run. Studies that ran trials
before scopes keep their keys where they were.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any

from ..errors import ConfigError
from .artifact_kinds import ArtifactKind, kind_of

if TYPE_CHECKING:
    import optuna
    from optuna.artifacts import ArtifactMeta, Boto3ArtifactStore, GCSArtifactStore

#: Optuna's ArtifactStore protocol (open_reader, write, remove); its class is private.
ArtifactStore = Any

__all__ = [
    "ATTR_ARTIFACTS",
    "ATTR_SCOPE",
    "BUCKET_STORES",
    "artifact_store",
    "artifacts_of",
    "check_bucket",
    "check_location",
    "default_location",
    "download",
    "find_artifact",
    "list_trial_artifacts",
    "record_location",
    "study_location",
    "study_scope",
    "upload",
]

#: Study user attr holding the artifact location a run used.
ATTR_ARTIFACTS = "artifacts"
#: Study user attr: the folder of the study's own plain keys in its store (`record_location`).
ATTR_SCOPE = "artifact_scope"
#: Suffixes mimetypes guesses wrongly (.pt is not a "snesdev page table").
_BINARY = {".pt", ".pth", ".ckpt", ".npz", ".safetensors"}

#: seconds a preflight probe of a bucket waits to connect and for an answer
PROBE_TIMEOUT = 10


@dataclass(frozen=True)
class BucketStore:
    """One kind of bucket an artifact location may name, by URL scheme (`s3://bucket/prefix`)."""

    scheme: str
    #: the client library it needs, and the extra that installs it
    module: str
    extra: str
    #: Optuna's store for a bucket (ids under the prefix are added by `_PrefixedStore`)
    open: Callable[[str], Any]
    #: preflight: write an empty object under `key` in the bucket and remove it, with short
    #: timeouts and no retries; raises what the client raises
    probe: Callable[[str, str], None]
    #: what to check when the probe fails
    fix: str


def _open_s3(bucket: str) -> Boto3ArtifactStore:
    from optuna.artifacts import Boto3ArtifactStore

    return Boto3ArtifactStore(bucket)


def _probe_s3(bucket: str, key: str) -> None:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", config=Config(connect_timeout=PROBE_TIMEOUT,
                                              read_timeout=PROBE_TIMEOUT,
                                              retries={"total_max_attempts": 1}))
    client.put_object(Bucket=bucket, Key=key, Body=b"")
    client.delete_object(Bucket=bucket, Key=key)


def _open_gcs(bucket: str) -> GCSArtifactStore:
    from optuna.artifacts import GCSArtifactStore

    return GCSArtifactStore(bucket)


def _probe_gcs(bucket: str, key: str) -> None:
    from google.cloud import storage

    blob = storage.Client().bucket(bucket).blob(key)
    blob.upload_from_string(b"", timeout=PROBE_TIMEOUT, retry=None)
    blob.delete(timeout=PROBE_TIMEOUT, retry=None)


#: The buckets an artifact location may name, by URL scheme (a folder or file:// otherwise).
BUCKET_STORES: Mapping[str, BucketStore] = MappingProxyType({b.scheme: b for b in (
    BucketStore("s3", "boto3", "s3", _open_s3, _probe_s3,
                "Create the bucket, or check boto3's credentials and $AWS_ENDPOINT_URL_S3"),
    BucketStore("gs", "google.cloud.storage", "gcs", _open_gcs, _probe_gcs,
                "Create the bucket, or check the Google credentials (gcloud auth "
                "application-default login) and $STORAGE_EMULATOR_HOST"),
)})
_FORMS = "a folder, file://FOLDER, " + ", ".join(f"{s}://bucket/prefix" for s in BUCKET_STORES)


def default_location(storage_url: str, study_name: str) -> str:
    """The folder beside the study: `<folder of the SQLite file>/<study>-artifacts`, or
    `studies/<study>-artifacts` for a server database."""
    from ..study import artifacts_home

    return str(artifacts_home(storage_url) / f"{study_name}-artifacts")


def _split_cloud(location: str) -> tuple[str, str, str] | None:
    scheme, sep, rest = location.partition("://")
    if not sep or scheme not in BUCKET_STORES:
        return None
    bucket, _, prefix = rest.partition("/")
    return scheme, bucket, prefix.strip("/")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package (google) is missing
        return False


def check_location(location: str, *, where: str = "--artifacts") -> str:
    """Check an artifact location without creating anything. Returns it (a folder path as given).

    Raises:
        ConfigError: an unknown URL scheme, a bucket URL without a bucket, a missing extra
            (boto3, google-cloud-storage), or a path that is a file.
    """
    text = str(location).strip()
    if not text:
        raise ConfigError(f"{where}: must name {_FORMS}, got {location!r}. "
                          "Give e.g. studies/demo-artifacts")
    cloud = _split_cloud(text)
    if cloud is not None:
        scheme, bucket, _ = cloud
        module, extra = BUCKET_STORES[scheme].module, BUCKET_STORES[scheme].extra
        if not bucket:
            raise ConfigError(f"{where}: {scheme}:// needs a bucket, got {text!r}. "
                              f"Write {scheme}://BUCKET/PREFIX")
        if not _has_module(module):
            raise ConfigError(f"{where}: {scheme}:// artifacts need {module}, got {text!r}. "
                              f'Run: pip install -e ".[{extra}]"')
        return text
    if "://" in text:
        scheme = text.partition("://")[0]
        if scheme != "file":
            raise ConfigError(f"{where}: unsupported location scheme {scheme!r}, got {text!r}. "
                              f"Give {_FORMS}")
        text = text[len("file://"):]
    if Path(text).exists() and not Path(text).is_dir():
        raise ConfigError(f"{where}: must be a folder, got the file {text!r}. "
                          "Give a folder path (it is created on first use)")
    return text


class _FolderStore:
    """Optuna's FileSystemArtifactStore, with atomic writes and the folder created on demand."""

    def __init__(self, base: str | os.PathLike, scope: str = "") -> None:
        from optuna.artifacts import FileSystemArtifactStore

        self.base_path = Path(base)
        self.scope = scope  # the study's own folder for plain keys (`ArtifactKind.key`)
        self._inner = FileSystemArtifactStore(self.base_path)

    def _path(self, artifact_id: str) -> Path:
        # the inner store's check: relative ids that stay inside the folder
        root = os.path.abspath(self.base_path)
        path = self.base_path / artifact_id
        if os.path.isabs(artifact_id) or os.path.commonpath([root, os.path.abspath(path)]) != root:
            raise ValueError(f"Invalid artifact_id: {artifact_id}")
        return path

    def open_reader(self, artifact_id: str) -> IO[bytes]:
        return self._inner.open_reader(artifact_id)

    def write(self, artifact_id: str, content_body: IO[bytes]) -> None:
        path = self._path(artifact_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                shutil.copyfileobj(content_body, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def remove(self, artifact_id: str) -> None:
        self._inner.remove(self._path(artifact_id).relative_to(self.base_path).as_posix())

    def __repr__(self) -> str:
        return f"FolderArtifactStore({str(self.base_path)!r})"


class _PrefixedStore:
    """A bucket store whose artifact ids live under `prefix/` (Optuna's take a bucket only)."""

    def __init__(self, inner: Any, prefix: str, url: str, scope: str = "") -> None:
        self._inner, self._prefix, self.url = inner, prefix, url
        self.scope = scope  # the study's own folder for plain keys (`ArtifactKind.key`)

    def _key(self, artifact_id: str) -> str:
        return f"{self._prefix}/{artifact_id}" if self._prefix else artifact_id

    def open_reader(self, artifact_id: str) -> IO[bytes]:
        reader = self._inner.open_reader(self._key(artifact_id))
        if reader.seekable():
            return reader
        with reader:  # boto3's body is a stream: torch.load (checkpoints, weights) needs seek
            return io.BytesIO(reader.read())

    def write(self, artifact_id: str, content_body: IO[bytes]) -> None:
        self._inner.write(self._key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self._inner.remove(self._key(artifact_id))

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"


def artifact_store(storage_url: str, study_name: str, location: str | None = None, *,
                   scope: str = "") -> ArtifactStore:
    """The artifact store of a study: `location` (a folder, s3:// or gs://), else beside it.

    Nothing is created until the first write. `scope` (the study's, `study_scope`) is where its
    plain keys (checkpoints) go: `store.scope`, read by `hpo.trial.checkpoint`.

    Raises:
        ConfigError: see `check_location`.
    """
    where = "--artifacts"
    location = check_location(location if location is not None
                              else default_location(storage_url, study_name), where=where)
    cloud = _split_cloud(location)
    if cloud is None:
        return _FolderStore(location, scope)
    scheme, bucket, prefix = cloud
    return _PrefixedStore(BUCKET_STORES[scheme].open(bucket), prefix, location, scope)


def check_bucket(location: str, *, where: str = "--artifacts") -> None:
    """A bucket location answers and takes a write, before the study exists: an empty probe
    object under the prefix is written and removed at once (nothing stays behind). A folder is
    not checked here (`hpo.run.preflight.check_writable_folder` does that).

    Raises:
        ConfigError: no such bucket, no endpoint answering, no credentials or no permission,
            one line with the client's reason.
    """
    cloud = _split_cloud(location)
    if cloud is None:
        return
    scheme, bucket, prefix = cloud
    kind = BUCKET_STORES[scheme]
    key = (f"{prefix}/" if prefix else "") + f".vcr-hpo-write-check-{uuid.uuid4().hex}"
    try:
        kind.probe(bucket, key)
    except Exception as exc:  # noqa: BLE001 (boto3, google-cloud, network: all one line)
        lines = str(exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
        raise ConfigError(f"{where}: must be a bucket this run can write, got {location!r} "
                          f"({reason}). {kind.fix}, or give a folder") from None


def study_location(study: optuna.Study, storage_url: str, location: str | None = None) -> str:
    """The location to use for `study`: the flag, else the one recorded by a run, else beside it."""
    if location is not None:
        return check_location(location)
    recorded = study.user_attrs.get(ATTR_ARTIFACTS)
    return str(recorded) if recorded else default_location(storage_url, study.study_name)


def study_scope(study: optuna.Study) -> str:
    """The folder of the study's own plain keys in its store; "" for a study that ran trials
    before scopes (its checkpoints keep their unscoped keys)."""
    return str(study.user_attrs.get(ATTR_SCOPE) or "")


def record_location(study: optuna.Study, location: str) -> str:
    """Store the location in the study (once per change) so later commands find it, and give a
    study none of whose trials has started its scope. Returns the study's scope.

    Two studies of one name beside two databases share the default folder (and any studies may
    share a bucket prefix): the scope, a random id, keeps their checkpoints apart. A study that
    ran trials before scopes keeps none: its checkpoints (a retry resumes from them) stay where
    they are.
    """
    from ..study import claim_lock

    if not study_scope(study) and not _started(study):
        with claim_lock(study):  # two first runs at once agree on one scope
            if not study_scope(study):  # `user_attrs` reads the storage each time
                study.set_user_attr(ATTR_SCOPE, uuid.uuid4().hex[:16])
    if study.user_attrs.get(ATTR_ARTIFACTS) != location:
        study.set_user_attr(ATTR_ARTIFACTS, location)
    return study_scope(study)


def _started(study: optuna.Study) -> bool:
    """Whether any trial of the study has started (only WAITING ones: none)."""
    from optuna.trial import TrialState

    return any(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))


def upload(
    trial_or_study: Any,
    store: ArtifactStore,
    path: str | os.PathLike,
    *,
    name: str | None = None,
    storage: optuna.storages.BaseStorage | None = None,
    mimetype: str | None = None,
) -> str:
    """Upload the file `path` as an artifact of a running trial or a study; returns its id.

    Args:
        name: the file name shown in the dashboard (default: the file's own).
        mimetype: default: the artifact kind's (`hpo.trial.artifact_kinds`), else guessed from
            the name (`.pt`: application/octet-stream).
        storage: needed only for a FrozenTrial (a finished trial cannot take artifacts: Optuna
            refuses to change it; upload while it runs, or to the study).
    """
    from optuna.artifacts import upload_artifact

    path = Path(path)
    kind = kind_of(name or path.name)
    if mimetype is None and kind is not None:
        mimetype = kind.mimetype
    elif mimetype is None and Path(name or path.name).suffix in _BINARY:
        mimetype = "application/octet-stream"
    if name is None or name == path.name:
        return upload_artifact(artifact_store=store, file_path=str(path),
                               study_or_trial=trial_or_study, storage=storage, mimetype=mimetype)
    with tempfile.TemporaryDirectory(prefix="vcr-hpo-upload-") as tmp:
        named = Path(tmp) / name
        try:
            os.link(path, named)
        except OSError:
            shutil.copyfile(path, named)
        return upload_artifact(artifact_store=store, file_path=str(named),
                               study_or_trial=trial_or_study, storage=storage, mimetype=mimetype)


def download(store: ArtifactStore, artifact_id: str, dest: str | os.PathLike) -> Path:
    """Write the artifact to `dest` (its folder is created; an existing file is replaced)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    try:
        with store.open_reader(artifact_id) as reader, open(tmp, "wb") as f:
            shutil.copyfileobj(reader, f)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def list_trial_artifacts(
    trial_or_study: Any, *, storage: optuna.storages.BaseStorage | None = None
) -> list[ArtifactMeta]:
    """The artifacts of a trial (Trial or FrozenTrial) or a study, in upload order.

    Unlike `optuna.artifacts.get_all_artifact_meta` this skips entries deleted the dashboard's
    way (metadata set to null).
    """
    import optuna
    from optuna.artifacts import ArtifactMeta

    from ..study import _optuna

    if isinstance(trial_or_study, optuna.Study):
        db = storage or _optuna.storage_of(trial_or_study)
        attrs = db.get_study_system_attrs(_optuna.study_id(trial_or_study))
    elif isinstance(trial_or_study, optuna.Trial):
        db = storage or _optuna.storage_of(trial_or_study.study)
        attrs = db.get_trial_system_attrs(_optuna.trial_id(trial_or_study))
    elif storage is not None:
        attrs = storage.get_trial_system_attrs(_optuna.trial_id(trial_or_study))
    else:
        attrs = trial_or_study.system_attrs  # a FrozenTrial carries its own (as loaded)
    out = []
    for key, raw in attrs.items():
        if not key.startswith(_optuna.ARTIFACT_ATTR_PREFIX):
            continue
        meta = json.loads(raw) if isinstance(raw, str) else raw
        if not meta:
            continue
        out.append(ArtifactMeta(artifact_id=meta["artifact_id"], filename=meta["filename"],
                                mimetype=meta["mimetype"], encoding=meta["encoding"]))
    return out


def find_artifact(trial_or_study: Any, filename: str, **kw: Any) -> ArtifactMeta | None:
    """The latest artifact of that file name, None when there is none."""
    found = [m for m in list_trial_artifacts(trial_or_study, **kw) if m.filename == filename]
    return found[-1] if found else None


def artifacts_of(trial_or_study: Any, kind: ArtifactKind, **kw: Any
                 ) -> list[tuple[dict[str, int], ArtifactMeta]]:
    """(fields, meta) of each artifact of this kind (`{"step": 3}`, `{"number": 7}`), in upload
    order; `kw` as `list_trial_artifacts`."""
    found = ((kind.match(m.filename), m) for m in list_trial_artifacts(trial_or_study, **kw))
    return [(fields, m) for fields, m in found if fields is not None]
