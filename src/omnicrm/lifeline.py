"""A child process that ends with its parent, however the parent ends - even killed outright (SIGKILL),
with no chance to stop its children. Without it a partition's process (`catchup.py`) outlived a killed
`omnicrm decide` or `omnicrm worker`: it finished its share, then waited on the pool's pipe for ever,
holding its memory (150-500 MB).

On Linux the kernel does it: `prctl(PR_SET_PDEATHSIG, SIGKILL)` kills the child when the *thread*
that started it ends, so the processes must be started by a thread that outlives them (the
pool's owner, which waits for them: `catchup.catch_up`). Elsewhere a thread of the child polls its
parent's pid. Killed, the child leaves what a dead process leaves: its transaction rolled back, its
partition's offset behind for the next drain to finish.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 0.5  # where the kernel does not tell: how often the child looks for its parent


def die_with(parent: int) -> None:
    """In a child process, first thing: kill it when `parent` (the pid that started it) ends."""
    if not _kernel_kills_on_parent_death():
        threading.Thread(target=_watch, args=(parent,), name="omnicrm-lifeline", daemon=True).start()
    if os.getppid() != parent:  # the parent ended before the tie was made: nobody would signal
        _die()


def _kernel_kills_on_parent_death() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # the C library the interpreter already has loaded
        done = libc.prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), *(ctypes.c_ulong(0),) * 3)
    except (OSError, AttributeError):
        return False
    return int(done) == 0


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    _die()


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
