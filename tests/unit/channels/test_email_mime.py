"""The fast MIME builder against the stdlib's: for varied inputs, the bytes it makes parse (with
`policy.default`) into the same headers and decoded parts as an `EmailMessage` built from the same
values, and they keep `policy.SMTP`'s limits: 7-bit, CRLF only, lines of at most 78 characters."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnicrm.channels.base import Outgoing, Tracking
from omnicrm.channels.email import build_rate
from omnicrm.channels.mime import MimeBuilder, clean_subject, message_id, render

SENDER = "Ощадбанк <noreply@bank.example.ua>"
DATE = "Wed, 02 Dec 2026 18:36:24 +0000"
TRACKING = Tracking(
    "https://crm.example.ua/t/o/s1", "https://crm.example.ua/t/c/s1", "https://crm.example.ua/t/u/s1"
)
LONG_TRACKING = Tracking(
    "https://crm.example.ua/t/o/" + "a" * 120,
    "https://crm.example.ua/t/c/" + "b" * 120,
    "https://crm.example.ua/t/u/" + "c" * 120,
)
UK = "Шановна Олено, ваша картка «Їжак» готова; ґанок, єнот, їжа — з повагою, банк. "


def _builder() -> MimeBuilder:
    return MimeBuilder(SENDER, domain="bank.example.ua", unsubscribe_mailto="unsubscribe@bank.example.ua")


def _message(
    subject: str | None, body: str, tracking: Tracking | None = TRACKING, language: str = "uk"
) -> Outgoing:
    return Outgoing(
        "om-42",
        "email",
        "olena@example.com",
        language,
        body,
        subject=subject,
        template="t1",
        tracking=tracking,
    )


def _stdlib(builder: MimeBuilder, message: Outgoing) -> bytes:
    """The same message built the slow, reference way."""
    rendered = render(message)
    mail = EmailMessage(policy=policy.SMTP)
    mail["From"] = SENDER
    mail["To"] = message.to
    mail["Subject"] = rendered.subject
    mail["Date"] = DATE
    mail["Message-ID"] = message_id(message.idempotency_key, "bank.example.ua")
    mail["X-Idempotency-Key"] = message.idempotency_key
    if message.tracking:
        mail["List-Unsubscribe"] = (
            f"<{message.tracking.unsubscribe_url}>, <mailto:unsubscribe@bank.example.ua>"
        )
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(rendered.text)
    skeleton = builder.skeleton(message.template, message.language)
    mail.add_alternative(builder.html_document(skeleton, rendered), subtype="html")
    return mail.as_bytes()


def _parse(data: bytes) -> EmailMessage:
    mail = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(mail, EmailMessage)
    return mail


def _unfolded(value: Any) -> str:
    return " ".join(str(value).split())


def _assert_smtp_shape(data: bytes) -> None:
    assert data.isascii()
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")  # CRLF and nothing else
    for line in data.split(b"\r\n"):
        is_long_url = line.startswith((b" <https://", b"List-Unsubscribe: <https://"))
        assert len(line) <= (998 if is_long_url else 78), line


CASES = {
    "ascii": ("Your statement is ready", "Dear client,\n\nYour statement is ready.\n", None, "en"),
    "cyrillic": ("Ваша картка готова", UK + "\n\n" + UK, TRACKING, "uk"),
    "long ascii": ("Statement " * 15, "x" * 500 + "\n" + "word " * 120, TRACKING, "en"),
    "long cyrillic": ("Картка " * 25, UK * 6 + "\n" + UK * 3, TRACKING, "uk"),
    "links": (
        "Links",
        "Go to https://a.example/x?y=1&z=2, or (see https://b.example/p_(q)). And HTTP://c.example.\n"
        "Мітка https://bank.example.ua/оферта?x=ї тут",
        TRACKING,
        "uk",
    ),
    "specials": ("Tom & Jerry <\"quoted\"> 'x'", "a <b> & \"c\" 'd' </p><script>x</script>", TRACKING, "en"),
    "crlf injection": ("Hello\r\nBcc: victim@example.com\r\n\r\n<b>", "Body", TRACKING, "en"),
    "emoji and accents": ("Вітаємо 🎉 з днем народження! é", "🎉 Café noël ﬁ\u0301 ‍ 👩‍👩‍👧", TRACKING, "uk"),
    "smtp edge lines": ("Dots", ".\n..leading dots\nFrom here\ntrailing   \n\ttab\n", None, "en"),
    "boundary text": ("Boundary", "--=_omnicrm_ inside the text\n--\n", None, "en"),
    "line ends": ("Line ends", "a\rb\r\nc\n\n\n\nd\r\n", TRACKING, "en"),
    "empty": (None, "", None, "en"),
    "long tracking urls": ("Довгі посилання", "See https://bank.example.ua/x", LONG_TRACKING, "uk"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_fast_bytes_parse_like_the_stdlibs(case: tuple[str | None, str, Tracking | None, str]) -> None:
    builder = _builder()
    message = _message(*case)

    _, data = builder.build(message, date=DATE)
    fast, reference = _parse(data), _parse(_stdlib(builder, message))

    _assert_smtp_shape(data)
    assert not fast.defects
    assert sorted(fast.keys()) == sorted(reference.keys())
    for name in fast:
        if name == "Content-Type":
            assert fast.get_content_type() == reference.get_content_type() == "multipart/alternative"
        elif name == "List-Unsubscribe":  # the stdlib folds it elsewhere; the URLs are what counts
            assert _unfolded(fast[name]) == _unfolded(reference[name])
        else:
            assert fast[name] == reference[name], name
    fast_parts, reference_parts = list(fast.iter_parts()), list(reference.iter_parts())
    assert [p.get_content_type() for p in fast_parts] == ["text/plain", "text/html"]
    for ours, theirs in zip(fast_parts, reference_parts, strict=True):
        assert not ours.defects
        assert ours.get_content_type() == theirs.get_content_type()
        assert ours.get_content_charset() == theirs.get_content_charset() == "utf-8"
        assert ours.get_content() == theirs.get_content()


def test_a_crlf_in_the_subject_injects_no_header() -> None:
    _, data = _builder().build(_message("Hello\r\nBcc: victim@example.com\r\n\r\n<b>", "Body"))

    mail = _parse(data)
    assert mail["Bcc"] is None
    assert mail["Subject"] == "Hello Bcc: victim@example.com <b>"


def test_a_subject_that_looks_encoded_stays_literal() -> None:
    _, data = _builder().build(_message("=?utf-8?q?hi?=", "Body"))

    assert _parse(data)["Subject"] == "=?utf-8?q?hi?="


def test_links_are_tracked_and_escaped() -> None:
    rendered = render(_message("s", 'Go https://a.example/x?y=1&z="2" now.', language="en"))

    tracked = "https://crm.example.ua/t/c/s1?u=https%3A//a.example/x%3Fy%3D1%26z%3D"
    assert rendered.text == f'Go {tracked}"2" now.'
    assert f'<a href="{tracked}">https://a.example/x?y=1&amp;z=</a>&quot;2&quot; now.' in rendered.html
    assert '<img src="https://crm.example.ua/t/o/s1"' in rendered.html


def test_the_message_id_depends_on_the_key_only() -> None:
    builder = _builder()
    first, _ = builder.build(_message("a", "b"))
    second, _ = builder.build(_message("c", "d", tracking=None))
    other, _ = builder.build(Outgoing("om-43", "email", "x@example.com", "uk", "b"))

    assert first == second != other


@settings(max_examples=200, deadline=None)
@given(
    subject=st.text(st.characters(exclude_categories=["Cs"]), max_size=120),
    body=st.text(st.characters(exclude_categories=["Cs"]), max_size=400),
)
def test_any_text_round_trips_and_parses_like_the_stdlibs(subject: str, body: str) -> None:
    message = _message(subject, body)
    rendered = render(message)

    _, data = _builder().build(message)
    mail = _parse(data)

    _assert_smtp_shape(data)
    assert mail["Subject"] == clean_subject(subject)
    text_part, html_part = mail.iter_parts()
    lines = rendered.text.split("\n")
    if lines[-1] == "":
        lines.pop()
    assert text_part.get_content() == "\r\n".join(lines) + "\r\n"  # canonical form, as the stdlib
    assert rendered.html in html_part.get_content().replace("\r\n", "\n")
    if "=?" not in subject:  # the stdlib would decode that itself (test above)
        reference = _parse(_stdlib(_builder(), message))
        for name in ("Subject", "From", "To", "Message-ID", "X-Idempotency-Key"):
            assert mail[name] == reference[name]
        for ours, theirs in zip(mail.iter_parts(), reference.iter_parts(), strict=True):
            assert ours.get_content() == theirs.get_content()


def test_build_rate_builds() -> None:
    assert build_rate(20) > 0
