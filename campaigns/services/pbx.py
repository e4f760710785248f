"""Writes for PBXs: the platform's pool (the operator's), tenants placed on it, and the PBXs tenants bring
when the operator allows it; resolving a PBX's ARI password from its one configured source.

Who may do what (DESIGN.md §5 rule 8; campaigns.models.Pbx):

* The **operator** (admin, ``manage.py pbx``) creates platform PBXs (``owner=None``), whose password may come
  from an environment variable, and places tenants on them (:func:`pbx_place`, with a share of channels).
* A **tenant** (API) may create and change only its own PBXs, and only when ``Tenant.allow_own_pbx``: the
  ARI URL must pass the URL policy (:mod:`tenants.urlpolicy`), the password is only ever stored encrypted,
  and naming an environment variable is refused (it would hand the platform's secrets to the tenant's
  listener). Platform PBXs are read-only to tenants.
"""

from __future__ import annotations

import os
import re
import string
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

from campaigns.models import Pbx, PbxPlacement
from orchestrator import crypto
from orchestrator.errors import InvalidInput, full_clean_or_raise
from telephony.ari import AriClient, PbxConfig
from telephony.pool import ari_clients
from tenants.models import Tenant
from tenants.urlpolicy import PolicyTransport, UrlNotAllowed, UrlPolicy

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# ARI application names: at most 73 characters (PROTOCOLS.md §1.3); no separators that Stasis() splits on.
_APP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,73}")


class PbxNotAllowed(Exception):
    """The tenant may not do this with PBXs (bring its own without the operator's leave, change a platform
    PBX). Answered 403 by the API."""


def validate_endpoint_template(template: str) -> None:
    """A dial string such as ``PJSIP/{number}@trunk``: a technology, a ``/``, and ``{number}`` as the only
    placeholder (so ``str.format(number=...)`` cannot fail or reach anything else)."""
    if "/" not in template:
        raise InvalidInput(
            "endpoint_template", "must contain a '/' (technology/resource, e.g. PJSIP/{number}@trunk)"
        )
    if any(ch in template for ch in "\r\n\t\0"):
        raise InvalidInput("endpoint_template", "must not contain control characters")
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


def validate_app_name(name: str) -> None:
    if not _APP_NAME.fullmatch(name):
        raise InvalidInput("app_name", "must be 1 to 73 letters, digits, '_', '.' or '-'")


def validate_ari_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("ari_url", f"{url!r} must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("ari_url", "must not carry credentials: give ari_user and the password")


def validate_own_ari_url(url: str) -> None:
    """A tenant-supplied ARI URL: the URL policy (public addresses only unless the operator allows)."""
    validate_ari_url(url)
    UrlPolicy.from_settings().check_url(url, field="ari_url")


def pbx_apply_password(*, pbx: Pbx, password: str | None = None, password_env: str | None = None) -> None:
    """Set the PBX's password source on the instance (not saved): exactly one of ``password`` (stored
    encrypted) or ``password_env`` (the name of an environment variable read at connect time; platform
    PBXs only)."""
    if (password is None) == (password_env is None):
        raise InvalidInput("password", "give exactly one of password or password_env")
    if password is not None:
        if not password:
            raise InvalidInput("password", "must not be empty")
        pbx.password_encrypted = crypto.encrypt(password)
        pbx.password_env = ""
    elif password_env is not None:
        if pbx.owner_id is not None:
            raise InvalidInput(
                "password_env", "is an operator-only option: a tenant's own PBX takes a password (stored)"
            )
        validate_password_env(password_env)
        pbx.password_env = password_env
        pbx.password_encrypted = ""


def pbx_create(
    *,
    name: str,
    ari_url: str,
    ari_user: str,
    owner: Tenant | None = None,
    password: str | None = None,
    password_env: str | None = None,
    app_name: str = "ai_agent",
    endpoint_template: str = "PJSIP/{number}@trunk",
    max_channels: int = 100,
    calls_per_second: int = 10,
    enabled: bool = True,
) -> Pbx:
    """A platform PBX (``owner=None``, the operator's), or a tenant's own PBX (``owner``: only when the
    operator allows it, see the module docstring; the owner is placed on it)."""
    if owner is not None and not owner.allow_own_pbx:
        raise PbxNotAllowed(
            "this tenant calls through the platform's PBXs; bringing its own needs the operator's leave"
        )
    validate_ari_url(ari_url)
    if owner is not None:
        validate_own_ari_url(ari_url)
    validate_app_name(app_name)
    validate_endpoint_template(endpoint_template)
    pbx = Pbx(
        owner=owner,
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
    with transaction.atomic():
        pbx.save()
        if owner is not None:
            pbx_place(pbx=pbx, tenant=owner)
    return pbx


def pbx_place(*, pbx: Pbx, tenant: Tenant, max_channels: int | None = None) -> PbxPlacement:
    """Let ``tenant`` place calls on ``pbx`` (with a share of its channels, or none); idempotent, and a
    repeat sets the share. A tenant's own PBX takes only its owner."""
    if pbx.owner_id is not None and pbx.owner_id != tenant.pk:
        raise InvalidInput("tenant", "a tenant's own PBX serves only that tenant")
    if max_channels is not None and max_channels < 1:
        raise InvalidInput("max_channels", "must be at least 1")
    placement, created = PbxPlacement.objects.get_or_create(
        tenant=tenant, pbx=pbx, defaults={"max_channels": max_channels}
    )
    if not created and placement.max_channels != max_channels:
        placement.max_channels = max_channels
        placement.save(update_fields=["max_channels"])
    return placement


def pbx_unplace(*, pbx: Pbx, tenant: Tenant) -> bool:
    """``tenant`` places no new call on ``pbx`` (its live calls there go on); whether it was placed."""
    deleted, _ = PbxPlacement.objects.filter(tenant=tenant, pbx=pbx).delete()
    return deleted > 0


def pbx_set_password(*, pbx: Pbx, password: str | None = None, password_env: str | None = None) -> Pbx:
    """Replace the PBX's ARI password source (see :func:`pbx_apply_password`)."""
    pbx_apply_password(pbx=pbx, password=password, password_env=password_env)
    pbx.save(update_fields=["password_encrypted", "password_env"])
    return pbx


def pbx_password(*, pbx: Pbx) -> str:
    """The PBX's ARI password, from its environment variable (platform PBXs only) or decrypted.

    ``ImproperlyConfigured`` when the variable is unset or the token cannot be decrypted with the
    configured FIELD_ENCRYPTION_KEY: both are deployment errors that retrying will not fix.
    """
    if pbx.password_env:
        if pbx.owner_id is not None:  # refused on save; never read a tenant-named variable
            raise ImproperlyConfigured(
                f"PBX {pbx.name!r} (id {pbx.pk}) is a tenant's: its password is never an environment variable"
            )
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


def pbx_target_check(*, pbx: Pbx) -> UrlPolicy | None:
    """At use time: for a tenant's own PBX, the URL policy, after checking its ARI URL against it now (a
    name may resolve elsewhere than when it was saved); None for a platform PBX (the operator's URL).
    ``ImproperlyConfigured`` when the URL is refused: retrying will not help."""
    if pbx.owner_id is None:
        return None
    policy = UrlPolicy.from_settings()
    try:
        policy.check(pbx.ari_url)
    except UrlNotAllowed as exc:
        raise ImproperlyConfigured(
            f"PBX {pbx.name!r} (id {pbx.pk}): its ARI URL is not allowed: {exc}"
        ) from None
    return policy


def pbx_ari_config(*, pbx: Pbx) -> PbxConfig:
    """How to reach the PBX's ARI, as telephony takes it (a plain configuration, no row). Raises
    ``ImproperlyConfigured`` when its password cannot be had (see :func:`pbx_password`)."""
    return PbxConfig(
        base_url=pbx.ari_url,
        user=pbx.ari_user,
        password=pbx_password(pbx=pbx),
        app=pbx.app_name,
        endpoint_template=pbx.endpoint_template,
    )


def pbx_ari_client(*, pbx: Pbx) -> AriClient:
    """This process's pooled ARI client for the PBX (``telephony.pool``: rows that reach the same Asterisk
    the same way share one client; a row whose configuration or password changed gets a new one).

    A tenant's own PBX (its URL is tenant input) is checked against the URL policy here, at use time, and
    its client connects only to addresses the policy allows, checked again on every request
    (``tenants.urlpolicy.PolicyTransport``): ``ImproperlyConfigured`` when its URL is refused now.
    """
    policy = pbx_target_check(pbx=pbx)
    config = pbx_ari_config(pbx=pbx)
    if policy is None:
        return ari_clients.client_for(pbx.pk, config)

    def policy_transport(config: PbxConfig) -> httpx.BaseTransport:
        limits = httpx.Limits(
            max_connections=config.max_connections, max_keepalive_connections=config.max_connections
        )
        return PolicyTransport(policy, limits=limits)

    return ari_clients.client_for(pbx.pk, config, transport=policy_transport)


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
    *,
    pbx: Pbx,
    by_tenant: Tenant | None = None,
    password: str | None = None,
    password_env: str | None = None,
    **changes: Any,
) -> Pbx:
    """Change PBX settings and, when ``password`` or ``password_env`` is given, its password source; all
    or nothing. ``by_tenant``: the change comes from that tenant (API), which may change only its own PBX."""
    if by_tenant is not None and pbx.owner_id != by_tenant.pk:
        raise PbxNotAllowed("this PBX is operated by the platform: it cannot be changed by a tenant")
    unknown = sorted(set(changes) - set(_PBX_UPDATABLE))
    if unknown:
        raise InvalidInput(unknown[0], "cannot be changed")
    if "ari_url" in changes:
        validate_ari_url(changes["ari_url"])
        if pbx.owner_id is not None:
            validate_own_ari_url(changes["ari_url"])
    if "app_name" in changes:
        validate_app_name(changes["app_name"])
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


def pbx_delete(*, pbx: Pbx, by_tenant: Tenant | None = None) -> None:
    """Delete a PBX; its past attempts keep their history (``pbx`` becomes null). A tenant deletes only
    its own."""
    if by_tenant is not None and pbx.owner_id != by_tenant.pk:
        raise PbxNotAllowed("this PBX is operated by the platform: it cannot be deleted by a tenant")
    pbx.delete()
