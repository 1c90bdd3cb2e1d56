#!/usr/bin/env bash
# GPU check, one script for a machine with CUDA: prints everything to stdout; save it with
#   bash bench/gpu_check.sh | tee bench/results/gpu_check.txt
#
# 1. the device plan: two workers on two GPUs, or two on one GPU with --workers-per-gpu 2;
# 2. a study on those workers with AMP on whose space holds an out-of-memory config
#    (resnet50 at 384 px, batch 2048): it must end COMPLETE-infeasible (constraint [1.0],
#    value -inf, fail_reason) in seconds through the memory preflight, never be best, and each
#    trial must record the physical GPU that ran it;
# 3. the same with trial_isolation: process (each trial a forked child of a CUDA-free parent);
# 4. bench/gpu.py: fp32 vs AMP vs AMP + channels_last, and the preflight per batch size.
#
# Each step runs under its own time limit (GPU_CHECK_STEP_S, default 180 s): a step that hangs
# is ended with SIGABRT, so Python's faulthandler prints where every process of it stood, and
# the script goes on with the next step (one hang must not cost the rest of a short GPU lease).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 PYTHONFAULTHANDLER=1 \
  PYTHONUNBUFFERED=1
source bench/_step.sh  # step CMD...: one step under GPU_CHECK_STEP_S
vcr=(vcr-hpo); command -v vcr-hpo >/dev/null || vcr=(python -m hpo.cli)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== machine"
date -u
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv || true
step python -c "import torch, optuna; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'optuna', optuna.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

n=$(timeout -k 5 60 python -c "from hpo.run.devices import visible_gpus; print(len(visible_gpus()))" || echo 0)
echo "visible GPUs: $n"
if [ "$n" -ge 2 ]; then gpu_args=(--workers 2 --gpus 0,1); else gpu_args=(--workers 2 --workers-per-gpu 2); fi
if [ "$n" -lt 1 ]; then echo "no CUDA GPU visible: nothing to check"; exit 1; fi

echo
echo "== device plan for ${gpu_args[*]}"
step python - "${gpu_args[@]}" <<'PY'
import sys
from hpo.run.devices import device_plan, parse_gpus
a = sys.argv[1:]
workers = int(a[a.index("--workers") + 1])
gpus = parse_gpus(a[a.index("--gpus") + 1]) if "--gpus" in a else None
per = int(a[a.index("--workers-per-gpu") + 1]) if "--workers-per-gpu" in a else None
for p in device_plan(workers, gpus, per, "cuda"):
    print(" ", p.describe(), p.env())
PY

cat > "$tmp/gpu.yaml" <<'YAML'
study:
  name: gpu-check
  metric: val_acc
  n_trials: 8
  sampler: {type: TPE, seed: 0, n_startup_trials: 4}
  pruner: null
hyperparameters:
  batch_size: {type: categorical, choices: [32, 64, 2048]}
  lr: {type: float, low: 0.0003, high: 0.003, log: true}
fixed:
  backbone: resnet50
  image_size: 384
  epochs: 1
  synthetic_size: 2300
  max_train_samples: 2048
  amp: true
  channels_last: true
  pretrained: false
YAML

report() {
step python - "$1" <<'PY'
import math, sys
import optuna
from hpo.constraints import is_infeasible
from hpo.study import top_trials
study = optuna.load_study(study_name="gpu-check", storage=sys.argv[1])
rows = sorted(study.trials, key=lambda t: t.number)
for t in rows:
    a = t.user_attrs
    v = t.values[0] if t.values else None
    print(f"  #{t.number} {t.state.name:8} batch={t.params.get('batch_size')} "
          f"value={v} infeasible={a.get('infeasible')} constraints={t.constraints} "
          f"gpu={a.get('gpu')} device={a.get('device')} preflight={a.get('memory_preflight')} "
          f"epoch_s={a.get('epoch_seconds')} fail_reason={a.get('fail_reason')}")
best = top_trials(study, 1)
print("  best:", best[0].number if best else None,
      "(infeasible!)" if best and is_infeasible(best[0]) else "")
bad = [t.number for t in rows if t.params.get("batch_size") == 2048 and not is_infeasible(t)]
print("  batch 2048 trials not infeasible:", bad or "none")
gpus = sorted({t.user_attrs.get("gpu") for t in rows if t.user_attrs.get("gpu") is not None})
print("  GPUs that ran trials:", gpus)
assert not best or not is_infeasible(best[0])
assert all(math.isinf(t.values[0]) for t in rows if is_infeasible(t))
PY
}

for isolation in none process; do
  echo
  echo "== study: ${gpu_args[*]} --device cuda --trial-isolation $isolation (AMP on)"
  url="sqlite:///$tmp/gpu-$isolation.db"
  start=$(date +%s)
  step "${vcr[@]}" run --space "$tmp/gpu.yaml" --storage "$url" --device cuda "${gpu_args[@]}" \
    --trial-isolation "$isolation" --quiet
  echo "  wall: $(( $(date +%s) - start )) s"
  step "${vcr[@]}" status --storage "$url"
  report "$url"
done

echo
echo "== bench/gpu.py (fp32 / AMP / AMP + channels_last) and the memory preflight"
step python bench/gpu.py --backbones resnet18 resnet50 --image-sizes 224 --batch-size 64 \
  --train 1024 --val 256 --epochs 2 --preflight
