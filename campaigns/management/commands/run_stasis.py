"""``manage.py run_stasis --pbx <id or name>``: run the Stasis app of one PBX until SIGTERM/SIGINT.

One process per Asterisk (DESIGN.md §2). It serves every PBX row that reaches the same ARI URL and app name
(one Asterisk shared by several tenants has one Stasis app). Call events go to the sink named by
``settings.TELEPHONY_EVENT_SINK`` (constructed with ``pbx_ids=``); AudioSocket legs go to
``settings.MEDIA_WORKER_HOSTS`` round-robin; calls are hung up after ``settings.MAX_CALL_DURATION_S``.
Call actions (hang up, transfer) are taken from ``settings.REDIS_URL`` (the embedded Redis when REDIS_URL is
unset), from the list ``stasis:commands:<id>`` of each PBX row served.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.module_loading import import_string

from campaigns.models import Pbx
from campaigns.services.pbx import pbx_password, pbx_target_check
from campaigns.sink import pbx_ids_sharing_app
from orchestrator.embedded_redis import EmbeddedRedisError
from orchestrator.metrics import start_metrics_server
from orchestrator.redis_client import ensure_embedded_redis
from telephony import metrics as stasis_metrics
from telephony.stasis import StasisApp, StasisConfig, command_key, run_until_signalled
from tenants.urlpolicy import PolicyResolver

logger = logging.getLogger(__name__)


def find_pbx(ref: str) -> Pbx:
    """A PBX by id, or by name when the name is unique (platform PBXs' names are)."""
    if ref.isdigit():
        pbx = Pbx.objects.filter(pk=int(ref)).first()
        if pbx is not None:
            return pbx
    matches = list(Pbx.objects.filter(name=ref)[:2])
    if not matches:
        raise CommandError(f"no PBX with id or name {ref!r}")
    if len(matches) > 1:
        raise CommandError(f"several PBXs are named {ref!r}: give the id")
    return matches[0]


class Command(BaseCommand):
    help = "Run the Stasis app (ARI events → call events, media bridging, reconciliation) for one PBX."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pbx", required=True, help="The PBX's id or (unique) name.")

    def handle(self, *args: Any, **options: Any) -> None:
        pbx = find_pbx(str(options["pbx"]))
        if not pbx.enabled:
            raise CommandError(f"PBX {pbx.name!r} (id {pbx.pk}) is disabled")
        password = pbx_password(pbx=pbx)
        resolver = None
        if not pbx.is_platform:  # a tenant's own PBX: its URL is tenant input (DESIGN.md §5 rule 8)
            try:
                policy = pbx_target_check(pbx=pbx)
            except ImproperlyConfigured as exc:
                raise CommandError(str(exc)) from exc
            assert policy is not None  # noqa: S101 - a tenant's PBX always has one
            resolver = PolicyResolver(policy)
        pbx_ids = pbx_ids_sharing_app(pbx)
        sink = import_string(settings.TELEPHONY_EVENT_SINK)(pbx_ids=pbx_ids)
        try:
            ensure_embedded_redis()
        except (EmbeddedRedisError, OSError) as exc:  # calls are handled all the same; commands retry
            logger.error("run_stasis: embedded Redis unavailable: %s", exc)
        config = StasisConfig(
            base_url=pbx.ari_url.rstrip("/"),
            user=pbx.ari_user,
            password=password,
            app=pbx.app_name,
            media_hosts=tuple(settings.MEDIA_WORKER_HOSTS),
            max_call_duration_s=float(settings.MAX_CALL_DURATION_S),
            redis_url=settings.REDIS_URL,
            command_keys=tuple(command_key(pbx_id) for pbx_id in pbx_ids),
            pbx_ids=tuple(str(pbx_id) for pbx_id in pbx_ids),
            inbound_message=settings.INBOUND_UNROUTED_MESSAGE,
            resolver=resolver,
        )
        logger.info(
            "run_stasis: PBX %s (id %s) app %s at %s, serving PBX rows %s, media %s, commands from %s",
            pbx.name,
            pbx.pk,
            pbx.app_name,
            config.base_url,
            pbx_ids,
            ", ".join(config.media_hosts),
            ", ".join(config.command_keys),
        )

        start_metrics_server(settings.STASIS_METRICS_LISTEN, name="STASIS_METRICS_LISTEN", what="run_stasis")

        async def main() -> None:
            app = StasisApp(config, sink)
            collector = stasis_metrics.register_app(app, pbx=",".join(str(pbx_id) for pbx_id in pbx_ids))
            try:
                await run_until_signalled(app, (signal.SIGTERM, signal.SIGINT))
            finally:
                stasis_metrics.unregister_app(collector)

        try:
            asyncio.run(main())
        finally:
            close = getattr(sink, "close", None)
            if callable(close):
                close()
