"""The `omnicrm` command as a shell runs it: a separate process, from a folder of the caller's choice,
with only the OMNICRM_* variables given (none inherited from the test run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import omnicrm

SRC = Path(omnicrm.__file__).resolve().parents[1]  # the code under test, whichever folder runs it


def shell_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICRM_")}
    env["PYTHONPATH"] = str(SRC)
    env.update(extra)
    return env


def omnicrm_cmd(
    *args: str, cwd: Path, input: str | None = None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`omnicrm ARGS` run from `cwd` with these OMNICRM_* variables only."""
    return subprocess.run(
        [sys.executable, "-m", "omnicrm", *args],
        cwd=cwd,
        env=shell_env(**env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
