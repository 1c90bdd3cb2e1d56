"""Resource faults under the installed `vcr-hpo run`: out of memory, NaN loss, a read-only
studies folder, a full disk. Each has a clear outcome and loses nothing acknowledged."""

from __future__ import annotations

import hashlib
import subprocess
import time

import optuna
import pytest
from optuna.trial import TrialState

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

# Address-space cap for the out-of-memory case: torch (a CUDA build) maps ~3.4 GB at import and a
# 32 px trial stays within that; a 4096 px trial asks for ~1 GB blocks and the allocator refuses.
ADDRESS_SPACE = 5 << 30


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _trials(url: str, name: str = "rel"):
    return optuna.load_study(study_name=name, storage=url).trials


@pytest.fixture
def tmpfs(tmp_path, require):
    """mount(name, size) -> a fresh tmpfs folder; skips (fails in CI) where mounting is forbidden."""
    mounted = []

    def mount(name: str, size: str = "4M"):
        path = tmp_path / name
        path.mkdir()
        got = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                              str(path)], capture_output=True, text=True, check=False)
        require(f"a tmpfs mount ({got.stderr.strip()})", got.returncode == 0,
                "run as root with CAP_SYS_ADMIN, as on the CI machine")
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        subprocess.run(["umount", "-l", str(path)], check=False)


def _remount(path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(path)], check=True)


def test_out_of_memory_trial_is_infeasible_with_its_reason_and_the_study_goes_on(
        cli, fast_space, tmp_path):
    """Out of memory is learned as infeasible (hpo.constraints): COMPLETE with the worst value
    and a violated constraint, `fail_reason` kept, never best; the study goes on."""
    space = fast_space()
    space.write_text(space.read_text().replace(
        "  optimizer:",
        "  image_size: {type: categorical, choices: [32, 4096], default: 4096}\n  optimizer:",
    ).replace("  image_size: 32\n", ""))
    url = f"sqlite:///{tmp_path / 'oom.db'}"
    run = cli.run(["run", "--space", space, "--storage", url, "--n-trials", "3"], tmp_path,
                  limit_as=ADDRESS_SPACE, timeout=600)
    assert run.code == 0, run.err[-3000:]
    assert "Traceback" not in run.err
    trials = _trials(url)
    oom = [t for t in trials if "infeasible" in t.user_attrs]
    assert trials[0].params["image_size"] == 4096 and trials[0] in oom  # the baseline asks 4096 px
    for t in oom:
        assert t.state == TrialState.COMPLETE and t.values == [float("-inf")]
        assert t.system_attrs["constraints"] == [1.0]
        assert t.params["image_size"] == 4096
        assert "can't allocate memory" in t.user_attrs["fail_reason"]
    feasible = [t for t in trials if t not in oom and t.state in (TrialState.COMPLETE,
                                                                 TrialState.PRUNED)]
    assert feasible and all(t.params["image_size"] == 32 for t in feasible)
    assert len(oom) + len(feasible) == 3  # infeasible trials count toward n_trials
    best = optuna.load_study(study_name=trials[0].user_attrs.get("study", "rel"), storage=url)
    from hpo.study import top_trials

    assert top_trials(best, 1) and top_trials(best, 1)[0] not in oom


def test_nan_loss_prunes_the_trial_with_its_reason(cli, fast_space, tmp_path):
    space = fast_space()
    space.write_text(space.read_text()
                     .replace("  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true, default: 3.0e-3}\n", "")
                     .replace("  optimizer: {type: categorical, choices: [sgd, adam]}\n", "")
                     .replace("  device: cpu", "  device: cpu\n  lr: 1.0e+6\n  optimizer: sgd"))
    url = f"sqlite:///{tmp_path / 'nan.db'}"
    got = cli.run(["run", "--space", space, "--storage", url, "--n-trials", "2"], tmp_path,
                  timeout=300)
    assert got.code == 0, got.err
    assert "Traceback" not in got.err
    trials = _trials(url)
    assert [t.state for t in trials] == [TrialState.PRUNED, TrialState.PRUNED]
    for t in trials:
        assert "NonFiniteLossError" in t.user_attrs["fail_reason"]
        assert f"trial {t.number} PRUNED" in got.err


def test_read_only_studies_folder(cli, campaign, fast_space, tmp_path, tmpfs):
    space = fast_space()
    studies = tmpfs("studies")
    _remount(studies, "ro")
    # a new study cannot be created: one line, exit 2, nothing anywhere
    got = cli.run(["run", "--space", space], tmp_path)
    assert got.code == 2 and len(got.err_lines) == 1, got.err
    # caught by the write-location check before storage is touched (hpo.run.preflight)
    assert "--storage: must be a folder this run can write" in got.err, got.err
    assert "Read-only file system" in got.err
    assert list(studies.iterdir()) == []

    # an existing study on a file system that turns read-only
    _remount(studies, "rw")
    assert cli.run(["run", "--space", space, "--n-trials", "2", "--quiet"], tmp_path).code == 0
    acknowledged: dict = {}
    before = campaign.audit(f"sqlite:///{studies / 'rel.db'}", "rel", _load(space), 2, acknowledged)
    assert before.finished == 2 and before.problems == []
    _remount(studies, "ro")
    digest = _digest(studies / "rel.db")
    got = cli.run(["run", "--space", space, "--n-trials", "4"], tmp_path)
    # refused before storage is opened: the study file's folder is not writable (hpo.run.preflight)
    assert got.code == 2 and len(got.err_lines) == 1, got.err
    assert "--storage: must be a folder this run can write" in got.err, got.err
    assert "Read-only file system" in got.err
    assert _digest(studies / "rel.db") == digest
    status = cli.run(["status"], tmp_path)  # reading still works
    assert status.code == 0 and "finished 2/" in status.out, status.err

    _remount(studies, "rw")  # fixed: the same command resumes and keeps the first two trials
    got = cli.run(["run", "--space", space, "--n-trials", "4", "--quiet"], tmp_path)
    assert got.code == 0, got.err
    after = campaign.audit(f"sqlite:///{studies / 'rel.db'}", "rel", _load(space), 2, acknowledged)
    assert after.lost == after.changed == after.problems == [] and after.finished == 4


def _load(space):
    from hpo.space import load_search_space

    return load_search_space(space)


def test_full_disk_during_a_run(cli, campaign, fast_space, tmp_path, tmpfs):
    space = fast_space()
    disk = tmpfs("disk", size="2M")
    url = f"sqlite:///{disk / 'full.db'}"
    proc = cli.spawn(["run", "--space", space, "--storage", url, "--n-trials", "1000"], tmp_path)
    deadline = time.monotonic() + 300
    while not campaign.acknowledged_in_output(proc.stderr()) and time.monotonic() < deadline:
        assert proc.alive(), proc.stderr()
        time.sleep(0.2)
    with open(disk / "filler", "wb") as fh:  # take every free block of the tmpfs
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    code = proc.wait(timeout=300)
    err = proc.stderr()
    printed = campaign.acknowledged_in_output(err)
    assert code == 1, err[-3000:]
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"error: {url}: the disk holding the database is full, got 'database or disk is full'. "
        "Fix it and run the same command again: finished trials are kept and any interrupted "
        "trial is retried")
    acknowledged: dict = {}
    full = campaign.audit(url, "rel", _load(space), 2, acknowledged, printed)
    assert full.integrity == "ok" and full.lost == [] and full.problems == []
    assert full.finished >= len(printed) >= 1

    (disk / "filler").unlink()  # space again: resume to two more than the fault left
    time.sleep(3)  # past the 2 s grace: until then the dead run's trial counts as running elsewhere
    target = full.finished + 2
    got = cli.run(["run", "--space", space, "--storage", url, "--n-trials", str(target), "--quiet"],
                  tmp_path, timeout=600)
    assert got.code == 0, got.err[-3000:]
    after = campaign.audit(url, "rel", _load(space), 2, acknowledged)
    assert after.integrity == "ok" and after.lost == after.changed == after.problems == []
    assert after.finished == target and after.count("RUNNING") == 0
