"""The e-mail channel: SMTP with STARTTLS and AUTH over one persistent connection per instance.

The dispatch worker is synchronous and sends one message per SMTP transaction, so the stdlib's
smtplib suffices; what costs time is building the message, which `mime.MimeBuilder` does from a
skeleton per template. The Message-ID derives from the idempotency key, so a retried send carries
the same one, and `X-Idempotency-Key` carries the key itself for sinks and providers that dedupe.

How SMTP answers become results:
    4xx anywhere                       Transient (greylisted, throttled, mailbox busy)
    5xx on RCPT or DATA                Permanent (the address or the content); `gone` when the
                                       enhanced code says the mailbox does not exist (5.1.x)
    5xx on MAIL FROM, AUTH refused,    Transient: the provider's configuration, not the message's;
    STARTTLS missing, no connection    failover to another provider may help

A connection the server dropped while idle (it answers 421 or nothing to MAIL FROM) is reopened
and the message tried once more, which is safe because nothing of the message was accepted yet; a
failure after MAIL FROM drops the connection and returns Transient, leaving the retry to dispatch.
"""

from __future__ import annotations

import base64
import logging
import re
import smtplib
import ssl
import threading
import time
from dataclasses import dataclass, field
from email.utils import parseaddr

from omnicrm.channels.base import Accepted, Channel, Outgoing, Permanent, SendResult, Tracking, Transient
from omnicrm.channels.mime import MimeBuilder, Unbuildable

__all__ = ["EmailChannel", "SmtpConfig", "build_rate"]

log = logging.getLogger(__name__)
_ENHANCED_CODE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """Where and how to hand e-mails over. `domain` (for Message-IDs and EHLO) defaults to the
    sender's domain. The server's certificate is always verified, against the system's CAs or, when
    `cafile` is set, against that file's only (a private CA: tests, an internal relay)."""

    host: str
    port: int
    sender: str  # the From header, e.g. "Ощадбанк <noreply@bank.example.ua>"
    starttls: bool = True
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    timeout: float = 10.0
    domain: str | None = None
    unsubscribe_mailto: str | None = None

    @property
    def message_domain(self) -> str:
        return self.domain or parseaddr(self.sender)[1].rpartition("@")[2] or "localhost"


class _Refused(Exception):
    """An SMTP reply other than the one the step expects."""

    def __init__(self, step: str, code: int, text: str) -> None:
        super().__init__(step, code, text)
        self.step, self.code, self.text = step, code, text


class EmailChannel(Channel):
    """One SMTP provider. Threads may share it but take turns: one connection, one transaction at
    a time, as the synchronous dispatch worker sends; for more, run more instances."""

    channel = "email"
    max_subject = 200  # mail clients cut far earlier; longer is a template defect
    max_body = 500_000  # characters; providers refuse messages of a few MB

    def __init__(self, provider: str, config: SmtpConfig, *, rate_per_second: float | None = None) -> None:
        super().__init__(provider, rate_per_second=rate_per_second)
        self.config = config
        self.builder = MimeBuilder(
            config.sender, domain=config.message_domain, unsubscribe_mailto=config.unsubscribe_mailto
        )
        # smtplib's mail()/rcpt() re-parse both addresses on every message; the builder checked them
        self._mail_from = f"FROM:<{self.builder.envelope_sender}>"
        self._tls = ssl.create_default_context(cafile=config.cafile) if config.starttls else None
        self._conn: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    def _send(self, message: Outgoing) -> SendResult:
        try:
            msgid, data = self.builder.build(message)
        except Unbuildable as exc:
            return Permanent(f"{self.provider}: {exc}")
        with self._lock:
            try:
                self._transaction(message.to, data)
            except _Refused as refused:
                return self._result(refused, message)
            except OSError:  # smtplib's errors are OSErrors too; the base makes this Transient
                self._drop()
                raise
        return Accepted(self.provider, msgid)

    def _transaction(self, recipient: str, data: bytes) -> None:
        """MAIL, RCPT, DATA on the open connection; on a stale one, once more on a new one."""
        reused = self._conn is not None
        conn = self._connection()
        try:
            self._expect(conn, "MAIL", conn.docmd("MAIL", self._mail_from), 250)
        except (smtplib.SMTPServerDisconnected, ConnectionError, _Refused) as exc:
            stale = not isinstance(exc, _Refused) or exc.code == 421
            if not (reused and stale):
                raise
            log.info("%s: smtp connection dropped by the server; reconnecting", self.provider)
            self._drop()
            conn = self._connection()
            self._expect(conn, "MAIL", conn.docmd("MAIL", self._mail_from), 250)
        self._expect(conn, "RCPT", conn.docmd("RCPT", f"TO:<{recipient}>"), 250, 251)  # a plain address
        try:
            reply: tuple[int, bytes | str] = conn.data(data)
        except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354)
            reply = (exc.smtp_code, exc.smtp_error)
        self._expect(conn, "DATA", reply, 250)

    def _expect(self, conn: smtplib.SMTP, step: str, reply: tuple[int, bytes | str], *codes: int) -> None:
        code, text = reply
        if code in codes:
            return
        if code == 421:  # the server is closing this connection
            self._drop()
        else:
            try:
                conn.rset()
            except OSError:
                self._drop()
        raise _Refused(step, code, _text(text))

    def _connection(self) -> smtplib.SMTP:
        """The open connection, or a new one: EHLO, STARTTLS (verified), EHLO, AUTH."""
        if self._conn is not None:
            return self._conn
        config = self.config
        conn = smtplib.SMTP(
            config.host, config.port, local_hostname=config.message_domain, timeout=config.timeout
        )
        step = "EHLO"
        try:
            conn.ehlo()
            if self._tls is not None:
                step = "STARTTLS"
                conn.starttls(context=self._tls)
                conn.ehlo()
            if config.username is not None:
                step = "AUTH"
                _login(conn, config.username, config.password or "")
        except smtplib.SMTPResponseException as exc:  # 535 and friends: say which step refused
            conn.close()
            raise _Refused(step, exc.smtp_code, _text(exc.smtp_error)) from exc
        except OSError:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _result(self, refused: _Refused, message: Outgoing) -> SendResult:
        # the server's text may quote the address: keep personal data out of the stored reason
        text = refused.text.replace(message.to, "<recipient>")
        reason = f"{self.provider}: {refused.step} {refused.code} {text}"[:300]
        log.warning(  # the key and the code, not the text
            "%s: smtp %s refused %d (key %s)",
            self.provider,
            refused.step,
            refused.code,
            message.idempotency_key,
        )
        if 400 <= refused.code < 500 or refused.step in ("EHLO", "STARTTLS", "AUTH", "MAIL"):
            return Transient(reason)
        enhanced = _ENHANCED_CODE.match(refused.text)
        gone = refused.step == "RCPT" and enhanced is not None and enhanced.group(2) == "1"
        return Permanent(reason, gone=gone)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """QUIT politely; a connection already gone is simply forgotten."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    conn.quit()
                except (OSError, smtplib.SMTPException):
                    conn.close()


def _login(conn: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH as smtplib does, except for credentials beyond ASCII, which smtplib cannot encode:
    those go as RFC 4616 PLAIN in UTF-8 (a Ukrainian password is not an error)."""
    if (username + password).isascii():
        conn.login(username, password)
        return
    if "PLAIN" not in conn.esmtp_features.get("auth", "").upper().split():
        raise smtplib.SMTPNotSupportedError("non-ASCII credentials need AUTH PLAIN, which the server lacks")
    token = base64.b64encode(b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8"))
    code, text = conn.docmd("AUTH", "PLAIN " + token.decode("ascii"))
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, text)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply


def build_rate(n: int = 2000) -> float:
    """E-mails built per second by the fast builder, Cyrillic and tracked (for `omnicrm bench`)."""
    builder = MimeBuilder("Ощадбанк <noreply@bank.example.ua>", domain="bank.example.ua")
    tracking = Tracking(
        "https://crm.example.ua/o/x", "https://crm.example.ua/c/x", "https://crm.example.ua/u/x"
    )
    body = (
        "Шановний клієнте {i},\n\nВаша кредитна картка готова. Деталі: https://bank.example.ua/card?n={i}\n\n"
        "Дякуємо, що обираєте нас.\nВаш банк."
    )
    messages = [
        Outgoing(
            f"bench-{i}",
            "email",
            f"client{i}@example.com",
            "uk",
            body.format(i=i),
            subject=f"Ваша картка готова ({i % 7})",
            template="card_ready",
            tracking=tracking,
        )
        for i in range(n)
    ]
    start = time.perf_counter()
    for message in messages:
        builder.build(message)
    return n / (time.perf_counter() - start)
