"""The schema: the models and the migrations agree, the agent call results migration (0004) applies to a
database holding rows, backwards and forwards, and the PBX pool migration (0006) turns tenants' PBX rows
into platform PBXs they are placed on (PostgreSQL, and SQLite by default). Each test leaves the database at
the latest migration."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from campaigns.models import AgentProfile, CallAttempt
from tests.campaigns.factories import make_lead, make_tenant
from tests.campaigns.test_models import make_attempt

BEFORE = ("campaigns", "0003_attempt_live_indexes")
AFTER = ("campaigns", "0004_agent_call_results")


def columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {column.name for column in connection.introspection.get_table_description(cursor, table)}


def migrate(target: tuple[str, str]) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


def migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db
def test_every_model_change_has_its_migration():
    out = StringIO()
    call_command("makemigrations", "campaigns", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_agent_call_results_migration_applies_to_existing_rows_both_ways():
    lead = make_lead(make_tenant())
    attempt = make_attempt(lead)
    agent_id = lead.campaign.agent_id
    try:
        migrate(BEFORE)
        assert "transcript" not in columns("campaigns_callattempt")
        assert "turn_detection" not in columns("campaigns_agentprofile")
    finally:
        migrate(AFTER)
        migrate_to_latest()

    assert {"transcript", "media_metrics", "disposition", "callback_at", "transferred_to"} <= columns(
        "campaigns_callattempt"
    )
    attempt = CallAttempt.objects.get(pk=attempt.pk)
    assert (attempt.transcript, attempt.media_metrics, attempt.disposition) == ([], {}, "")
    assert (attempt.callback_at, attempt.transferred_to) == (None, "")
    assert AgentProfile.objects.get(pk=agent_id).turn_detection == "server_vad"


@pytest.mark.django_db(transaction=True)
def test_the_pbx_pool_migration_makes_tenants_pbx_rows_platform_pbxs_they_are_placed_on():
    """Before it, any tenant could create PBXs through the API: every row becomes a platform PBX (tenants
    can no longer change it) with a placement for its tenant; a name two tenants used gets a slug."""
    try:
        migrate(("campaigns", "0005_lead_wait_reason_outcomes"))
        with connection.cursor() as cursor:
            for slug in ("acme", "globex"):
                cursor.execute(
                    "INSERT INTO tenants_tenant (name, slug, default_timezone, max_concurrent_calls, "
                    "calls_per_second, inbound_reserve, status, allow_own_pbx, created_at) "
                    "VALUES (%s, %s, 'UTC', 5, 5, 0, 'active', false, CURRENT_TIMESTAMP)",
                    [slug.title(), slug],
                )
            cursor.execute("SELECT id, slug FROM tenants_tenant WHERE slug IN ('acme', 'globex')")
            tenant_ids = {slug: pk for pk, slug in cursor.fetchall()}
            for slug in ("acme", "globex"):
                cursor.execute(
                    "INSERT INTO campaigns_pbx (tenant_id, name, ari_url, ari_user, password_env, "
                    "password_encrypted, app_name, endpoint_template, max_channels, calls_per_second, "
                    "enabled) "
                    "VALUES (%s, 'main', 'http://pbx:8088/', 'ari', 'ARI_PW', '', 'ai_agent', "
                    "'PJSIP/{number}@trunk', 100, 10, true)",
                    [tenant_ids[slug]],
                )
    finally:
        migrate_to_latest()
    from campaigns.models import Pbx  # noqa: PLC0415

    pbxs = {pbx.name: pbx for pbx in Pbx.objects.prefetch_related("tenants")}
    assert set(pbxs) == {"main", "main (globex)"}
    assert all(pbx.owner_id is None and pbx.password_env == "ARI_PW" for pbx in pbxs.values())
    assert [t.slug for t in pbxs["main"].tenants.all()] == ["acme"]
    assert [t.slug for t in pbxs["main (globex)"].tenants.all()] == ["globex"]
