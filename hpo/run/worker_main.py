"""One worker process of `run_study(workers=N)`: runs the pickled plan's trial loop, exits.

Started by `hpo._workers` as `python -m hpo._worker SPEC INDEX`; errors are one stderr line.
Exit codes: 0 done, 2 configuration error, 1 runtime error, 128 + signal when interrupted.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from ..errors import INPUT_ERRORS, RAISED_ERRORS
    from ..study import RunInterrupted
    from .api import plan_run, run_study

    spec = pickle.loads(Path(argv[0]).read_bytes())
    try:
        allow, threads = spec.pop("allow_space_change"), spec.pop("threads")
        isolation = spec.pop("trial_isolation", None)
        plan = plan_run(spec.pop("space"), preflight=False, **spec)  # the parent checked this machine
        # The parent set CUDA_VISIBLE_DEVICES: this process sees its one GPU (or the CPU).
        run_study(plan.space, plan=plan, worker_index=int(argv[1]), allow_space_change=allow,
                  threads=threads, trial_isolation=isolation)
    except RunInterrupted as exc:
        return exc.exit_code
    except INPUT_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RAISED_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
