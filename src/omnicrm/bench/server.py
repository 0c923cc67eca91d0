"""`omnicrm serve` as a process of its own for the REST and latency benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(database_url: str, workers: int, port: int | None = None, **settings: str) -> Iterator[int]:
    """Run `omnicrm serve` on `database_url` with `workers` API workers (and `settings`, as
    OMNICRM_* variables) on a free port; yield the port once /healthz answers, stop it afterwards."""
    port = port or free_port()
    env = {
        **os.environ,
        "OMNICRM_DATABASE_URL": database_url,
        "OMNICRM_PORT": str(port),
        **{f"OMNICRM_{name.upper()}": value for name, value in settings.items()},
    }
    server = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "omnicrm", "serve", "--port", str(port), "--workers", str(workers)], env=env
    )
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=10)
