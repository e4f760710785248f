"""The web app's /metrics (who may read it, the database gauges, over real HTTP), the JSON log format with
call and tenant ids in a Django process, Sentry's set-up, and where `make run` serves metrics."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from campaigns.lifecycle import AttemptState
from campaigns.models import CallAttempt, Lead
from orchestrator import sentry
from orchestrator.management.commands.runlocal import metrics_urls
from orchestrator.metrics import parse_listen
from tests.campaigns.factories import make_campaign, make_lead, make_tenant
from tests.conftest import run_python
from wire import logctx


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _attempt(lead: Lead, state: AttemptState) -> CallAttempt:
    campaign = lead.campaign
    return CallAttempt.objects.create(
        tenant=campaign.tenant, campaign=campaign, lead=lead, number="+12125550123", state=state.value
    )


@pytest.mark.django_db(transaction=True)
def test_web_metrics_over_http_count_live_calls_and_leads_per_tenant(live_server):
    acme, other = make_tenant(), make_tenant()
    campaign = make_campaign(acme)
    leads = [make_lead(acme, campaign, f"+1212555010{n}") for n in range(3)]
    Lead.objects.filter(pk=leads[0].pk).update(status=Lead.Status.IN_ATTEMPT)
    Lead.objects.filter(pk=leads[1].pk).update(status=Lead.Status.IN_ATTEMPT)
    _attempt(leads[0], AttemptState.RINGING)
    _attempt(leads[1], AttemptState.BRIDGED)
    _attempt(leads[2], AttemptState.ENDED)  # not live
    make_lead(other, make_campaign(other), "+12125550199")

    response = httpx.get(f"{live_server.url}/metrics", timeout=10)  # from 127.0.0.1: allowed by default
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = _samples(response.text)
    a, o = str(acme.pk), str(other.pk)
    assert samples[("campaigns_calls_live", (("state", "ringing"), ("tenant", a)))] == 1
    assert samples[("campaigns_calls_live", (("state", "bridged"), ("tenant", a)))] == 1
    assert not [key for key in samples if key[0] == "campaigns_calls_live" and ("state", "ended") in key[1]]
    assert samples[("campaigns_leads", (("status", "in_attempt"), ("tenant", a)))] == 2
    assert samples[("campaigns_leads", (("status", "waiting"), ("tenant", a)))] == 1
    assert samples[("campaigns_leads", (("status", "waiting"), ("tenant", o)))] == 1
    assert ("process_cpu_seconds_total", ()) in samples  # the process's default registry


@pytest.mark.django_db
def test_web_metrics_refuse_other_networks_unless_the_bearer_token_is_given(client, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    wrong = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403
    right = client.get(
        "/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token"
    )
    assert right.status_code == 200
    assert b"campaigns_leads" in right.content or b"process_cpu_seconds_total" in right.content
    settings.METRICS_ALLOWED_NETWORKS = ["203.0.113.0/24"]
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    assert client.post("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 405


def test_without_a_token_only_the_allowed_networks_may_read(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.1", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_a_line_logged_in_a_call_context_carries_both_ids_as_json(subprocess_env):
    code = """
import logging, django
django.setup()
from wire.logctx import call_context
log = logging.getLogger("campaigns.test")
log.warning("outside")
with call_context(call_id="3f1c-call", tenant_id=42):
    log.warning("inside %s", "the call")
log.warning("after", extra={"call_id": "explicit"})
"""
    result = run_python(code, env={**subprocess_env, "LOG_FORMAT": "json"})
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    by_message = {line["message"]: line for line in lines}
    inside = by_message["inside the call"]
    assert inside["call_id"] == "3f1c-call" and inside["tenant_id"] == "42"
    assert inside["level"] == "WARNING" and inside["logger"] == "campaigns.test" and inside["time"]
    assert by_message["outside"]["call_id"] is None and by_message["outside"]["tenant_id"] is None
    assert by_message["after"]["call_id"] == "explicit"


def test_log_format_is_json_by_default_and_text_in_debug(subprocess_env):
    code = "from django.conf import settings; print(settings.LOG_FORMAT)"
    env = {k: v for k, v in subprocess_env.items() if k not in ("LOG_FORMAT", "DEBUG")}
    assert run_python(code, env=env).stdout.strip() == "json"
    assert run_python(code, env={**env, "DEBUG": "1"}).stdout.strip() == "text"
    assert run_python(code, env={**env, "DEBUG": "1", "LOG_FORMAT": "json"}).stdout.strip() == "json"


def test_the_filter_keeps_ids_learnt_later_for_every_context_of_the_call():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    with logctx.call_context(call_id="c1") as ids:
        ids.update(tenant_id=7)
        logctx.CallContextFilter().filter(record)
    assert (record.call_id, record.tenant_id) == ("c1", "7")  # type: ignore[attr-defined]
    assert logctx.current() is None


def test_sentry_is_initialised_with_the_dsn_and_not_without(monkeypatch):
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr("sentry_sdk.init", lambda **kwargs: calls.append(kwargs))
    assert sentry.init_sentry("") is False
    assert calls == []
    dsn = "https://public@sentry.example.invalid/1"
    assert sentry.init_sentry(dsn, environment="staging") is True
    [kwargs] = calls
    assert kwargs["dsn"] == dsn and kwargs["environment"] == "staging"
    names = {type(integration).__name__ for integration in kwargs["integrations"]}
    assert names == {"DjangoIntegration", "CeleryIntegration"}
    assert kwargs["send_default_pii"] is False


def test_settings_start_sentry_only_when_sentry_dsn_is_set(subprocess_env):
    code = "import django; django.setup(); import sentry_sdk; print(sentry_sdk.get_client().dsn)"
    env = {k: v for k, v in subprocess_env.items() if k != "SENTRY_DSN"}
    # A DSN whose host never answers: init itself sends nothing.
    dsn = "http://public@127.0.0.1:9/1"
    with_dsn = run_python(code, env={**env, "SENTRY_DSN": dsn})
    assert with_dsn.returncode == 0, with_dsn.stderr
    assert with_dsn.stdout.strip() == dsn
    without = run_python(code, env=env)
    assert without.returncode == 0, without.stderr
    assert without.stdout.strip() == "None"


def test_make_run_serves_each_process_metrics_on_a_port_of_its_own(subprocess_env, settings):
    code = """
import json, django
django.setup()
from orchestrator.management.commands.runlocal import metrics_urls
print(json.dumps(metrics_urls(web_address="127.0.0.1:8000", environ={})))
"""
    listens = ("WORKER_METRICS_LISTEN", "STASIS_METRICS_LISTEN", "MEDIA_METRICS_LISTEN")
    env = {k: v for k, v in subprocess_env.items() if k not in listens}
    # The product's settings: the test settings turn these endpoints off.
    result = run_python(code, env={**env, "DJANGO_SETTINGS_MODULE": "orchestrator.settings"})
    assert result.returncode == 0, result.stderr
    urls = json.loads(result.stdout)
    assert urls["web"] == "http://127.0.0.1:8000/metrics"
    assert set(urls) == {"web", "worker", "stasis", "media"}
    ports = {url.split("//")[1].split("/")[0] for url in urls.values()}
    taken = {"127.0.0.1:8000", "127.0.0.1:8088", "127.0.0.1:9092", "127.0.0.1:8765"}  # web, sim, media, agent
    assert len(ports) == 4 and not (ports - {"127.0.0.1:8000"}) & taken
    settings.STASIS_METRICS_LISTEN = "off"
    assert "stasis" not in metrics_urls(web_address="127.0.0.1:8000", environ={"MEDIA_METRICS_LISTEN": ""})
    assert parse_listen("off", "X") is None and parse_listen("[::1]:9101", "X") == ("::1", 9101)
    with pytest.raises(ValueError):
        parse_listen("9101", "X")
