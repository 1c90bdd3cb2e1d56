#!/bin/bash
# One study, many nodes: every task of this SLURM array runs the same `vcr-hpo run` against one
# shared storage. n_trials is the study's total, so the tasks stop together once it is reached,
# and a task that starts late (or is resubmitted) only tops the study up. Submit with:
#
#   sbatch --array=0-15 docs/slurm.sh            # 16 nodes; add tasks at any time, same command
#
# STORAGE: PostgreSQL for a few nodes (tens of workers in all), or the gRPC proxy for hundreds
# of workers (docs/guide/clusters.md). Start the proxy once, on a node the tasks can reach:
#
#   vcr-hpo storage-proxy --storage postgresql://hpo:PASS@db:5432/hpo --host 0.0.0.0 --port 13000
#
#SBATCH --job-name=vcr-hpo
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gres=gpu:4                 # one worker per GPU with --workers auto
#SBATCH --cpus-per-task=32
#SBATCH --time=24:00:00
#SBATCH --requeue                    # a preempted task is requeued: its interrupted trial is retried
#SBATCH --signal=B:TERM@120          # SIGTERM 2 min before the limit: the trial is marked interrupted
#SBATCH --output=logs/%x-%A_%a.out

set -euo pipefail
STORAGE=${STORAGE:-grpc://proxy-node:13000}    # or postgresql://hpo:PASS@db:5432/hpo
SPACE=${SPACE:-search_spaces/hyperparameters.yaml}

# `exec` so that SLURM's SIGTERM reaches vcr-hpo itself, which marks the running trials
# interrupted (they are queued again) and exits with 128+15.
exec vcr-hpo run --space "$SPACE" --storage "$STORAGE" --workers auto
