"""The schema: the models and the migrations agree, and the agent call results migration (0004) applies to a
database holding rows, backwards and forwards (PostgreSQL, and SQLite by default)."""

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

    assert {"transcript", "media_metrics", "disposition", "callback_at", "transferred_to"} <= columns(
        "campaigns_callattempt"
    )
    attempt = CallAttempt.objects.get(pk=attempt.pk)
    assert (attempt.transcript, attempt.media_metrics, attempt.disposition) == ([], {}, "")
    assert (attempt.callback_at, attempt.transferred_to) == (None, "")
    assert AgentProfile.objects.get(pk=agent_id).turn_detection == "server_vad"
