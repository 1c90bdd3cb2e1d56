"""`vcr-hpo validate --space F`: the table and study summary (exit 0) or every error (exit 2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cli import main
from hpo.run.portfolio import PORTFOLIO_FILE
from hpo.space import load_search_space

ROOT = Path(__file__).resolve().parents[3]
SPACES = sorted(p for p in (ROOT / "search_spaces").glob("*.yaml") if p.name != PORTFOLIO_FILE)


def _table(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("name "))
    return {line.split()[0]: line for line in lines[head + 2:] if line.strip()}


@pytest.mark.parametrize("path", SPACES, ids=[p.name for p in SPACES])
def test_validate_shipped_space_prints_table(path, capsys):
    assert main(["validate", "--space", str(path)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    space = load_search_space(path)
    rows = _table(out)
    assert list(rows) == [p.name for p in space.params]
    for row in space.describe():
        for cell in row:
            assert cell in rows[row[0]]
    st = space.study
    assert f"study:    {st.name}: {st.directions[0]} {st.metrics[0]}" in out
    assert f"sampler:  {st.sampler.type}(" in out
    assert f"fingerprint: {space.fingerprint[:16]}" in out


def test_validate_bare_name_from_search_spaces(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "--space", "hyperparameters.yaml"]) == 0
    out = capsys.readouterr().out
    rows = _table(out)
    assert "focal_gamma" in rows and "loss_fn=focal" in rows["focal_gamma"]
    assert "momentum" in rows and "optimizer=sgd" in rows["momentum"]
    assert "sampler:  GP(n_startup_trials=4, seed=42)" in out and "pruner:   none" in out
    assert "trials:   each trains the compute of the default's epochs" in out
    assert ("start-up: neighbours: 7 of 7 one-change neighbours of trial 0, queued once per "
            "study after it: backbone resnet10t, lr 0.000720843, batch_size 64,") in out
    assert "start-up: portfolio" not in out  # off in the demo


def test_validate_names_the_start_up(tmp_path, capsys):
    """vcr_full.yaml's neighbours as a space file spells them; a portfolio's line beside them."""
    from hpo.space import shipped_spaces

    full = next(s for s in shipped_spaces() if s.name == "vcr_full.yaml")
    text = Path(str(full.resource)).read_text().replace("  # portfolio: 4\n", "  portfolio: 2\n")
    (tmp_path / "f.yaml").write_text(text)
    assert main(["validate", "--space", str(tmp_path / "f.yaml")]) == 0
    out = capsys.readouterr().out
    assert "start-up: portfolio: 2 of 2 entries enqueued after trial 0" in out
    assert ("start-up: neighbours: 9 of 9 one-change neighbours of trial 0, queued once per "
            "study after it: backbone resnet34, freeze_backbone true, fusion simple_concat,") in out


def test_validate_says_what_a_pruner_step_counts(capsys):
    """vcr_full.yaml: equal-compute trials and rungs in epochs of the default's compute."""
    from hpo.space import shipped_spaces

    full = next(s for s in shipped_spaces() if s.name == "vcr_full.yaml")
    assert main(["validate", "--space", str(full.resource)]) == 0
    out = capsys.readouterr().out
    assert ("pruner:   SuccessiveHalving(min_resource=1, reduction_factor=4); steps: epochs of "
            "the default's compute (fidelity: compute)") in out
    assert "trials:   each trains the compute of the default's epochs" in out


def test_validate_names_the_choice_rule(tmp_path, capsys):
    import yaml

    from hpo.space import shipped_spaces

    demo = next(s for s in shipped_spaces() if s.name == "hyperparameters.yaml")
    raw = yaml.safe_load(demo.read_text())
    raw["study"]["choose"] = "cheapest_within_1se"
    path = tmp_path / "choose.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["validate", "--space", str(path)]) == 0
    out = capsys.readouterr().out
    assert "to train: the cheapest trial within one paired standard error of the best " \
           "(choose: cheapest_within_1se)" in out
    raw["study"]["choose"] = "best"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["validate", "--space", str(path)]) == 0
    assert "to train:" not in capsys.readouterr().out


def test_validate_missing_file_exits_2(tmp_path, capsys):
    assert main(["validate", "--space", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "search space file not found" in err


def test_validate_prints_every_error(tmp_path, capsys):
    f = tmp_path / "two.yaml"
    f.write_text("hyperparameters:\n  lr: {type: float, low: 0.1, high: 0.01}\n  epoch: {type: int, low: 1, high: 2}\n")
    assert main(["validate", "--space", str(f)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{f}: hyperparameters.lr.high (line 2): must be greater than low")
    assert err[1].startswith(f"{f}: hyperparameters.epoch (line 3): not a trainer field")
    assert err[2] == "2 errors; nothing was written to any study"


def test_validate_debug_shows_traceback(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("hyperparameters: {}\n")
    from hpo.space import SearchSpaceError

    with pytest.raises(SearchSpaceError):
        main(["validate", "--space", str(f), "--debug"])


def test_validate_missing_space_option_is_usage_error(capsys):
    assert main(["validate"]) == 2
    assert "--space" in capsys.readouterr().err


@pytest.mark.slow
def test_installed_console_script_validates(tmp_path, installed_vcr_hpo):
    """As a user runs it: the installed `vcr-hpo` script, from another folder."""
    cmd = [installed_vcr_hpo]
    ok = subprocess.run([*cmd, "validate", "--space", "vcr_full.yaml"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=300, check=False)
    assert ok.returncode == 0, ok.stderr
    assert "vcr-full" in ok.stdout and "loss_fn=smooth_modulation" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("hyperparameters:\n  lr: {type: float, low: '1e-5', high: 0.1}\n")
    res = subprocess.run([*cmd, "validate", "--space", str(bad)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "hyperparameters.lr.low (line 2): must be a number, not a quoted string" in res.stderr


@pytest.mark.slow
def test_output_into_a_closed_pipe_exits_quietly(tmp_path):
    """`vcr-hpo validate ... | head -1`: the reader has gone; exit 141, no traceback."""
    import os

    read, write = os.pipe()
    os.close(read)  # nobody will read: every write fails with EPIPE
    try:
        res = subprocess.run([sys.executable, "-m", "hpo.cli", "validate", "--space", "vcr_full.yaml"],
                             cwd=tmp_path, stdout=write, stderr=subprocess.PIPE, timeout=120, check=False)
    finally:
        os.close(write)
    assert res.returncode == 141 and b"Traceback" not in res.stderr, res.stderr
    assert b"Exception ignored" not in res.stderr
