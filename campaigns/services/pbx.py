"""Writes for PBXs, and resolving a PBX's ARI password from its one configured source."""

from __future__ import annotations

import os
import re
import string
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from campaigns.models import Pbx
from orchestrator import crypto
from orchestrator.errors import InvalidInput, full_clean_or_raise
from tenants.models import Tenant

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def validate_endpoint_template(template: str) -> None:
    """A dial string such as ``PJSIP/{number}@trunk``: a technology, a ``/``, and ``{number}`` as the only
    placeholder (so ``str.format(number=...)`` cannot fail or reach anything else)."""
    if "/" not in template:
        raise InvalidInput(
            "endpoint_template", "must contain a '/' (technology/resource, e.g. PJSIP/{number}@trunk)"
        )
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise InvalidInput("endpoint_template", f"is not a valid template ({exc})") from exc
    if "number" not in fields:
        raise InvalidInput("endpoint_template", "must contain {number}")
    if any(name != "number" for name in fields):
        raise InvalidInput("endpoint_template", "may only contain the {number} placeholder")


def validate_password_env(name: str) -> None:
    if not _ENV_NAME.fullmatch(name):
        raise InvalidInput("password_env", f"{name!r} is not an environment variable name")


def validate_ari_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("ari_url", f"{url!r} must be an http:// or https:// URL with a host")


def pbx_apply_password(*, pbx: Pbx, password: str | None = None, password_env: str | None = None) -> None:
    """Set the PBX's password source on the instance (not saved): exactly one of ``password`` (stored
    encrypted) or ``password_env`` (the name of an environment variable read at connect time)."""
    if (password is None) == (password_env is None):
        raise InvalidInput("password", "give exactly one of password or password_env")
    if password is not None:
        if not password:
            raise InvalidInput("password", "must not be empty")
        pbx.password_encrypted = crypto.encrypt(password)
        pbx.password_env = ""
    elif password_env is not None:
        validate_password_env(password_env)
        pbx.password_env = password_env
        pbx.password_encrypted = ""


def pbx_create(
    *,
    tenant: Tenant,
    name: str,
    ari_url: str,
    ari_user: str,
    password: str | None = None,
    password_env: str | None = None,
    app_name: str = "ai_agent",
    endpoint_template: str = "PJSIP/{number}@trunk",
    max_channels: int = 100,
    calls_per_second: int = 10,
    enabled: bool = True,
) -> Pbx:
    validate_ari_url(ari_url)
    validate_endpoint_template(endpoint_template)
    pbx = Pbx(
        tenant=tenant,
        name=name,
        ari_url=ari_url,
        ari_user=ari_user,
        app_name=app_name,
        endpoint_template=endpoint_template,
        max_channels=max_channels,
        calls_per_second=calls_per_second,
        enabled=enabled,
    )
    pbx_apply_password(pbx=pbx, password=password, password_env=password_env)
    full_clean_or_raise(pbx)
    pbx.save()
    return pbx


def pbx_set_password(*, pbx: Pbx, password: str | None = None, password_env: str | None = None) -> Pbx:
    """Replace the PBX's ARI password source (see :func:`pbx_apply_password`)."""
    pbx_apply_password(pbx=pbx, password=password, password_env=password_env)
    pbx.save(update_fields=["password_encrypted", "password_env"])
    return pbx


def pbx_password(*, pbx: Pbx) -> str:
    """The PBX's ARI password, from its environment variable or decrypted.

    ``ImproperlyConfigured`` when the variable is unset or the token cannot be decrypted with the
    configured FIELD_ENCRYPTION_KEY: both are deployment errors that retrying will not fix.
    """
    if pbx.password_env:
        value = os.environ.get(pbx.password_env)
        if value is None:
            raise ImproperlyConfigured(
                f"PBX {pbx.name!r} (id {pbx.pk}) takes its ARI password from the environment variable "
                f"{pbx.password_env}, which is not set."
            )
        return value
    try:
        return crypto.decrypt(pbx.password_encrypted)
    except crypto.InvalidToken as exc:
        raise ImproperlyConfigured(
            f"PBX {pbx.name!r} (id {pbx.pk}): the stored ARI password cannot be decrypted with "
            "FIELD_ENCRYPTION_KEY (was the key changed without keeping the old one?)."
        ) from exc


_PBX_UPDATABLE = (
    "name",
    "ari_url",
    "ari_user",
    "app_name",
    "endpoint_template",
    "max_channels",
    "calls_per_second",
    "enabled",
)


def pbx_update(
    *, pbx: Pbx, password: str | None = None, password_env: str | None = None, **changes: Any
) -> Pbx:
    """Change PBX settings and, when ``password`` or ``password_env`` is given, its password source; all
    or nothing."""
    unknown = sorted(set(changes) - set(_PBX_UPDATABLE))
    if unknown:
        raise InvalidInput(unknown[0], "cannot be changed")
    if "ari_url" in changes:
        validate_ari_url(changes["ari_url"])
    if "endpoint_template" in changes:
        validate_endpoint_template(changes["endpoint_template"])
    for field, value in changes.items():
        setattr(pbx, field, value)
    fields = list(changes)
    if password is not None or password_env is not None:
        pbx_apply_password(pbx=pbx, password=password, password_env=password_env)
        fields += ["password_encrypted", "password_env"]
    full_clean_or_raise(pbx)
    with transaction.atomic():
        if fields:
            pbx.save(update_fields=fields)
    return pbx


def pbx_delete(*, pbx: Pbx) -> None:
    """Delete a PBX; its past attempts keep their history (``pbx`` becomes null)."""
    pbx.delete()
