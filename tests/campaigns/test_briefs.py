"""The call brief for the media worker (what it reads from Redis to run the call): its content, built from the
rows the originate has loaded (no query), and written to Redis with its TTL by both originate paths right
before the POST, against the PBX simulator. A Redis failure does not lose the call."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from campaigns.disclosure import AI_DISCLOSURE_INSTRUCTION, RECORDING_NOTICE
from campaigns.models import AgentProfile, CallAttempt, Campaign, Lead
from campaigns.selectors import attempt_for_originate
from campaigns.services import briefs
from campaigns.services.briefs import brief_build, brief_key, brief_ttl_s, brief_write
from campaigns.services.dispatch import dispatch_tenant
from campaigns.tasks import dispatch_tenant_task, originate_attempt
from orchestrator.redis_client import get_redis
from telephony.ari import AriClient
from tests.campaigns.factories import make_agent, make_contact
from tests.campaigns.test_tasks import (
    PASSWORD_ENV,
    ThreadedSim,
    _run_sim,
    add_leads,
    dialing_tenant,
    open_zone,
    own_limiter_keys,  # noqa: F401 - autouse fixture: limiter keys of this test's own
    queued_attempt,
)
from tests.telephony.sim.conftest import PASSWORD


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThreadedSim]:
    """The PBX simulator (callees ring until the originate times out), as in test_tasks."""
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    yield from _run_sim({"default": "no_answer"})


@pytest.fixture
def handed_off(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Originate tasks the dispatch task would have enqueued (none expected)."""
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(originate_attempt, "apply_async", lambda *args, **kwargs: sent.append(args))
    return sent


@pytest.fixture(autouse=True)
def brief_limits(settings: Any) -> None:
    settings.MAX_CALL_DURATION_S = 600
    settings.MEDIA_SILENCE_PROMPT_S = 10
    settings.MEDIA_SILENCE_END_S = 25
    settings.TRANSFER_TIMEOUT_S = 30


def stored_brief(attempt_id: Any) -> dict[str, Any]:
    raw = get_redis().get(brief_key(attempt_id))
    assert raw is not None, "no brief stored"
    brief: dict[str, Any] = json.loads(raw)
    return brief


def claimed(tenant: Any) -> list[CallAttempt]:
    """A dispatch pass's attempts as it hands them to the originate (after its commit)."""
    got: list[CallAttempt] = []
    with TestCase.captureOnCommitCallbacks(execute=True):
        dispatch_tenant(tenant_id=tenant.pk, on_commit_attempts=got.extend)
    return got


def agent_attempt(base_url: str = "http://127.0.0.1:9", **agent_fields: Any) -> CallAttempt:
    """A queued attempt (through a dispatch pass) whose campaign has an agent with ``agent_fields``."""
    tenant, campaign, _ = dialing_tenant(base_url=base_url, endpoint_template="Local/{number}@sim")
    fields: dict[str, Any] = {
        "instructions": "You call {{first_name}} ({{name}}) about {{product}}.{{unknown}}",
        "greeting": "Hi {{first_name}}, this is Sam.",
        "voice": "marin",
        "language": "en",
        "tools": ["end_call", "transfer_to_human", "add_to_dnc"],
        "transfer_numbers": ["+12125550199"],
        "turn_detection": "semantic_vad",
    }
    fields.update(agent_fields)
    campaign.agent = make_agent(tenant, **fields)
    campaign.save(update_fields=["agent"])
    make_contact(
        tenant,
        "+12125550177",
        name="Dana Smith",
        timezone=open_zone(),
        variables={"first_name": "Dana", "product": "solar panels"},
    )
    contact = tenant.contacts.get(phone_number="+12125550177")
    Lead.objects.create(campaign=campaign, contact=contact, next_due_at=campaign.created_at)
    [attempt] = claimed(tenant)
    return attempt


@pytest.mark.django_db
def test_the_brief_has_every_field_of_the_contract():
    attempt = agent_attempt()
    loaded = attempt_for_originate(attempt_id=attempt.pk)
    assert loaded is not None

    brief = brief_build(attempt=loaded)

    call_id = str(attempt.pk)
    assert brief == {
        "v": 1,
        "call_id": call_id,
        "attempt_id": call_id,
        "tenant_id": attempt.tenant_id,
        "campaign_id": attempt.campaign_id,
        "lead_id": attempt.lead_id,
        "pbx_id": attempt.pbx_id,
        "command_key": f"stasis:commands:{attempt.pbx_id}",
        "number": "+12125550177",
        "caller_id": attempt.campaign.caller_id,
        "timezone": open_zone(),
        # Every call discloses the AI first, and the agent is told never to deny being one.
        "instructions": f"You call Dana (Dana Smith) about solar panels.\n\n{AI_DISCLOSURE_INSTRUCTION}",
        "greeting": (
            f"This is an AI assistant calling on behalf of {attempt.tenant.name}. Hi Dana, this is Sam."
        ),
        "voice": "marin",
        "model": "gpt-realtime",
        "language": "en",
        "turn_detection": "semantic_vad",
        "tools": ["end_call", "transfer_to_human", "add_to_dnc"],
        "transfer_targets": [{"number": "+12125550199", "endpoint": "Local/+12125550199@sim"}],
        "limits": {"max_call_s": 600, "silence_prompt_s": 10, "silence_end_s": 25, "transfer_timeout_s": 30},
        "contact": {"name": "Dana Smith", "variables": {"first_name": "Dana", "product": "solar panels"}},
        "recording": {"mode": "never"},
        "transfer": {"targets": []},
        "amd": {"enabled": False, "notsure": "human"},
        "voicemail": {"action": "hang_up", "text": "", "audio_key": "", "max_wait_s": 30.0},
        "machine_detection": {"media": True},
    }
    json.dumps(brief)  # JSON as it is


@pytest.mark.django_db
def test_a_contact_variable_named_name_wins_over_the_contact_name():
    attempt = agent_attempt(instructions="Ask for {{name}}.", greeting="")
    contact = attempt.lead.contact
    contact.variables = {"name": "Mr. Smith"}
    contact.save(update_fields=["variables"])
    loaded = attempt_for_originate(attempt_id=attempt.pk)
    assert loaded is not None
    brief = brief_build(attempt=loaded)
    assert brief["instructions"] == f"Ask for Mr. Smith.\n\n{AI_DISCLOSURE_INSTRUCTION}"
    # No greeting of its own: the disclosure alone.
    assert brief["greeting"] == f"This is an AI assistant calling on behalf of {attempt.tenant.name}."


@pytest.mark.django_db
def test_first_name_is_the_first_word_of_the_name_when_the_contact_has_no_such_variable():
    attempt = agent_attempt(instructions="Ask for {{first_name}}.", greeting="Hi {{first_name}}!")
    contact = attempt.lead.contact
    contact.variables = {}
    contact.save(update_fields=["variables"])
    loaded = attempt_for_originate(attempt_id=attempt.pk)
    assert loaded is not None
    brief = brief_build(attempt=loaded)
    assert brief["instructions"].startswith("Ask for Dana.\n\n")
    assert brief["greeting"].endswith(". Hi Dana!")


@pytest.mark.django_db
def test_building_the_brief_reads_nothing_from_the_database_on_either_originate_path():
    attempt = agent_attempt()
    loaded = attempt_for_originate(attempt_id=attempt.pk)  # the originate task's one read
    with CaptureQueriesContext(connection) as ctx:
        brief_build(attempt=loaded)  # type: ignore[arg-type]
    assert ctx.captured_queries == []

    # The dispatch pass's attempts (originated in the dispatch task) come with everything loaded too.
    tenant = attempt.tenant
    add_leads(attempt.campaign, 1)
    [again] = claimed(tenant)
    with CaptureQueriesContext(connection) as ctx:
        brief_build(attempt=again)
    assert ctx.captured_queries == []


@pytest.mark.django_db
def test_brief_write_sets_the_key_with_the_ttl_of_the_longest_call():
    attempt = agent_attempt()
    loaded = attempt_for_originate(attempt_id=attempt.pk)
    assert loaded is not None
    try:
        brief_write(attempt=loaded)
        ttl = get_redis().ttl(brief_key(attempt.pk))
        expected = loaded.campaign.ring_timeout + 600 + 300
        assert brief_ttl_s(attempt=loaded) == expected
        assert expected - 5 <= ttl <= expected
        assert stored_brief(attempt.pk)["call_id"] == str(attempt.pk)
    finally:
        get_redis().delete(brief_key(attempt.pk))


@pytest.mark.django_db
def test_the_originate_task_writes_the_brief_before_placing_the_call(sim, monkeypatch):
    attempt = queued_attempt(base_url=sim.base)
    seen: list[Any] = []
    real_originate = AriClient.originate

    def originate(self: Any, **kwargs: Any) -> Any:
        seen.append(get_redis().get(brief_key(kwargs["channel_id"])))  # already there when the POST goes
        return real_originate(self, **kwargs)

    monkeypatch.setattr(AriClient, "originate", originate)
    try:
        assert originate_attempt.run(str(attempt.pk)) == "originated"

        assert seen and seen[0] is not None
        brief = stored_brief(attempt.pk)
        assert brief["call_id"] == str(attempt.pk)
        assert brief["number"] == attempt.number
        assert brief["turn_detection"] == AgentProfile.TurnDetection.SERVER_VAD
        ttl = get_redis().ttl(brief_key(attempt.pk))
        assert 20 + 600 + 300 - 5 <= ttl <= 20 + 600 + 300
    finally:
        get_redis().delete(brief_key(attempt.pk))


@pytest.mark.django_db(transaction=True)
def test_the_dispatch_task_writes_the_briefs_of_the_calls_it_places(sim, handed_off):
    tenant, campaign, pbx = dialing_tenant(base_url=sim.base, cap=2)
    add_leads(campaign, 2)
    try:
        assert dispatch_tenant_task.run(tenant.pk) == 2
        assert handed_off == []
        for attempt in CallAttempt.objects.filter(tenant=tenant):
            brief = stored_brief(attempt.pk)
            assert (brief["attempt_id"], brief["pbx_id"], brief["number"]) == (
                str(attempt.pk),
                pbx.pk,
                attempt.number,
            )
    finally:
        for pk in CallAttempt.objects.filter(tenant=tenant).values_list("pk", flat=True):
            get_redis().delete(brief_key(pk))


class BrokenRedis:
    def set(self, *args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("Redis is down")


@pytest.mark.django_db
def test_a_brief_that_cannot_be_written_does_not_stop_the_call(sim, monkeypatch, caplog):
    attempt = queued_attempt(base_url=sim.base)
    monkeypatch.setattr(briefs, "get_redis", BrokenRedis)

    with caplog.at_level(logging.WARNING, logger="campaigns.services.originate"):
        assert originate_attempt.run(str(attempt.pk)) == "originated"

    assert [call["id"] for call in sim.calls()] == [str(attempt.pk)]
    assert "call brief not written" in caplog.text


# ------------------------------------------------------------------------------------------ AI disclosure


@pytest.mark.django_db
def test_the_greeting_starts_with_the_campaigns_disclosure_for_the_tenants_name():
    attempt = agent_attempt()
    Campaign.objects.filter(pk=attempt.campaign_id).update(disclosure="Hi, {company}'s AI assistant here.")
    type(attempt.tenant).objects.filter(pk=attempt.tenant_id).update(name="Acme\nSolar\x1b[31m")
    loaded = attempt_for_originate(attempt_id=attempt.pk)
    assert loaded is not None
    brief = brief_build(attempt=loaded)
    # The tenant's name is prompt input: its control characters do not reach the agent.
    assert brief["greeting"] == "Hi, Acme Solar [31m's AI assistant here. Hi Dana, this is Sam."
    assert brief["instructions"].endswith(AI_DISCLOSURE_INSTRUCTION)


@pytest.mark.django_db
def test_a_recorded_campaign_says_so_after_the_disclosure():
    attempt = agent_attempt()
    loaded = attempt_for_originate(attempt_id=attempt.pk)
    assert loaded is not None
    loaded.campaign.recording_mode = "always"
    greeting = brief_build(attempt=loaded)["greeting"]
    assert greeting.startswith(
        f"This is an AI assistant calling on behalf of {loaded.tenant.name}. {RECORDING_NOTICE}"
    )
    loaded.campaign.recording_mode = "never"
    assert RECORDING_NOTICE not in brief_build(attempt=loaded)["greeting"]


@pytest.mark.django_db
def test_the_brief_lists_the_campaigns_transfer_targets_without_a_query():
    from campaigns.services.transfers import campaign_set_transfer_targets, transfer_target_create

    attempt = agent_attempt()
    tenant = attempt.tenant
    desk = transfer_target_create(tenant=tenant, name="Desk", number="+12125550190", mode="cold")
    team = transfer_target_create(
        tenant=tenant, name="Team", kind="group", members=[{"name": "Sam", "number": "+12125550191"}]
    )
    campaign_set_transfer_targets(campaign=attempt.campaign, target_ids=[team.pk, desk.pk])
    loaded = attempt_for_originate(attempt_id=attempt.pk)
    with CaptureQueriesContext(connection) as ctx:
        brief = brief_build(attempt=loaded)  # type: ignore[arg-type]
    assert ctx.captured_queries == []
    assert brief["transfer"] == {
        "targets": [
            {"id": team.pk, "name": "Team", "kind": "group", "mode": "warm"},
            {"id": desk.pk, "name": "Desk", "kind": "number", "mode": "cold"},
        ]
    }
    # The briefed human's answer comes with transfer_to_human when the campaign has targets.
    assert ("transfer_to_human" in brief["tools"]) == ("transfer_decision" in brief["tools"])
