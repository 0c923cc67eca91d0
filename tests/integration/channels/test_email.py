"""The e-mail channel against a real SMTP server in the test process: aiosmtpd with STARTTLS and AUTH
required, its certificate issued by a CA made here and trusted through `SmtpConfig.cafile`."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from omnicrm.bench.certificates import issue_certificates
from omnicrm.channels.base import Accepted, Outgoing, Permanent, SendResult, Tracking, Transient
from omnicrm.channels.email import EmailChannel, SmtpConfig

USER, PASSWORD = "omnicrm", "s3cret-пароль"
SENDER = "Ощадбанк <noreply@bank.example.ua>"
TRACKING = Tracking(
    open_url="https://crm.example.ua/t/o/sig123",
    click_url="https://crm.example.ua/t/c/sig123",
    unsubscribe_url="https://crm.example.ua/t/u/sig123",
)
SUBJECT = "Ваша картка готова — заберіть її у відділенні"
BODY = (
    "Шановна Олено Ґудзь,\n\nВаша нова картка «Їжак» вже чекає: https://bank.example.ua/cards?id=7&n=1.\n"
    "Графік роботи відділення — з 9:00 до 18:00.\n\nЗ повагою, ваш банк."
)


# --- the peer: aiosmtpd with TLS made here -------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    session: int

    def parsed(self) -> EmailMessage:
        message = BytesParser(policy=policy.default).parsebytes(self.content)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class Mailbox:
    """The server's handler: keeps what it accepts, and answers as a test tells it to."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)  # recipient -> SMTP reply
    data_reply: str | None = None

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.data_reply is not None:
            return self.data_reply
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, id(session))
        )
        return "250 2.0.0 queued"


@dataclass
class Authenticator:
    """Accepts one user with one password (compared as the UTF-8 bytes the client sent)."""

    password: str

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(),
            self.password.encode(),
        )
        return AuthResult(success=ok, handled=False)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class SmtpServer:
    """aiosmtpd on a free port, STARTTLS and AUTH (LOGIN, PLAIN) required; restartable on that port."""

    def __init__(
        self, certs: tuple[Path, Path, Path], *, password: str = PASSWORD, mechanisms: tuple[str, ...] = ()
    ) -> None:
        self.password = password
        self.excluded = [m for m in ("LOGIN", "PLAIN") if mechanisms and m not in mechanisms]
        self.cafile = str(certs[0])
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(certs[1], certs[2])
        self.mailbox = Mailbox()
        self.port = _free_port()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="localhost",
            tls_context=self.tls,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=Authenticator(self.password),
            auth_exclude_mechanism=self.excluded,
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def config(self, **overrides: Any) -> SmtpConfig:
        base = SmtpConfig(
            host="127.0.0.1",
            port=self.port,
            sender=SENDER,
            starttls=True,
            username=USER,
            password=self.password,
            cafile=self.cafile,
            timeout=5.0,
            unsubscribe_mailto="unsubscribe@bank.example.ua",
        )
        return replace(base, **overrides)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return issue_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server(certs: tuple[Path, Path, Path]) -> Iterator[SmtpServer]:
    smtp = SmtpServer(certs)
    smtp.start()
    yield smtp
    smtp.stop()


@pytest.fixture
def channel(server: SmtpServer) -> Iterator[EmailChannel]:
    email = EmailChannel("smtp-a", server.config())
    yield email
    email.close()


def _message(key: str = "om-1", to: str = "olena@example.com", **overrides: Any) -> Outgoing:
    fields: dict[str, Any] = {
        "idempotency_key": key,
        "channel": "email",
        "to": to,
        "language": "uk",
        "body": BODY,
        "subject": SUBJECT,
        "template": "card_ready",
        "tracking": TRACKING,
    }
    return Outgoing(**(fields | overrides))


# --- what arrives -------------------------------------------------------------------------------


def test_a_sent_message_arrives_as_rfc5322_multipart_with_tracking(
    server: SmtpServer, channel: EmailChannel
) -> None:
    result = channel.send(_message())

    assert isinstance(result, Accepted)
    assert result.provider == "smtp-a"
    (received,) = server.mailbox.received
    assert (received.mail_from, received.rcpt_tos) == ("noreply@bank.example.ua", ["olena@example.com"])
    mail = received.parsed()
    assert not mail.defects
    assert mail["Subject"] == SUBJECT
    assert mail["From"].addresses[0].display_name == "Ощадбанк"
    assert mail["To"] == "olena@example.com"
    assert mail["Message-ID"] == result.provider_id
    assert mail["X-Idempotency-Key"] == "om-1"
    assert mail["Date"].datetime is not None
    assert mail.get_content_type() == "multipart/alternative"
    text_part, html_part = mail.iter_parts()
    assert [text_part.get_content_type(), html_part.get_content_type()] == ["text/plain", "text/html"]
    text, page = text_part.get_content(), html_part.get_content()
    tracked = "https://crm.example.ua/t/c/sig123?u=https%3A//bank.example.ua/cards%3Fid%3D7%26n%3D1"
    assert (
        text.replace("\r\n", "\n") == BODY.replace("https://bank.example.ua/cards?id=7&n=1", tracked) + "\n"
    )
    assert "Шановна Олено Ґудзь," in page
    assert "«Їжак»" in page
    assert f'<a href="{tracked}">https://bank.example.ua/cards?id=7&amp;n=1</a>.' in page
    assert '<img src="https://crm.example.ua/t/o/sig123" width="1" height="1"' in page
    unsubscribe = mail["List-Unsubscribe"].replace("\r\n", "").split(",")
    assert [item.strip() for item in unsubscribe] == [
        "<https://crm.example.ua/t/u/sig123>",
        "<mailto:unsubscribe@bank.example.ua>",
    ]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_an_untracked_message_has_no_pixel_no_unsubscribe_and_its_links_as_written(
    server: SmtpServer, channel: EmailChannel
) -> None:
    assert isinstance(
        channel.send(_message(tracking=None, language="en", body="See https://x.example/a")), Accepted
    )

    mail = server.mailbox.received[0].parsed()
    assert mail["List-Unsubscribe"] is None
    assert mail["List-Unsubscribe-Post"] is None
    text_part, html_part = mail.iter_parts()
    assert text_part.get_content() == "See https://x.example/a\r\n"
    assert '<a href="https://x.example/a">' in html_part.get_content()
    assert "<img" not in html_part.get_content()


@pytest.mark.parametrize(
    "body",
    [
        ".\n..two dots\nFrom the bank\n.\n",  # SMTP's end-of-data and mbox's From line
        "ascii only, short lines\n\nsecond paragraph",  # 7bit
        "Ї" * 400 + "\n" + "x" * 300,  # base64 with long lines
        "Mostly ASCII with one ґ and a very long line " + "word " * 60,  # quoted-printable
    ],
    ids=["dots", "7bit", "base64", "quoted-printable"],
)
def test_what_arrives_decodes_to_what_was_sent(server: SmtpServer, channel: EmailChannel, body: str) -> None:
    result = channel.send(_message(body=body, tracking=None, subject="Перевірка " + body[:30]))

    assert isinstance(result, Accepted)
    mail = server.mailbox.received[0].parsed()
    assert mail["Subject"] == " ".join(("Перевірка " + body[:30]).split())
    text_part, _ = mail.iter_parts()
    assert text_part.get_content().replace("\r\n", "\n") == body.rstrip("\n") + "\n"


def test_a_resend_of_the_same_key_carries_the_same_message_id(
    server: SmtpServer, channel: EmailChannel
) -> None:
    first, again, other = (
        channel.send(_message("k-1")),
        channel.send(_message("k-1")),
        channel.send(_message("k-2")),
    )

    assert isinstance(first, Accepted)
    assert isinstance(again, Accepted)
    assert isinstance(other, Accepted)
    ids = [r.parsed()["Message-ID"] for r in server.mailbox.received]
    assert ids == [first.provider_id, first.provider_id, other.provider_id]
    assert first.provider_id != other.provider_id


def test_messages_share_one_connection(server: SmtpServer, channel: EmailChannel) -> None:
    for n in range(5):
        assert isinstance(channel.send(_message(f"k-{n}")), Accepted)

    assert len({r.session for r in server.mailbox.received}) == 1


# --- what the server refuses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rcpt_reply", "data_reply", "expected", "gone"),
    [
        ("550 5.1.1 <olena@example.com>: mailbox unavailable", None, Permanent, True),
        ("553 5.7.1 relaying denied", None, Permanent, False),
        ("451 4.3.0 try again later", None, Transient, None),
        ("452 4.2.2 mailbox full", None, Transient, None),
        (None, "554 5.6.0 content refused", Permanent, False),
        (None, "452 4.3.1 insufficient storage", Transient, None),
    ],
)
def test_smtp_refusals_become_typed_results(
    server: SmtpServer,
    channel: EmailChannel,
    rcpt_reply: str | None,
    data_reply: str | None,
    expected: type[SendResult],
    gone: bool | None,
) -> None:
    if rcpt_reply:
        server.mailbox.rcpt_replies["olena@example.com"] = rcpt_reply
    server.mailbox.data_reply = data_reply

    result = channel.send(_message())

    assert isinstance(result, expected)
    assert isinstance(result, Permanent | Transient)
    code = (rcpt_reply or data_reply or "")[:3]
    assert code in result.reason
    assert "olena@example.com" not in result.reason
    if isinstance(result, Permanent):
        assert result.gone is gone
    assert server.mailbox.received == []
    # the refusal left the connection usable: the next message goes on the same session
    server.mailbox.rcpt_replies.clear()
    server.mailbox.data_reply = None
    assert isinstance(channel.send(_message("k-next")), Accepted)
    assert len(server.mailbox.received) == 1


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        ({"password": "wrong"}, "535"),  # the provider's configuration: failover may help
        ({"cafile": None}, "CERTIFICATE_VERIFY_FAILED"),  # STARTTLS verifies the server
        ({"starttls": False}, "AUTH"),  # the server offers AUTH only after STARTTLS
        ({"starttls": False, "username": None}, "530"),  # and requires STARTTLS before MAIL
    ],
)
def test_configuration_failures_are_transient(
    server: SmtpServer, overrides: dict[str, Any], why: str
) -> None:
    email = EmailChannel("smtp-a", server.config(**overrides))
    try:
        result = email.send(_message())
    finally:
        email.close()

    assert isinstance(result, Transient)
    assert why in result.reason
    assert server.mailbox.received == []


@pytest.mark.parametrize(
    ("password", "mechanism"),
    [("ascii-only", "LOGIN"), ("ascii-only", "PLAIN"), (PASSWORD, "PLAIN")],
)
def test_auth_login_and_plain(certs: tuple[Path, Path, Path], password: str, mechanism: str) -> None:
    smtp = SmtpServer(certs, password=password, mechanisms=(mechanism,))
    smtp.start()
    email = EmailChannel("smtp-a", smtp.config())
    try:
        result = email.send(_message())
        wrong = EmailChannel("smtp-b", smtp.config(password=password + "x")).send(_message("k-2"))
    finally:
        email.close()
        smtp.stop()

    assert isinstance(result, Accepted)
    assert len(smtp.mailbox.received) == 1
    assert isinstance(wrong, Transient)
    assert "535" in wrong.reason


def test_a_server_that_is_down_is_transient(server: SmtpServer) -> None:
    email = EmailChannel("smtp-a", server.config(port=_free_port()))

    result = email.send(_message())

    assert isinstance(result, Transient)
    assert "smtp-a" in result.reason


def test_a_restarted_server_is_reconnected_to(server: SmtpServer, channel: EmailChannel) -> None:
    assert isinstance(channel.send(_message("k-before")), Accepted)
    server.stop()
    server.start()

    result = channel.send(_message("k-after"))

    assert isinstance(result, Accepted)
    keys = [r.parsed()["X-Idempotency-Key"] for r in server.mailbox.received]
    assert keys == ["k-before", "k-after"]
    assert server.mailbox.received[0].session != server.mailbox.received[1].session


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (_message(to="olena@example.com\r\nRCPT TO:<x@evil.example>"), "recipient"),
        (_message(to="олена@приклад.укр"), "recipient"),
        (_message(key="key with spaces"), "idempotency key"),
        (_message(subject="Т" * 201), "subject"),
        (_message(channel="sms"), "sends email"),
    ],
)
def test_unsendable_messages_are_permanent_and_never_reach_the_server(
    server: SmtpServer, channel: EmailChannel, message: Outgoing, why: str
) -> None:
    result = channel.send(message)

    assert isinstance(result, Permanent)
    assert why in result.reason
    assert server.mailbox.received == []
