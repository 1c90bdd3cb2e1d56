"""One trial: suggested params -> TrainConfig -> trained, reported, pruned or finished.

`objective` is the trial; `memory` (the preflight) and `constraints`' rule make out of memory an
infeasible result; `subepoch` and `fidelity` say where a trial reports; `checkpoint` saves and
resumes it; `figures` and `record_store` write what it leaves behind (curves, confusion matrix,
per-image validation records) into the study's artifact store (`artifacts`). Modules import on
use: this package re-exports nothing.
"""
