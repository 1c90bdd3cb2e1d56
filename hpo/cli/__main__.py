"""`python -m hpo.cli`: the `vcr-hpo` console script where it is not installed."""

import sys

from . import main

sys.exit(main())
