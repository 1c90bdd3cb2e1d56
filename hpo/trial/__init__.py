"""One trial: suggested params -> TrainConfig -> trained, reported, pruned or finished.

`objective` is the trial; `memory` checks that a config fits before it trains (out of memory
reads as an infeasible result, `hpo.constraints`); `subepoch` and `fidelity` say where a trial
reports; `checkpoint` saves and resumes it; `figures` and `record_store` write what it leaves
behind (curves, confusion matrix, per-image validation records) into the study's artifact store
(`artifacts`), each file a kind of `artifact_kinds`. Modules import on use: this package
re-exports nothing.
"""
