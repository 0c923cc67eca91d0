"""Pausing Python's cyclic garbage collector around bulk work."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """Pause the cyclic collector while one batch (a decision drain, an import) is handled.

    Such a batch builds hundreds of thousands of objects that live until it ends (rows, facts,
    decisions, validated events); every full pass of the collector walks all of them and everything
    else alive, which cost a sixth of a large drain and of a file import. They are freed by
    reference counting when the batch ends, and the collector resumes then (left as it was found
    if someone else paused it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
