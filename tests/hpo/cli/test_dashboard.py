"""The real optuna-dashboard (`vcr-hpo dashboard`) on a study made by `vcr-hpo run`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import optuna
import pytest
import torch

from backbones import create_backbone
from hpo.cli import main
from tests._net import free_port, http_get, wait_until_serving

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]

VCR = shutil.which("vcr-hpo")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def dashboard(tiny_study, tmp_path_factory, require):
    """`vcr-hpo dashboard` serving the tiny study on a free loopback port."""
    require("vcr-hpo on PATH", VCR is not None, "pip install -e .")
    url, name, _ = tiny_study
    port = free_port()
    log = open(tmp_path_factory.mktemp("dash") / "log", "w+")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([VCR, "dashboard", "--storage", url, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(f"{base}/api/meta", proc, log)
        summaries = json.loads(http_get(f"{base}/api/studies"))["study_summaries"]
        (study_id,) = [s["study_id"] for s in summaries if s["study_name"] == name]
        yield base, study_id, optuna.load_study(study_name=name, storage=url)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _channels(backbone: str) -> dict[str, int]:
    with torch.device("meta"):
        return create_backbone(backbone).get_feature_channels()


def test_api_serves_feature_channels_intermediate_values_and_metric_names(dashboard):
    base, study_id, study = dashboard
    data = json.loads(http_get(f"{base}/api/studies/{study_id}"))
    assert data["objective_names"] == ["val_acc"]
    assert len(data["trials"]) == len(study.trials) == 3
    for served, trial in zip(sorted(data["trials"], key=lambda t: t["number"]), study.trials):
        attrs = {a["key"]: a["value"] for a in served["user_attrs"]}
        assert json.loads(attrs["feature_channels"]) == _channels(trial.params["backbone"])
        steps = {v["step"]: v["value"] for v in served["intermediate_values"]}
        assert steps == trial.intermediate_values and sorted(steps) == [0, 1]
    keys = {a["key"] for a in data["user_attrs"]}
    assert {"space_yaml", "space_fingerprint", "vcr_hpo_version"} <= keys


@pytest.mark.browser
def test_trial_page_renders_feature_channels_and_intermediate_values(dashboard, tmp_path, require):
    require("chromium", CHROMIUM is not None, "apt-get install chromium (.ci/run does)")
    base, study_id, study = dashboard
    out = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=20000", "--dump-dom", f"{base}/dashboard/studies/{study_id}/trials"],
        check=False, capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-2000:]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", out.stdout))
    first = study.trials[0]  # the trial list page shows the first trial's detail
    channels = json.dumps(_channels(first.params["backbone"]))
    assert f"feature_channels {channels}" in text, text[:3000]
    values = " ".join(f"{step} {value!r}" for step, value in sorted(first.intermediate_values.items()))
    assert f"Intermediate Values {values}" in text, text[:3000]
    assert "Trial 0" in text and "Trial 2" in text


def test_dashboard_refuses_a_public_host_without_the_flag(capsys, tiny_study):
    url, _, _ = tiny_study
    assert main(["dashboard", "--storage", url, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "without authentication" in err[0] and "--allow-remote" in err[0]
