"""Names of the study user attrs vcr-hpo writes (the dashboard shows them)."""

from __future__ import annotations

#: Study user attrs vcr-hpo writes (the dashboard shows them).
ATTR_SPACE_YAML = "space_yaml"
ATTR_FINGERPRINT = "space_fingerprint"
ATTR_CANONICAL = "space_canonical"
ATTR_OVERRIDES = "overrides"
ATTR_VERSION = "vcr_hpo_version"
ATTR_BASELINE = "baseline_enqueued"
ATTR_TARGET = "n_trials"  # the latest run's target of finished trials
ATTR_REQUEUED = "requeued_interrupted"  # numbers of interrupted trials already queued again
