"""Running a study: the plan, the machine's checks, N worker processes, what each trial runs in.

`api` (`load_space`, `plan_run`, `run_study` -> `StudyResult`) is the entry; `preflight`
(facts about this machine) and `devices` (which GPUs, which worker gets which) check the plan;
`parallel` starts and watches N worker processes, each a `worker_main`; `isolation` runs each
trial in a forked child; `warm_start` and `portfolio` enqueue the first trials; `console` shows
progress and the summary. Modules import on use: this package re-exports nothing.
"""
