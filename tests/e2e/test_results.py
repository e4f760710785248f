"""Post-call results end to end on real processes: the PBX simulator, the Stasis app, Celery worker and beat,
the media worker and the Realtime-protocol stand-in. The callee presses 3, on which the stand-in's model
calls ``save_results`` (a rule given to it, as a real model would decide to); the media worker checks the
values by type and sends them; the orchestrator stores them; the call ends (the callee presses #: end_call);
the summary pass writes a summary; the tenant's webhook receiver gets ``call.ended`` with the saved results
and ``call.results`` with the summary, signed. Judged against the simulator's record of the call too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaigns.models import CallAttempt, Pbx
from campaigns.services.campaigns import campaign_start
from campaigns.services.contacts import lead_add
from campaigns.windows import WEEKDAYS
from integrations.services.endpoints import webhook_endpoint_create
from integrations.signing import verify
from orchestrator.celery import app
from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_pbx, make_tenant
from tests.e2e.stack import PASSWORD_ENV, SIM_APP, SIM_USER, Stack, wait_for, zone_where_it_is
from tests.integrations.receiver import Receiver

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

BUYER = "+12125559101"
PLAN = {
    "default": {"behaviour": "busy", "after": 0.1},
    "numbers": {
        BUYER: {
            "behaviour": "answer",
            "after": 0.5,
            "say": [{"at": 2.5, "text": "Yes, I am interested."}],
            "dtmf": [{"at": 6, "digits": "3"}, {"at": 11, "digits": "#"}],
            "hangup_after": 40,
        }
    },
}
RULES = [
    # An invalid value among valid ones: the media worker keeps the valid ones and tells the model.
    {"match": "pressed 3", "tool": "save_results",
     "arguments": {"interested": True, "plan": "premium", "budget": "a lot"}},
    {"match": "pressed #", "tool": "end_call", "arguments": {"reason": "caller finished"}},
]  # fmt: skip


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    the_receiver = Receiver().start()
    try:
        yield the_receiver
    finally:
        the_receiver.stop()


def test_results_saved_by_the_agent_summarised_and_sent_by_webhook(
    stack: Stack, receiver: Receiver, settings, monkeypatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(app.conf, "task_default_queue", stack.queue)
    settings.TENANT_URL_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    stack.env.update(TENANT_URL_ALLOWED_NETWORKS="127.0.0.1/32", OPENAI_API_KEY="", WEBHOOKS_SWEEP_S="1")
    stack.start_sim(PLAN)
    tenant = make_tenant(max_concurrent_calls=2, calls_per_second=10)
    made = webhook_endpoint_create(
        tenant=tenant, url=receiver.url, event_types=["call.ended", "call.results"]
    )
    make_pbx(
        tenant, ari_url=stack.ari_url, ari_user=SIM_USER, password_env=PASSWORD_ENV, app_name=SIM_APP,
        endpoint_template="PJSIP/{number}@trunk", max_channels=5, calls_per_second=20,
    )  # fmt: skip
    agent = make_agent(tenant, instructions="You sell solar panels to {{name}}.", tools=["end_call"])
    campaign = make_campaign(
        tenant, agent=agent, ring_timeout=10, max_attempts=1,
        calling_windows={day: [["00:00", "24:00"]] for day in WEEKDAYS},
        result_fields=[
            {"name": "interested", "type": "boolean"},
            {"name": "plan", "type": "choice", "choices": ["Basic", "Premium"]},
            {"name": "budget", "type": "number"},
        ],
    )  # fmt: skip
    lead_add(
        campaign=campaign, contact=make_contact(tenant, BUYER, name="Dana", timezone=zone_where_it_is(14))
    )
    campaign_start(campaign=campaign)

    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps(RULES))
    stack.start_realtime(extra=["--rules", str(rules), "--reply-ms", "1500", "--speed", "5"])
    stack.start_media_worker()
    stack.start_stasis(Pbx.objects.get(placements__tenant=tenant).pk)
    stack.wait_stasis_connected()
    stack.start_worker(concurrency=4)
    stack.start_beat()

    def summarized() -> bool:
        attempt = CallAttempt.objects.filter(campaign=campaign).first()
        return attempt is not None and attempt.summarized_at is not None

    wait_for(summarized, timeout=150, what="the call to end and be summarised")
    wait_for(lambda: len(receiver.received) >= 2, timeout=30, what="both webhooks")
    attempt = CallAttempt.objects.get(campaign=campaign)
    with stack.sim() as sim:
        (call,) = [
            c for c in sim.get("/sim/calls", params={"state": "all"}).json()["calls"] if c["number"] == BUYER
        ]

    # What really happened on the line: the callee pressed 3 then #, and heard the agent.
    assert [d["digit"] for d in call["dtmf_sent"]] == ["3", "#"], call
    assert call["heard"]["heard_ms"] > 0
    assert call["duration_s"] < 30, "ended by the agent (end_call) after #, not by the callee at 40 s"
    # The agent's valid values were stored as its own; the invalid one was refused in the media worker.
    assert attempt.results["interested"] is True and attempt.results["plan"] == "Premium"
    assert attempt.results_source["interested"] == "agent" and attempt.results_source["plan"] == "agent"
    assert "budget" not in attempt.results_source or attempt.results_source["budget"] == "summary"
    assert any(t["text"].startswith("save_results") for t in attempt.transcript if t["role"] == "system")
    assert attempt.summary  # the local summary (no model configured)

    by_type = {json.loads(r.body)["type"]: r for r in receiver.received}
    assert set(by_type) == {"call.ended", "call.results"}
    for request in receiver.received:
        assert verify(made.secret, request.headers["webhook-signature"], request.body)
    ended = json.loads(by_type["call.ended"].body)["data"]
    assert ended["attempt_id"] == str(attempt.pk) and ended["results"]["plan"] == "Premium"
    assert json.loads(by_type["call.results"].body)["data"]["summary"] == attempt.summary
