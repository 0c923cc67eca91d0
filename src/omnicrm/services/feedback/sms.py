"""What Kannel tells omnicrm: delivery receipts of the SMS it sent, and texts clients send back.

Receipts come to the `dlr-url` each SMS carried: the message's idempotency key and an HMAC of it
(channels/kannel.py), so a receipt cannot be forged for another message. Inbound texts come to the
sms-service `get-url` configured in kannel.conf, which carries a fixed token (`mo_token`). A text
is bound to the newest SMS omnicrm sent to that number: `STOP` (СТОП, UNSUBSCRIBE...) becomes an
unsubscribe - the consent withdrawal of issue 17 - any other text a reply. A STOP from a number
omnicrm never texted still withdraws SMS consent of the person holding that number.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from sqlalchemy import select
from sqlalchemy.engine import Connection

from omnicrm.channels.kannel import parse_dlr, parse_mo, verify_dlr
from omnicrm.channels.sms_feedback import is_stop
from omnicrm.domain.catalogue import Catalogue
from omnicrm.domain.errors import InvalidInput, ItemError, Unauthenticated
from omnicrm.domain.identifiers import InvalidIdentifier, normalise
from omnicrm.services.contracts import ConsentIn
from omnicrm.services.feedback import intake
from omnicrm.services.profiles import customers
from omnicrm.store import profiles
from omnicrm.store.tables import outbox

SOURCE_DLR, SOURCE_MO = "kannel", "kannel-mo"


def mo_token(secret: bytes) -> str:
    """The token of the sms-service get-url (`omnicrm channels urls` prints the whole URL)."""
    return hmac.new(secret, b"kannel-mo", hashlib.sha256).hexdigest()[:32]


def receipt(params: Mapping[str, str], secret: bytes) -> intake.Report:
    """A DLR callback as a report; Unauthenticated if its signature does not match its key."""
    if not verify_dlr(params, secret):
        raise Unauthenticated("the delivery receipt's signature does not match its message")
    try:
        dlr = parse_dlr(params)
    except ValueError as exc:
        raise InvalidInput(
            "not a delivery receipt omnicrm asked for", [ItemError(None, "(query)", str(exc))]
        ) from None
    return intake.Report(
        SOURCE_DLR, dlr.provider_event_id, dlr.status, dlr.at, message_key=dlr.key, reason=dlr.reason
    )


def inbound(
    conn: Connection,
    params: Mapping[str, str],
    *,
    token: str,
    secret: bytes,
    catalogue: Catalogue,
    now: datetime,
) -> Literal["stored", "duplicate", "unknown_message", "unknown_sender", "consent_withdrawn"]:
    """Take one text a client sent (see the module's text)."""
    if not hmac.compare_digest(token.encode(), mo_token(secret).encode()):
        raise Unauthenticated("the inbound SMS URL's token does not match")
    try:
        text = parse_mo(params)
        phone = normalise("phone", text.msisdn)
    except (ValueError, InvalidIdentifier) as exc:
        raise InvalidInput("not an inbound SMS", [ItemError(None, "from", str(exc))]) from None
    owner = profiles.owners_of(conn, [("phone", phone)]).get(("phone", phone))
    if owner is None:
        return "unknown_sender"
    customer_id = customers.live_id(conn, owner[0])
    status = "unsubscribed" if is_stop(text.text) else "replied"
    last = conn.execute(
        select(outbox.c.idempotency_key)
        .where(
            outbox.c.customer_id == customer_id, outbox.c.channel == "sms", outbox.c.provider_id.is_not(None)
        )
        .order_by(outbox.c.status_at.desc(), outbox.c.id.desc())
        .limit(1)
    ).scalar()
    at = min(text.at or now, now)
    report = intake.Report(SOURCE_MO, text.provider_event_id, status, at, message_key=last)
    if last is not None:
        return intake.take(conn, report, catalogue=catalogue, actor="sms:inbound", now=now)
    if status != "unsubscribed":
        return "unknown_message"
    if not intake.remember(conn, report, None, now):
        return "duplicate"
    withdrawal = ConsentIn(
        channel="sms", purpose="marketing", granted=False, source="sms_stop", effective_at=at
    )
    customers.record_consent(conn, customer_id, withdrawal, actor="sms:inbound", now=now)
    return "consent_withdrawn"
