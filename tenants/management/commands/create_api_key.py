"""``manage.py create_api_key --tenant <slug> [--name ...]``: a new API key for a tenant, printed once.

For when the key printed by ``create_tenant`` or ``seed_demo`` is lost: keys are stored only as hashes, so
a lost key cannot be shown again, only replaced (revoke the old one in the admin or with
``DELETE /api/v1/api-keys/{id}``). The key is made by ``tenants.services.api_key_create``, like the admin's
"Create an API key" action and ``POST /api/v1/api-keys``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from orchestrator.errors import InvalidInput
from tenants.selectors import tenant_by_slug
from tenants.services import api_key_create


class Command(BaseCommand):
    help = "Create a new API key for a tenant and print it once (it is stored only as a hash)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="The tenant's slug, e.g. demo.")
        parser.add_argument("--name", default="manage.py create_api_key", help="A name to tell keys apart.")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_by_slug(slug=options["tenant"])
        if tenant is None:
            raise CommandError(f"--tenant: no tenant with the slug {options['tenant']!r}")
        try:
            api_key, raw_key = api_key_create(tenant=tenant, name=options["name"])
        except InvalidInput as exc:
            raise CommandError(f"--{exc.field}: {exc.message}") from exc
        if not tenant.is_active:
            self.stderr.write(f"Tenant {tenant.slug!r} is suspended: the key works once it is active again.")
        self.stdout.write(f"API key {api_key.name!r} for tenant {tenant.slug!r} (shown only this once):")
        self.stdout.write("")
        self.stdout.write(f"    {raw_key}")
        self.stdout.write("")
        self.stdout.write("Store it now: only its hash is kept. A lost key is revoked and replaced.")
