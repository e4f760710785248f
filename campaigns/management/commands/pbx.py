"""``manage.py pbx``: the operator's PBX pool (DESIGN.md §5 rule 8).

    manage.py pbx list
    manage.py pbx add NAME --ari-url URL --ari-user USER (--password-env VAR | --password-stdin)
                      [--app-name ai_agent] [--endpoint-template 'PJSIP/{number}@trunk']
                      [--max-channels 100] [--calls-per-second 10] [--disabled]
    manage.py pbx place NAME --tenant SLUG [--max-channels N]     (the tenant's share; repeat to change it)
    manage.py pbx unplace NAME --tenant SLUG
    manage.py pbx allow-own --tenant SLUG [--no]                  (may the tenant bring its own PBX?)

Platform PBXs are the operator's: tenants are placed on them and see only a name, their share and whether
it is up. The password is read from an environment variable at use time (``--password-env``, e.g. a
secret mounted by the orchestration) or stored encrypted (``--password-stdin``); it never appears on a
command line.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaigns.models import Pbx
from campaigns.services.pbx import pbx_create, pbx_place, pbx_unplace
from orchestrator.errors import InvalidInput
from tenants.models import Tenant
from tenants.services import tenant_set_allow_own_pbx


def _tenant(slug: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"no tenant with slug {slug!r}")
    return tenant


def _platform_pbx(name: str) -> Pbx:
    pbx = Pbx.objects.filter(owner__isnull=True, name=name).first()
    if pbx is None:
        raise CommandError(f"no platform PBX named {name!r} (see `manage.py pbx list`)")
    return pbx


class Command(BaseCommand):
    help = "Manage the platform's PBX pool and which tenants may place calls on it."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="PBXs, their tenants and shares")
        add = sub.add_parser("add", help="a platform PBX")
        add.add_argument("name")
        add.add_argument("--ari-url", required=True)
        add.add_argument("--ari-user", required=True)
        secret = add.add_mutually_exclusive_group(required=True)
        secret.add_argument("--password-env", help="read the ARI password from this environment variable")
        secret.add_argument(
            "--password-stdin", action="store_true", help="store (encrypted) a password read from stdin"
        )
        add.add_argument("--app-name", default="ai_agent")
        add.add_argument("--endpoint-template", default="PJSIP/{number}@trunk")
        add.add_argument("--max-channels", type=int, default=100)
        add.add_argument("--calls-per-second", type=int, default=10)
        add.add_argument("--disabled", action="store_true")
        for name, text in (("place", "let a tenant place calls on a PBX"), ("unplace", "stop that")):
            p = sub.add_parser(name, help=text)
            p.add_argument("name")
            p.add_argument("--tenant", required=True, help="the tenant's slug")
            if name == "place":
                p.add_argument("--max-channels", type=int, help="the tenant's share of the PBX's channels")
        own = sub.add_parser("allow-own", help="allow (or with --no, forbid) a tenant to bring its own PBX")
        own.add_argument("--tenant", required=True)
        own.add_argument("--no", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            getattr(self, f"_{action.replace('-', '_')}")(options)
        except InvalidInput as exc:
            raise CommandError(f"{exc.field}: {exc.message}") from exc

    def _list(self, options: dict[str, Any]) -> None:
        for pbx in Pbx.objects.prefetch_related("placements__tenant").order_by("owner_id", "name"):
            whose = "platform" if pbx.is_platform else f"own PBX of {pbx.owner}"
            state = "enabled" if pbx.enabled else "disabled"
            self.stdout.write(
                f"{pbx.pk}\t{pbx.name}\t{whose}\t{pbx.ari_url}\t{pbx.max_channels} channels\t{state}"
            )
            for placement in pbx.placements.all():
                share = placement.max_channels if placement.max_channels is not None else "-"
                self.stdout.write(f"\t\ttenant {placement.tenant.slug}\tshare {share}")

    def _add(self, options: dict[str, Any]) -> None:
        password = None
        if options["password_stdin"]:
            password = sys.stdin.readline().rstrip("\n")
        pbx = pbx_create(
            name=options["name"],
            ari_url=options["ari_url"],
            ari_user=options["ari_user"],
            password=password,
            password_env=options["password_env"],
            app_name=options["app_name"],
            endpoint_template=options["endpoint_template"],
            max_channels=options["max_channels"],
            calls_per_second=options["calls_per_second"],
            enabled=not options["disabled"],
        )
        self.stdout.write(f"added platform PBX {pbx.name!r} (id {pbx.pk})")

    def _place(self, options: dict[str, Any]) -> None:
        pbx, tenant = _platform_pbx(options["name"]), _tenant(options["tenant"])
        placement = pbx_place(pbx=pbx, tenant=tenant, max_channels=options.get("max_channels"))
        self.stdout.write(f"tenant {tenant.slug!r} placed on {pbx.name!r} (share {placement.max_channels})")

    def _unplace(self, options: dict[str, Any]) -> None:
        pbx, tenant = _platform_pbx(options["name"]), _tenant(options["tenant"])
        done = pbx_unplace(pbx=pbx, tenant=tenant)
        self.stdout.write(f"tenant {tenant.slug!r} {'taken off' if done else 'was not on'} {pbx.name!r}")

    def _allow_own(self, options: dict[str, Any]) -> None:
        tenant = tenant_set_allow_own_pbx(tenant=_tenant(options["tenant"]), allowed=not options["no"])
        self.stdout.write(f"tenant {tenant.slug!r} may bring its own PBX: {tenant.allow_own_pbx}")
