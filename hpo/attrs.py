"""The user-attr keys vcr-hpo writes on studies and trials (the dashboard shows them): one home."""

from __future__ import annotations

# Study user attrs.
ATTR_SPACE_YAML = "space_yaml"
ATTR_FINGERPRINT = "space_fingerprint"
ATTR_CANONICAL = "space_canonical"
ATTR_OVERRIDES = "overrides"
ATTR_VERSION = "vcr_hpo_version"
ATTR_BASELINE = "baseline_enqueued"
ATTR_TARGET = "n_trials"  # the latest run's target of finished trials
ATTR_REQUEUED = "requeued_interrupted"  # numbers of interrupted trials already queued again
ATTR_STEP_COSTS = "step_costs"  # s per training image by cost key (hpo.trial.equal_compute)

# Trial user attrs: where a trial came from.
BASELINE = "baseline"  # the enqueued baseline trial (the space's defaults)
PORTFOLIO = "portfolio"  # "portfolio #k": the shipped start-up portfolio entry it came from
NEIGHBOUR = "neighbour"  # "neighbours #k": the one-change neighbour of trial 0 it tries
WARM_START = "warm_start"  # "SOURCE #rank": enqueued from an earlier study's top-k
RETRY_OF = "retry_of"  # number of the trial this one repeats with the same params
DUPLICATE_OF = "duplicate_of"  # the claim key of a trial two workers queued at once (not run)

# Trial user attrs: why a trial ended as it did.
FAIL_REASON = "fail_reason"  # one line: why the trial FAILed
INTERRUPTED = "interrupted"  # the signal that stopped it; the trial is queued again on resume
INFEASIBLE = "infeasible"  # why it is infeasible (out of memory): COMPLETE, -inf, constraint > 0
STALL_TRACEBACK = "stall_traceback"  # the stacks of a forked trial that stalled
TRIAL_PROCESS_EXIT = "trial_process_exit"  # the exit code of a forked trial that died

# Trial user attrs: what the model and the machine were.
FEATURE_CHANNELS = "feature_channels"
FEATURE_STRIDES = "feature_strides"
NUM_PARAMS = "num_params"
DEVICE = "device"
GPU = "gpu"  # the physical GPU id (hpo.run.devices)
#: The environment variable through which a GPU worker's physical id reaches its trials (set by
#: hpo.run.devices, read by the objective into the GPU attr).
GPU_ENV = "VCR_HPO_GPU"
VERSIONS = "versions"
MEMORY_PREFLIGHT = "memory_preflight"

# Trial user attrs: how training went.
BEST_EPOCH = "best_epoch"
BEST_METRICS = "best_metrics"
CONFUSION = "confusion"
PER_CLASS_RECALL = "per_class_recall"
EPOCH_SECONDS = "epoch_seconds"
TRIAL_EPOCHS = "trial_epochs"  # epochs it trained when not the config's (trial_length: compute)
STEP_COST = "step_cost"  # s per training image of its config (trial_length: compute)
IMAGES_PER_S = "images_per_s"
REPORT_SECONDS = "report_seconds"

# Trial user attrs: checkpoints and files.
RESUME_NOTE = "resume_note"
RESUMED_FROM_EPOCH = "resumed_from_epoch"
RESUMED_FROM_TRIAL = "resumed_from_trial"
CHECKPOINT_IDENTITY = "checkpoint_identity"  # what its checkpoints match; weights are kept only from one
CHECKPOINT_ERROR = "checkpoint_error"
ARTIFACT_ERROR = "artifact_error"
