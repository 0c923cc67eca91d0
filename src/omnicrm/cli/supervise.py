"""`omnicrm serve` runs the decision worker as a child process beside the API workers (still one
command, no broker); `OMNICRM_DECIDER_PROCESS=false` puts it back as a thread inside each API worker.

A worker thread shares its API process's interpreter lock with the requests; a process does not, and
each commit of new events rings it awake (`store/doorbell.py`; it polls every `OMNICRM_DECIDER_POLL_MS`
only where nothing rings). Measured on 2 cores (SQLite, 2026-12-01, a slow day, 500 events/s posted):
event -> decision p50 4.0-4.8 ms / p99 11-13 ms as a process against 12-21 / 82-108 ms as a thread;
32 clients posting as fast as answered to 2 API workers, 1,628 requests/s against 816 (1,932 and 1,515
paced at 2,000/s). `serve` restarts the child if it dies and stops it when the API stops; the child
exits by itself if `serve` is killed outright.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

log = logging.getLogger(__name__)
RESTART_AFTER_S = 1.0


class ChildProcess:
    """One `omnicrm <command>` child, restarted when it dies, stopped with the parent."""

    name = "child"

    def __init__(self, arguments: list[str]) -> None:
        self.arguments = arguments
        self._stop = threading.Event()
        self._child: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self.starts = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"omnicrm-{self.name}-supervisor", daemon=True)
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
        command = [sys.executable, "-m", "omnicrm", *self.arguments, "--parent", str(os.getpid())]
        while not self._stop.is_set():
            self._child = subprocess.Popen(command)  # noqa: S603 - our own CLI, fixed arguments
            self.starts += 1
            code = self._child.wait()
            if self._stop.is_set():
                return
            log.error("%s exited with %s; starting it again", self.name, code)
            self._stop.wait(RESTART_AFTER_S)


class DeciderProcess(ChildProcess):
    name = "decision worker"

    def __init__(self, poll_ms: float) -> None:
        super().__init__(["worker", "--idle-ms", str(poll_ms)])


class DispatcherProcess(ChildProcess):
    """The channel worker (`omnicrm dispatch`): it sends what the decisions queued."""

    name = "dispatch worker"

    def __init__(self) -> None:
        super().__init__(["dispatch"])
