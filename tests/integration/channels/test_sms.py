"""The SMS channel against a real Kannel (bearerbox + smsbox) and its fake SMSC `fakesmsc`.

What fakesmsc prints is what an SMSC would have got; the DLRs and the MO text come back to a
small local HTTP server standing in for omnicrm's webhook routes.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from omnicrm.bench import kannel_peer
from omnicrm.channels.base import Accepted, Outgoing, Permanent, Transient
from omnicrm.channels.kannel import KannelChannel, KannelConfig, parse_dlr, parse_mo, verify_dlr
from omnicrm.channels.sms_feedback import is_stop
from omnicrm.channels.sms_text import segments

SECRET = b"dlr-test-secret"
LATIN = "Your card ending 1234 is ready. Collect it at the branch {Mon-Fri} for 5 EUR: €"
CYRILLIC = "Шановний клієнте, ваша картка готова. Заберіть її у відділенні банку!!!"  # 71: 2 parts
LONG_LATIN = "Payment reminder. " * 12  # 216 septets: 2 parts


class Recorder:
    """The webhook side: every GET it gets, as (path, flat query dict)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()

    def record(self, path: str, query: dict[str, str]) -> None:
        with self.lock:
            self.calls.append((path, query))

    def on(self, path: str) -> list[dict[str, str]]:
        with self.lock:
            return [q for p, q in self.calls if p == path]


def wait_for(check: Callable[[], bool], seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


@pytest.fixture(scope="module")
def webhooks() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            recorder.record(url.path, query)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", recorder
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def peer(webhooks: tuple[str, Recorder]) -> Iterator[kannel_peer.KannelPeer]:
    missing = kannel_peer.available()
    if missing:
        pytest.skip(missing)
    with kannel_peer.running(mo_url=f"{webhooks[0]}/mo") as running:
        yield running


@pytest.fixture
def channel(peer: kannel_peer.KannelPeer, webhooks: tuple[str, Recorder]) -> Iterator[KannelChannel]:
    config = KannelConfig(
        sendsms_url=peer.sendsms_url,
        username=kannel_peer.USERNAME,
        password=kannel_peer.PASSWORD,
        sender="OmniBank",
        dlr_url=f"{webhooks[0]}/dlr",
        dlr_secret=SECRET,
    )
    adapter = KannelChannel("kannel-a", config)
    yield adapter
    adapter.close()


def sms(key: str, to: str, body: str) -> Outgoing:
    return Outgoing(idempotency_key=key, channel="sms", to=to, language="uk", body=body)


@pytest.mark.parametrize(
    ("key", "to", "text"),
    [
        ("k-latin", "+380501110001", LATIN),
        ("k-cyrillic", "+380501110002", CYRILLIC),
        ("k-long-latin", "+380501110003", LONG_LATIN),
    ],
)
def test_text_reaches_the_smsc_as_sent(
    channel: KannelChannel, peer: kannel_peer.KannelPeer, key: str, to: str, text: str
) -> None:
    expected = segments(text)
    result = channel.send(sms(key, to, text))

    assert isinstance(result, Accepted), result
    assert result.provider_id == key
    assert result.detail["segments"] == expected.count
    assert wait_for(lambda: len([m for m in peer.received() if m.receiver == to]) >= expected.count)
    got = [m for m in peer.received() if m.receiver == to]
    assert len(got) == expected.count
    assert all(m.sender == "OmniBank" for m in got)
    assert [m.text(expected.coding) for m in got] == list(expected.parts)
    if expected.count > 1:  # concatenated: one reference, parts numbered 1..n of n
        assert {m.udh[:5] if m.udh else b"" for m in got} == {got[0].udh[:5] if got[0].udh else b""}
        assert [m.udh[-2:] if m.udh else b"" for m in got] == [
            bytes([expected.count, i]) for i in range(1, expected.count + 1)
        ]
    else:
        assert got[0].kind == ("text" if expected.coding == "gsm7" else "ucs-2")


def test_delivery_receipts_come_back_with_the_key(
    channel: KannelChannel, webhooks: tuple[str, Recorder]
) -> None:
    _, recorder = webhooks
    result = channel.send(sms("k-dlr-1", "+380501110010", "Ваш код: 4821"))
    assert isinstance(result, Accepted)

    def receipts() -> list[dict[str, str]]:
        return [q for q in recorder.on("/dlr") if q.get("key") == "k-dlr-1"]

    assert wait_for(lambda: {parse_dlr(q).status for q in receipts()} >= {"sent", "delivered"})
    parsed = [parse_dlr(q) for q in receipts()]
    assert {r.key for r in parsed} == {"k-dlr-1"}
    assert all(verify_dlr(q, SECRET) for q in receipts())
    assert not verify_dlr({**receipts()[0], "key": "k-other"}, SECRET)
    assert len({r.provider_event_id for r in parsed}) == len(parsed)
    assert all(abs(time.time() - r.at.timestamp()) < 300 for r in parsed)


def test_a_long_text_gets_one_receipt_per_status_not_per_part(
    channel: KannelChannel, webhooks: tuple[str, Recorder]
) -> None:
    _, recorder = webhooks
    result = channel.send(sms("k-dlr-long", "+380501110011", "я" * 150))
    assert isinstance(result, Accepted)
    assert result.detail["segments"] == 3

    def statuses() -> list[str]:
        return sorted(parse_dlr(q).status for q in recorder.on("/dlr") if q.get("key") == "k-dlr-long")

    assert wait_for(lambda: statuses() == ["delivered", "sent"])
    time.sleep(0.5)  # a receipt per part would have arrived by now
    assert statuses() == ["delivered", "sent"]


def test_an_mo_stop_reaches_the_service_and_is_recognised(
    peer: kannel_peer.KannelPeer, webhooks: tuple[str, Recorder]
) -> None:
    _, recorder = webhooks
    peer.inject_mo("+380671234567", "7007", " СТОП! ")
    peer.inject_mo("+380671234568", "7007", "Дякую, все добре")

    assert wait_for(lambda: len(recorder.on("/mo")) >= 2)
    inbound = {m.msisdn: m for m in map(parse_mo, recorder.on("/mo"))}
    assert inbound["+380671234567"].text.strip() == "СТОП!"
    assert is_stop(inbound["+380671234567"].text)
    assert not is_stop(inbound["+380671234568"].text)
    assert inbound["+380671234567"].to == "7007"
    assert inbound["+380671234567"].provider_event_id != inbound["+380671234568"].provider_event_id


def test_smsbox_down_is_transient(channel: KannelChannel, peer: kannel_peer.KannelPeer) -> None:
    peer.stop_process("smsbox")
    try:
        result = channel.send(sms("k-down", "+380501110020", "hello"))
        assert isinstance(result, Transient), result
    finally:
        peer.start_smsbox()
    assert isinstance(channel.send(sms("k-up", "+380501110021", "hello")), Accepted)


def test_wrong_password_is_transient_and_a_bad_request_permanent(
    peer: kannel_peer.KannelPeer, channel: KannelChannel
) -> None:
    config = KannelConfig(peer.sendsms_url, kannel_peer.USERNAME, "wrong", "OmniBank")
    wrong = KannelChannel("kannel-wrong", config)
    try:
        assert isinstance(wrong.send(sms("k-auth", "+380501110030", "hi")), Transient)
    finally:
        wrong.close()
    result = channel.send(sms("k-empty-to", "", "hi"))
    assert isinstance(result, Permanent), result
