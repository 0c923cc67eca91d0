"""/docs renders the API in a real browser (Debian's headless Chromium), under the page's
Content-Security-Policy: every operation of the OpenAPI document is shown, and nothing is refused.

Swagger UI 4 (the `swagger-ui-bundle` 1.1.0 the project shipped before) cannot read an OpenAPI 3.1
document and showed "Unable to render this definition"; this test caught it."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from omnicrm.api.app import create_app
from omnicrm.bootstrap import Container

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The flags the machine notes ask for: no background traffic on a closed network.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=15000",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(container: Container) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(container), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "the app did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("container", ["sqlite"], indirect=True)  # the page is the same on both
def test_the_docs_page_renders_every_operation_in_chromium(served: str, tmp_path: Path) -> None:
    assert Path(CHROMIUM).exists(), "Debian chromium is needed: ./.ci/services installs it"
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path}", "--dump-dom", f"{served}/docs"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    dom, log = done.stdout, done.stderr
    assert "Unable to render this definition" not in dom
    shown = set(re.findall(r'data-path="([^"]+)"', dom))
    assert len(shown) >= 30, f"{len(shown)} paths rendered"
    assert "/v1/events" in shown
    refused = [line for line in log.splitlines() if "Content Security Policy" in line or "Refused to" in line]
    assert not refused, "\n".join(refused)
