"""Feedback routes: provider webhooks (signed) and the tracking links a message carries (the
open pixel, tracked clicks, the unsubscribe page). Neither takes a Bearer token - a provider or a
client's mail program calls them - so each is authenticated by its own signature instead (an HMAC
over the body, or the message's signed token in the path); README: feedback."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from omnicrm.api.deps import ContainerDep, SignedRequest, retried
from omnicrm.bootstrap import Container
from omnicrm.services.feedback import intake, sms, tracking, webhooks

router = APIRouter(tags=["feedback"])
_PIXEL = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


def _now() -> datetime:
    return datetime.now(UTC)


def _take(container: Container, reports: Sequence[intake.Report], actor: str) -> list[str]:
    """Take the reports in one transaction (run again if PostgreSQL undid it for a lock cycle)."""

    def work() -> list[str]:
        with container.uow() as uow:
            now = _now()
            catalogue = container.catalogue
            outcomes = [intake.take(uow.conn, r, catalogue=catalogue, actor=actor, now=now) for r in reports]
            uow.commit()
        return list(outcomes)

    return retried(work)


@router.post(
    "/v1/webhooks/{provider}",
    summary="A provider's status reports, signed with its secret (X-Omnicrm-Signature)",
    dependencies=[Depends(SignedRequest("HMAC of the body with the provider's secret"))],
    openapi_extra={"security": [{"ProviderSignature": []}]},
)
async def provider_webhook(provider: str, request: Request, container: ContainerDep) -> dict[str, Any]:
    body = await request.body()
    secrets = {k: v.get_secret_value() for k, v in container.settings.webhook_secrets.items()}
    webhooks.verify(provider, secrets, request.headers.get(webhooks.HEADER), body, _now())
    reports = webhooks.reports(provider, body)
    outcomes = await run_in_threadpool(_take, container, reports, f"webhook:{provider}")
    return {"items": [{"id": r.event_id, "outcome": o} for r, o in zip(reports, outcomes, strict=True)]}


@router.get(
    "/v1/webhooks/kannel/dlr",
    summary="Kannel's delivery receipts (the dlr-url each SMS carries, signed per message)",
    dependencies=[Depends(SignedRequest("HMAC of the message key in the URL"))],
    openapi_extra={"security": [{"SignedUrl": []}]},
)
async def kannel_receipt(request: Request, container: ContainerDep) -> dict[str, Any]:
    report = sms.receipt(dict(request.query_params), _secret(container))
    [outcome] = await run_in_threadpool(_take, container, [report], "kannel")
    return {"outcome": outcome}


@router.get(
    "/v1/webhooks/kannel/mo",
    summary="Texts clients send (Kannel's sms-service get-url, with its token): STOP, replies",
    dependencies=[Depends(SignedRequest("the sms-service token in the URL"))],
    openapi_extra={"security": [{"SignedUrl": []}]},
)
async def kannel_inbound(request: Request, container: ContainerDep, token: str = "") -> dict[str, Any]:
    params = {k: v for k, v in request.query_params.items() if k != "token"}

    def work() -> str:
        with container.uow() as uow:
            outcome = sms.inbound(
                uow.conn,
                params,
                token=token,
                secret=_secret(container),
                catalogue=container.catalogue,
                now=_now(),
            )
            uow.commit()
        return outcome

    return {"outcome": await run_in_threadpool(retried, work)}


def _secret(container: Container) -> bytes:
    return container.settings.feedback_key.get_secret_value().encode()


def _key(container: Container, token: str) -> str:
    return tracking.message_key(token, _secret(container))


@router.get("/t/{token}/open.gif", summary="The open pixel of an e-mail", include_in_schema=False)
async def open_pixel(token: str, container: ContainerDep) -> Response:
    key = _key(container, token)
    await run_in_threadpool(_take, container, [tracking.opened(key, _now())], "tracking")
    return Response(_PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})


@router.get("/t/{token}/click", summary="A tracked link: recorded, then redirected", include_in_schema=False)
async def click(token: str, container: ContainerDep, u: str | None = None) -> Response:
    key = _key(container, token)
    report = tracking.clicked(key, u, container.settings.tracking_redirect_hosts, _now())
    await run_in_threadpool(_take, container, [report], "tracking")
    target = u or container.settings.tracking_landing_url
    if target is None:  # a push tapped, and the bank named no landing page
        text = "Дякуємо! Повідомлення відкрито. / Thank you, the message is open."
        return HTMLResponse(_PAGE.format(title="Дякуємо / Thank you", text=text, form=""))
    return RedirectResponse(target, status_code=302)


_PAGE = """<!doctype html><html lang="uk"><head><meta charset="utf-8"><title>{title}</title></head>
<body><main><h1>{title}</h1><p>{text}</p>{form}</main></body></html>"""


@router.get("/t/{token}/unsubscribe", summary="The unsubscribe page", include_in_schema=False)
async def unsubscribe_page(token: str, container: ContainerDep) -> HTMLResponse:
    _key(container, token)  # a forged link gets 404, not a page
    action = html.escape(f"/t/{token}/unsubscribe", quote=True)
    button = '<button type="submit">Відписатися / Unsubscribe</button>'
    form = f'<form method="post" action="{action}">{button}</form>'
    text = (
        "Ви більше не отримуватимете таких повідомлень на цей канал. / "
        "You will get no more of these messages on this channel."
    )
    return HTMLResponse(_PAGE.format(title="Відписка / Unsubscribe", text=text, form=form))


@router.post("/t/{token}/unsubscribe", summary="Unsubscribe (RFC 8058 one-click)", include_in_schema=False)
async def unsubscribe(token: str, container: ContainerDep) -> HTMLResponse:
    key = _key(container, token)
    await run_in_threadpool(_take, container, [tracking.unsubscribed(key, _now())], "tracking")
    text = "Готово: ви відписалися. / Done: you are unsubscribed."
    return HTMLResponse(_PAGE.format(title="Відписка / Unsubscribe", text=text, form=""))
