"""One torch thread for a test or a block of one: several test processes share two cores.

Test modules import it as `tests._threads` (pyproject's pytest `pythonpath`); tests/conftest.py
makes it the `one_thread` fixture (`pytestmark = pytest.mark.usefixtures("one_thread")`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread() -> Iterator[None]:
    """Torch computes on one thread inside the block; the thread count before comes back after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
