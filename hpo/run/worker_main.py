"""One worker process of `run_study(workers=N)`: runs its pickled `RunPlan`'s trial loop, exits.

Started by `hpo.run.parallel` as `python -m hpo.run.worker_main SPEC INDEX`; errors are one stderr line.
Exit codes: 0 done, 2 configuration error, 1 runtime error, 128 + signal when interrupted.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from ..errors import INPUT_ERRORS, RAISED_ERRORS
    from ..study import RunInterrupted
    from .api import run_study

    spec = pickle.loads(Path(argv[0]).read_bytes())
    index = int(argv[1])
    try:
        # The parent planned and checked everything and set CUDA_VISIBLE_DEVICES: this process
        # sees its one GPU (or the CPU) and runs its plan as it is.
        run_study(spec["plans"][index], worker_index=index,
                  allow_space_change=spec["allow_space_change"])
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
