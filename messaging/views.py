"""Provider webhooks (web process, no session, no CSRF: the provider's signature is the authentication).

Each view finds the account by the unguessable id in its URL, checks the signature (403 and nothing stored
when it fails), stores the event (messaging.services.webhooks.receipt_store: idempotent) and answers at
once; a worker acts on it. Twilio's inbound webhook answers an empty TwiML ``<Response/>`` (the product
replies, if at all, through the API).

**The URL Twilio signed.** Twilio signs the exact URL it called. Behind a proxy (TLS terminated in front),
the URL Django sees (``http://internal-host/...``) differs from the one Twilio called
(``https://public-host/...``). The candidates tried, in order: ``PUBLIC_BASE_URL`` + the path and query
(set it to the public origin), the URL as Django builds it (which honours ``SECURE_PROXY_SSL_HEADER`` and
``USE_X_FORWARDED_HOST``), and that URL with the scheme of ``X-Forwarded-Proto``. Only a request signed with
the account's Auth Token passes any of them.
"""

from __future__ import annotations

import json
import logging
from uuid import UUID

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from messaging import selectors
from messaging.models import Provider, SmsAccount
from messaging.providers.telnyx import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from messaging.services.accounts import sms_account_secret
from messaging.services.webhooks import receipt_store, telnyx_payload, twilio_payload

logger = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
#: The largest webhook body read (a Telnyx event is a few KB).
MAX_BODY = 256 * 1024


def _refused(reason: str, status: int = 403) -> JsonResponse:
    return JsonResponse({"detail": reason}, status=status)


def twilio_candidate_urls(request: HttpRequest) -> list[str]:
    """The URLs Twilio may have signed for this request (see the module docstring)."""
    path = request.get_full_path()
    urls = [str(settings.PUBLIC_BASE_URL).rstrip("/") + path]
    try:
        built = request.build_absolute_uri()
    except DisallowedHost:
        return urls
    urls.append(built)
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    if forwarded in ("http", "https"):
        urls.append(forwarded + built[built.index(":") :])
    return list(dict.fromkeys(urls))


def twilio_signature_valid(request: HttpRequest, account: SmsAccount) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    validator = RequestValidator(sms_account_secret(account))
    return any(validator.validate(url, request.POST, signature) for url in twilio_candidate_urls(request))


def _twilio(request: HttpRequest, webhook_id: UUID, *, status_route: bool) -> HttpResponse:
    account = selectors.sms_account_for_webhook(webhook_id=webhook_id, kind=Provider.TWILIO)
    if account is None:
        return _refused("unknown account", 404)
    if not twilio_signature_valid(request, account):
        logger.warning("Twilio webhook for account %s: bad signature; refused", account.pk)
        return _refused("invalid signature")
    if request.POST.get("AccountSid") and request.POST.get("AccountSid") != account.username:
        return _refused("another account's event")
    kind, key, payload = twilio_payload(request.POST, message_id=request.GET.get("m", ""))
    if not key:
        return _refused("no MessageSid", 400)
    if status_route != (kind == "status"):
        return _refused("not an event of this route", 400)
    receipt_store(account=account, kind=kind, event_key=key, payload=payload)
    if status_route:
        return HttpResponse(status=204)
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


@csrf_exempt
@require_POST
def twilio_inbound(request: HttpRequest, webhook_id: UUID) -> HttpResponse:
    return _twilio(request, webhook_id, status_route=False)


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest, webhook_id: UUID) -> HttpResponse:
    return _twilio(request, webhook_id, status_route=True)


@csrf_exempt
@require_POST
def telnyx_webhook(request: HttpRequest, webhook_id: UUID) -> HttpResponse:
    account = selectors.sms_account_for_webhook(webhook_id=webhook_id, kind=Provider.TELNYX)
    if account is None:
        return _refused("unknown account", 404)
    body = request.body[: MAX_BODY + 1]
    if len(body) > MAX_BODY:
        return _refused("too large", 413)
    if not verify_signature(
        public_key=account.public_key,
        body=body,
        signature=request.headers.get(SIGNATURE_HEADER, ""),
        timestamp=request.headers.get(TIMESTAMP_HEADER, ""),
        tolerance_s=float(settings.TELNYX_WEBHOOK_TOLERANCE_S),
    ):
        logger.warning("Telnyx webhook for account %s: bad signature; refused", account.pk)
        return _refused("invalid signature")
    try:
        document = json.loads(body)
    except ValueError:
        return _refused("not JSON", 400)
    event = telnyx_payload(document, message_id=request.GET.get("m", ""))
    if event is not None:
        kind, key, payload = event
        receipt_store(account=account, kind=kind, event_key=key, payload=payload)
    return HttpResponse(status=204)
