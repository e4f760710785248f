"""Writes for a tenant's SMS account, and resolving its credentials and webhook URLs.

Who may do what (DESIGN.md §5 rule 8, as for PBXs): the **operator** (admin) may name an environment
variable holding the secret (``secret_env``); a **tenant** (API) stores its own secret, encrypted, and any
``api_base`` it gives must pass the URL policy (when saved here, and again when used by the provider).
Secrets are never returned.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from messaging.models import Provider, SmsAccount
from messaging.providers import ProviderConfig
from orchestrator import crypto
from orchestrator.errors import InvalidInput, full_clean_or_raise
from tenants.models import Tenant
from tenants.urlpolicy import UrlPolicy

E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TWILIO_SID = re.compile(r"AC[0-9a-fA-F]{32}")
MAX_FROM_NUMBERS = 20

_UNSET: Any = object()


def validate_e164(number: object, *, field: str) -> str:
    if not isinstance(number, str) or not E164.fullmatch(number):
        raise InvalidInput(field, "must be an E.164 number, e.g. +14155550123")
    return number


def _validate_from_numbers(numbers: object) -> list[str]:
    if not isinstance(numbers, list) or len(numbers) > MAX_FROM_NUMBERS:
        raise InvalidInput("from_numbers", f"must be a list of at most {MAX_FROM_NUMBERS} E.164 numbers")
    for number in numbers:
        validate_e164(number, field="from_numbers")
    return list(dict.fromkeys(numbers))


def _validate_public_key(key: str) -> None:
    try:
        raw = base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise InvalidInput("public_key", "must be the base64 of a 32-byte Ed25519 public key")


def _apply(
    account: SmsAccount,
    *,
    by_tenant: bool,
    kind: str = _UNSET,
    username: str = _UNSET,
    secret: str | None = None,
    secret_env: str | None = None,
    public_key: str = _UNSET,
    messaging_profile_id: str = _UNSET,
    api_base: str = _UNSET,
    from_numbers: list[str] = _UNSET,
    enabled: bool = _UNSET,
) -> None:
    if kind is not _UNSET:
        if kind not in Provider.values:
            raise InvalidInput("kind", f"must be one of {', '.join(Provider.values)}")
        account.kind = kind
    if username is not _UNSET:
        account.username = username
    if public_key is not _UNSET:
        account.public_key = public_key
    if messaging_profile_id is not _UNSET:
        account.messaging_profile_id = messaging_profile_id
    if api_base is not _UNSET:
        if api_base and by_tenant:
            UrlPolicy.from_settings().check_url(api_base, field="api_base")
        account.api_base = api_base
    if from_numbers is not _UNSET:
        account.from_numbers = _validate_from_numbers(from_numbers)
    if enabled is not _UNSET:
        account.enabled = enabled
    if secret is not None and secret_env is not None:
        raise InvalidInput("secret", "give at most one of secret or secret_env")
    if secret is not None:
        if not secret:
            raise InvalidInput("secret", "must not be empty")
        account.secret_encrypted = crypto.encrypt(secret)
        account.secret_env = ""
    if secret_env is not None:
        if by_tenant:
            raise InvalidInput("secret_env", "is an operator-only option: give secret (stored encrypted)")
        if not _ENV_NAME.fullmatch(secret_env):
            raise InvalidInput("secret_env", f"{secret_env!r} is not an environment variable name")
        account.secret_env = secret_env
        account.secret_encrypted = ""
    # What each provider needs to work at all.
    if account.kind == Provider.TWILIO and not _TWILIO_SID.fullmatch(account.username):
        raise InvalidInput("username", "must be the Twilio Account SID (AC followed by 32 hex digits)")
    if account.kind == Provider.TELNYX:
        _validate_public_key(account.public_key)
    if account.kind != Provider.CONSOLE and not (account.secret_env or account.secret_encrypted):
        raise InvalidInput("secret", "This field is required.")


def sms_account_create(*, tenant: Tenant, by_tenant: bool = True, **fields: Any) -> SmsAccount:
    """The tenant's SMS account (one per tenant). ``by_tenant``: the request comes from the tenant (API),
    not the operator (admin): no ``secret_env``, ``api_base`` checked against the URL policy."""
    account = SmsAccount(tenant=tenant, kind=fields.pop("kind", Provider.CONSOLE))
    _apply(account, by_tenant=by_tenant, **fields)
    full_clean_or_raise(account)
    with transaction.atomic():
        account.save()
    return account


def sms_account_update(*, account: SmsAccount, by_tenant: bool = True, **changes: Any) -> SmsAccount:
    _apply(account, by_tenant=by_tenant, **changes)
    full_clean_or_raise(account)
    account.save()
    return account


def sms_account_delete(*, account: SmsAccount) -> None:
    """The tenant's messages then go through the console provider; past messages keep their rows."""
    account.delete()


def sms_account_has_secret(account: SmsAccount) -> bool:
    """Whether the account has a secret (stored or named by environment variable); never the secret."""
    return bool(account.secret_encrypted or account.secret_env)


def sms_account_secret(account: SmsAccount) -> str:
    """The account's secret from its one source ("" for none)."""
    if account.secret_env:
        value = os.environ.get(account.secret_env)
        if value is None:
            raise ImproperlyConfigured(
                f"SMS account {account.pk}: environment variable {account.secret_env} is not set"
            )
        return value
    if account.secret_encrypted:
        return crypto.decrypt(account.secret_encrypted)
    return ""


def provider_config(account: SmsAccount | None) -> ProviderConfig:
    """What the provider needs to send for ``account`` (the console provider without one)."""
    timeout = float(settings.SMS_PROVIDER_TIMEOUT_S)
    if account is None:
        return ProviderConfig(kind=Provider.CONSOLE, timeout_s=timeout)
    defaults = {Provider.TWILIO: settings.TWILIO_API_BASE, Provider.TELNYX: settings.TELNYX_API_BASE}
    return ProviderConfig(
        kind=account.kind,
        username=account.username,
        secret=sms_account_secret(account),
        api_base=account.api_base or defaults.get(Provider(account.kind), ""),
        tenant_url=bool(account.api_base),
        messaging_profile_id=account.messaging_profile_id,
        timeout_s=timeout,
    )


# ------------------------------------------------------------------------------------------ webhook URLs
def _base() -> str:
    return str(settings.PUBLIC_BASE_URL).rstrip("/")


def twilio_inbound_url(account: SmsAccount) -> str:
    return f"{_base()}/webhooks/sms/twilio/{account.webhook_id}/inbound"


def twilio_status_url(account: SmsAccount, *, message_id: int | None = None) -> str:
    url = f"{_base()}/webhooks/sms/twilio/{account.webhook_id}/status"
    return f"{url}?m={message_id}" if message_id is not None else url


def telnyx_webhook_url(account: SmsAccount, *, message_id: int | None = None) -> str:
    url = f"{_base()}/webhooks/sms/telnyx/{account.webhook_id}"
    return f"{url}?m={message_id}" if message_id is not None else url


def webhook_urls(account: SmsAccount) -> dict[str, str]:
    """The URLs to configure at the provider (shown by the API and the admin)."""
    if account.kind == Provider.TWILIO:
        return {"inbound": twilio_inbound_url(account), "status": twilio_status_url(account)}
    if account.kind == Provider.TELNYX:
        return {"inbound": telnyx_webhook_url(account), "status": telnyx_webhook_url(account)}
    return {}


@dataclass(frozen=True)
class WebhookStatus:
    """What a tenant needs to know about its provider webhooks: the URLs to paste at the provider, how
    their signature is checked, and whether they can be accepted now (``problem`` says why not)."""

    urls: dict[str, str]
    signature: str
    problem: str
    last_received_at: datetime | None

    @property
    def ready(self) -> bool:
        return not self.problem


def webhook_status(account: SmsAccount) -> WebhookStatus:
    """The webhook state of ``account`` (messaging/views.py refuses what these checks would refuse)."""
    last = account.receipts.order_by("-received_at").values_list("received_at", flat=True).first()
    urls = webhook_urls(account)
    problem = ""
    if account.kind == Provider.TWILIO:
        signature = (
            "Twilio signs each request (X-Twilio-Signature) with your Auth Token; unsigned or wrongly "
            "signed requests are refused."
        )
        if not sms_account_has_secret(account):
            problem = "No Auth Token is set: every webhook would be refused."
    elif account.kind == Provider.TELNYX:
        signature = (
            "Telnyx signs each request with Ed25519; it is checked with your webhook public key, and old "
            "or wrongly signed requests are refused."
        )
        if not account.public_key:
            problem = "No webhook public key is set: every webhook would be refused."
    else:
        signature = "The console provider sends nothing and receives no webhooks."
    if urls and not account.enabled:
        problem = "The account is disabled: its webhook URLs answer 404 until it is enabled."
    return WebhookStatus(urls=urls, signature=signature, problem=problem, last_received_at=last)
