#!/usr/bin/env bash
# A GPU session on an offline machine, in one call: the packages it lacks from a folder of
# wheels, then every GPU check, each bounded (bench/_step.sh) and written to its own file.
#
#   bash bench/gpu_session.sh OUT_DIR [WHEEL_DIR]
#
# WHEEL_DIR: wheels of what the machine's Python lacks (optuna, SQLAlchemy, alembic, Mako,
# colorlog, cmaes, greenlet, timm, ...), installed with --no-deps into a private folder put
# first on PYTHONPATH. Outputs: OUT_DIR/gpu_check.txt (bench/gpu_check.sh), demo_cuda.txt (the
# demo space on --device cuda, then status, best and every trial's epochs and device),
# pytest_cuda.txt (the tests that take CUDA paths when a GPU is visible), session.txt (times).
# No pipes: a call killed from outside keeps what each file holds so far.
set -uo pipefail
out=${1:?usage: bash bench/gpu_session.sh OUT_DIR [WHEEL_DIR]}
wheels=${2:-}
cd "$(dirname "$0")/.."
mkdir -p "$out"
log="$out/session.txt"
t0=$SECONDS
py=$(command -v python3 || command -v python)
if [ -n "$wheels" ]; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/vcr-site "$wheels"/*.whl >>"$log" 2>&1 || { echo "wheels failed" >>"$log"; exit 9; }
  export PYTHONPATH="/tmp/vcr-site${PYTHONPATH:+:$PYTHONPATH}"
fi
# `python` must be this interpreter, also inside a virtual environment: a wrapper, not a link
# (a link to a venv's python starts the base interpreter without the venv's packages)
mkdir -p /tmp/vcr-bin
printf '#!/bin/sh\nexec %s "$@"\n' "$py" >/tmp/vcr-bin/python && chmod +x /tmp/vcr-bin/python
export PATH="/tmp/vcr-bin:$PATH" PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 \
  PYTHONFAULTHANDLER=1 HF_HUB_OFFLINE=1 VCR_HPO_CACHE=${VCR_HPO_CACHE:-/tmp/vcr-cache}
source bench/_step.sh
echo "python $py; setup $((SECONDS - t0)) s" >>"$log"

GPU_CHECK_STEP_S=${GPU_CHECK_STEP_S:-120} step bash bench/gpu_check.sh >"$out/gpu_check.txt" 2>&1
echo "gpu_check done at $((SECONDS - t0)) s" >>"$log"

d=$(mktemp -d)
{
  echo "== the demo space on CUDA"
  GPU_CHECK_STEP_S=90 step python -m hpo.cli run --space search_spaces/hyperparameters.yaml \
    --device cuda --storage "sqlite:///$d/demo.db" --artifacts "$d/art"
  echo "wall $((SECONDS - t0)) s since the session began"
  GPU_CHECK_STEP_S=60 step python -m hpo.cli status --storage "sqlite:///$d/demo.db"
  GPU_CHECK_STEP_S=60 step python -m hpo.cli best --storage "sqlite:///$d/demo.db" -o "$d/best.yaml"
  GPU_CHECK_STEP_S=60 step python - "$d/demo.db" <<'PY'
import sys

import optuna

url = f"sqlite:///{sys.argv[1]}"
for summary in optuna.get_all_study_summaries(url):
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    print("step_costs:", study.user_attrs.get("step_costs"))
    for t in study.trials:
        a = t.user_attrs
        print(f"  #{t.number} {t.state.name} value={t.value} trial_epochs={a.get('trial_epochs')} "
              f"step_cost={a.get('step_cost')} device={a.get('device')} "
              f"epoch_s={a.get('epoch_seconds')} params={t.params}")
PY
} >"$out/demo_cuda.txt" 2>&1
echo "demo done at $((SECONDS - t0)) s" >>"$log"

GPU_CHECK_STEP_S=${PYTEST_STEP_S:-150} step python -m pytest -q -m "" -p no:cacheprovider \
  tests/hpo/train tests/hpo/run/test_devices.py tests/hpo/run/test_preflight.py \
  tests/hpo/trial/test_equal_compute.py tests/hpo/trial/test_objective.py \
  tests/hpo/test_constraints.py >"$out/pytest_cuda.txt" 2>&1
echo "pytest done at $((SECONDS - t0)) s" >>"$log"
tail -n 3 "$out/pytest_cuda.txt" >>"$log"
cat "$log"
