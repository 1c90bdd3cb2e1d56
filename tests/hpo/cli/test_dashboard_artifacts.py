"""Headless chromium on the real `vcr-hpo dashboard`: a trial page shows its confusion matrix."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess

import optuna
import pytest

from hpo.study import _optuna
from hpo.trial.artifacts import artifact_store, download, list_trial_artifacts, study_location
from tests._net import free_port, http_get, wait_until_serving

pytestmark = [pytest.mark.slow, pytest.mark.browser,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

VCR = shutil.which("vcr-hpo")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def dashboard(tiny_study, tmp_path, require):
    """`vcr-hpo dashboard` on the tiny study (made by `vcr-hpo run`, artifacts beside it)."""
    require("the installed vcr-hpo", VCR is not None, "pip install -e .")
    require("chromium", CHROMIUM is not None, "apt-get install chromium (.ci/run does)")
    url, name, _ = tiny_study
    port = free_port()
    log = open(tmp_path / "log", "w+")  # noqa: SIM115 - closed in the finally below
    proc = subprocess.Popen([VCR, "dashboard", "--storage", url, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/api/meta", proc, log)
        yield base, url, optuna.load_study(study_name=name, storage=url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_trial_page_shows_the_confusion_matrix_artifact(dashboard, tmp_path):
    base, url, study = dashboard
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=20000", "--dump-dom",
         f"{base}/dashboard/studies/{_optuna.study_id(study)}/trials"],
        check=False, capture_output=True, text=True, timeout=180,
        env={**os.environ, "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    first = study.trials[0]  # the trial list page shows the first trial's detail
    assert f"Trial {first.number}" in re.sub(r"<[^>]+>", " ", dom)
    images = {html.unescape(alt): html.unescape(src) for alt, src in re.findall(
        r'<img[^>]*alt="([^"]+)"[^>]*src="([^"]+)"', dom)}
    assert {"confusion_matrix.png", "learning_curves.png"} <= set(images), images
    assert "confusion_matrix.json" in dom
    # the image the page shows is the trial's own confusion matrix, as uploaded
    store = artifact_store(url, study.study_name, study_location(study, url))
    (meta,) = [m for m in list_trial_artifacts(first) if m.filename == "confusion_matrix.png"]
    assert images["confusion_matrix.png"].endswith(meta.artifact_id)
    shown = http_get(base + images["confusion_matrix.png"])
    assert shown[:8] == b"\x89PNG\r\n\x1a\n"
    assert shown == download(store, meta.artifact_id, tmp_path / "cm.png").read_bytes()
