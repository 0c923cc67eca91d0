"""A real Kannel for tests and benchmarks: bearerbox + smsbox + the fake SMSC `fakesmsc`.

Why a launcher and not a mock: the adapter must be proven against the gateway banks run, with
its real HTTP answers, its real splitting of long texts and its real delivery-receipt callbacks.
`start()` writes a kannel.conf with free ports into a temp dir, starts the three processes, waits
until the fake SMSC is online and smsbox answers, and `stop()` ends them by PID.

fakesmsc (Debian `kannel-extras`) connects to bearerbox's `fake` SMSC, logs every MT message it
gets ("Got message N: <from to type data>") and sends what is written to its stdin as MO
messages. The fake SMSC answers each MT with an SMSC-submit DLR and a final "delivered" DLR, so
smsbox calls the message's `dlr-url` back. Importable without Kannel installed: `available()`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from omnicrm.channels.sms_text import is_gsm7

BEARERBOX = "/usr/sbin/bearerbox"
SMSBOX = "/usr/sbin/smsbox"
FAKESMSC = "/usr/lib/kannel/test/fakesmsc"
USERNAME = "omnicrm"
PASSWORD = "kannel-test-secret"  # noqa: S105 - a throw-away peer on 127.0.0.1
_GOT = re.compile(r"Got message \d+: <(.*)>$")


def available() -> str | None:
    """None when the Kannel binaries are installed, else what is missing (a skip reason)."""
    missing = [p for p in (BEARERBOX, SMSBOX, FAKESMSC) if not os.access(p, os.X_OK)]
    if missing:
        return f"Kannel is not installed (apt-get install kannel kannel-extras): missing {missing}"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class FakeMt:
    """One MT message as fakesmsc printed it. `data` is the payload's bytes: UTF-8 text for GSM-7
    (Kannel's internal form), UTF-16-BE for UCS-2; `udh` is set on a part of a long text."""

    sender: str
    receiver: str
    kind: str  # text | data | ucs-2 | udh
    data: bytes
    udh: bytes | None = None

    def text(self, coding: str) -> str:
        return self.data.decode("utf-16-be" if coding == "ucs2" else "utf-8")


def parse_fakesmsc_line(line: str) -> FakeMt | None:
    """Parse one "Got message" log line of fakesmsc (format of Kannel's smsc_fake.c)."""
    found = _GOT.search(line.rstrip("\n"))
    if not found:
        return None
    sender, receiver, kind, rest = [*found.group(1).split(" ", 3), "", "", "", ""][:4]
    if kind == "text":
        return FakeMt(sender, receiver, kind, rest.encode())
    if kind in ("data", "ucs-2"):
        return FakeMt(sender, receiver, kind, _unquote(rest))
    if kind == "udh":
        udh, _, data = rest.partition(" data ")
        return FakeMt(sender, receiver, kind, _unquote(data), _unquote(udh))
    return None


def _unquote(text: str) -> bytes:
    """Kannel's octstr_url_encode writes a space as '+'."""
    return urllib.parse.unquote_to_bytes(text.replace("+", " "))


@dataclass
class KannelPeer:
    """A running Kannel; ports are on 127.0.0.1."""

    workdir: Path
    admin_port: int
    smsbox_port: int
    sendsms_port: int
    fake_port: int
    mo_url: str | None
    log_level: int = 2  # Kannel's: 0 debug .. 4 panic; warnings by default (debug costs throughput)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    @property
    def fakesmsc_log(self) -> Path:
        return self.workdir / "fakesmsc.log"

    def received(self) -> list[FakeMt]:
        """Every MT message fakesmsc has got so far, in order."""
        if not self.fakesmsc_log.exists():
            return []
        with self.fakesmsc_log.open(encoding="utf-8", errors="replace") as log:
            return [mt for mt in map(parse_fakesmsc_line, log) if mt is not None]

    def received_count(self) -> int:
        return self._log_count(b"Got message ")

    def inject_mo(self, sender: str, receiver: str, text: str) -> None:
        """Send an MO message from the fake SMSC as if a phone had texted `receiver`: GSM-7 text as
        it is, anything else as UCS-2 (as a phone sends Cyrillic)."""
        if is_gsm7(text) and "\n" not in text:
            line = f"{sender} {receiver} text {text}\n"
        else:
            line = f"{sender} {receiver} ucs2 {urllib.parse.quote_from_bytes(text.encode('utf-16-be'))}\n"
        stdin = self.processes["fakesmsc"].stdin
        assert stdin is not None
        # fakesmsc reads stdin through a stdio buffer but waits with select(): a second line
        # already in the pipe would sit unread, so hand it one line and wait until it sent it.
        before = self._log_count(b"fakesmsc: sent message ")
        stdin.write(line.encode())
        stdin.flush()
        _wait(lambda: self._log_count(b"fakesmsc: sent message ") > before, 10, "fakesmsc MO")

    def _log_count(self, marker: bytes) -> int:
        if not self.fakesmsc_log.exists():
            return 0
        return self.fakesmsc_log.read_bytes().count(marker)

    def status(self) -> str:
        url = f"http://127.0.0.1:{self.admin_port}/status.txt?password={PASSWORD}"
        with urllib.request.urlopen(url, timeout=2) as answer:
            return str(answer.read().decode("utf-8", "replace"))

    def start_smsbox(self) -> None:
        self._spawn("smsbox", [SMSBOX, "-v", "4", str(self.workdir / "kannel.conf")])
        _wait(lambda: _listening(self.sendsms_port), 20, "smsbox sendsms port")

    def stop_process(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdin is not None:
            proc.stdin.close()

    def stop(self) -> None:
        for name in ("smsbox", "fakesmsc", "bearerbox"):
            self.stop_process(name)

    def _spawn(self, name: str, argv: list[str], *, stdin: bool = False) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(  # noqa: S603 - fixed binaries, our own config
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=self.workdir,
        )
        log.close()


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def _wait(ready: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if ready():  # type: ignore[operator]
                return
        time.sleep(0.05)
    raise RuntimeError(f"Kannel peer: {what} not ready after {seconds:.0f}s")


def config(peer: KannelPeer) -> str:
    """The kannel.conf of a test peer: one fake SMSC, one smsbox, one sendsms user, MO to `mo_url`.

    `max-messages` + `concatenation` let smsbox accept long texts and send them as UDH-linked parts;
    DLRs are kept in memory (`dlr-storage = internal`), which is what a single test needs."""
    mo = ""
    glue = "&" if peer.mo_url and "?" in peer.mo_url else "?"
    if peer.mo_url:
        mo = f"""
group = sms-service
keyword = default
catch-all = true
max-messages = 0
get-url = "{peer.mo_url}{glue}from=%p&to=%P&text=%a&coding=%c&charset=%C&id=%I&ts=%T&smsc=%i"
"""
    return f"""group = core
admin-port = {peer.admin_port}
admin-password = {PASSWORD}
status-password = {PASSWORD}
admin-interface = 127.0.0.1
smsbox-port = {peer.smsbox_port}
box-allow-ip = 127.0.0.1
log-file = "{peer.workdir}/bearerbox-core.log"
log-level = {peer.log_level}
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = fake
port = {peer.fake_port}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {peer.smsbox_port}
sendsms-port = {peer.sendsms_port}
sendsms-interface = 127.0.0.1
log-file = "{peer.workdir}/smsbox-core.log"
log-level = {peer.log_level}
mo-recode = true

group = sendsms-user
username = {USERNAME}
password = {PASSWORD}
max-messages = 10
concatenation = true
{mo}"""


def start(mo_url: str | None = None, *, log_level: int = 2, timeout: float = 30) -> KannelPeer:
    """Start bearerbox, fakesmsc and smsbox on free ports; return when a message can be sent."""
    missing = available()
    if missing:
        raise RuntimeError(missing)
    workdir = Path(tempfile.mkdtemp(prefix="kannel-peer-"))
    peer = KannelPeer(workdir, free_port(), free_port(), free_port(), free_port(), mo_url, log_level)
    (workdir / "kannel.conf").write_text(config(peer), encoding="utf-8")
    try:
        peer._spawn("bearerbox", [BEARERBOX, "-v", "4", str(workdir / "kannel.conf")])
        _wait(lambda: _listening(peer.fake_port) and _listening(peer.admin_port), timeout, "bearerbox")
        # -v 0: fakesmsc logs each message it gets at debug level, which is how tests read them.
        peer._spawn(
            "fakesmsc", [FAKESMSC, "-H", "127.0.0.1", "-r", str(peer.fake_port), "-v", "0"], stdin=True
        )
        peer.start_smsbox()
        _wait(lambda: "online" in peer.status() and "smsbox" in peer.status(), timeout, "fake SMSC + smsbox")
    except BaseException:
        peer.stop()
        raise
    return peer


def cleanup(peer: KannelPeer) -> None:
    """Stop the peer and remove its temp dir (logs included)."""
    peer.stop()
    shutil.rmtree(peer.workdir, ignore_errors=True)


@contextlib.contextmanager
def running(mo_url: str | None = None, *, log_level: int = 2) -> Iterator[KannelPeer]:
    """A peer for the duration of a `with` block (tests, benchmarks)."""
    peer = start(mo_url, log_level=log_level)
    try:
        yield peer
    finally:
        cleanup(peer)
