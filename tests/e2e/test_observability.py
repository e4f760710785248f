"""Metrics and logs of the real processes after one answered call: the Celery worker's, the Stasis app's and
the media worker's Prometheus endpoints (fetched over HTTP) show the call, and the JSON log lines of the
media worker and the Celery worker about it carry its call id (and the media worker's its tenant id)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from campaigns.models import CallAttempt, Pbx
from campaigns.services.campaigns import campaign_start
from campaigns.services.contacts import lead_add
from campaigns.windows import WEEKDAYS
from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_pbx, make_tenant
from tests.e2e.stack import PASSWORD_ENV, SIM_APP, SIM_USER, Stack, free_port, wait_for, zone_where_it_is

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(240),
]

TALKER = "+12125559001"
PLAN = {
    "default": {"behaviour": "busy", "after": 0.1},
    "numbers": {
        TALKER: {
            "behaviour": "answer",
            "after": 0.5,
            "say": [{"at": 2.5, "text": "Hello, who is calling please?"}],
            "hangup_after": 9,
        },
    },
}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of an endpoint: (name, sorted labels) → value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, Any], float], name: str, **labels: str) -> float:
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


def json_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def test_metrics_endpoints_and_json_logs_follow_one_call(stack: Stack) -> None:
    stack.start_sim(PLAN)
    tenant = make_tenant(max_concurrent_calls=2, calls_per_second=10)
    make_pbx(
        tenant, ari_url=stack.ari_url, ari_user=SIM_USER, password_env=PASSWORD_ENV, app_name=SIM_APP,
        endpoint_template="PJSIP/{number}@trunk", max_channels=20, calls_per_second=20,
    )  # fmt: skip
    agent = make_agent(tenant, instructions="You are the test agent.", greeting="Hello, this is the agent.")
    campaign = make_campaign(
        tenant, agent=agent, ring_timeout=10, max_attempts=1,
        calling_windows={day: [["00:00", "24:00"]] for day in WEEKDAYS},
    )  # fmt: skip
    lead_add(campaign=campaign, contact=make_contact(tenant, TALKER, timezone=zone_where_it_is(14)))
    campaign_start(campaign=campaign)

    worker_port, stasis_port, media_port = free_port(), free_port(), free_port()
    json_logs = {"LOG_FORMAT": "json"}
    stack.start_realtime(extra=["--reply-ms", "500", "--speed", "5"])
    stack.start_media_worker(env={**json_logs, "MEDIA_METRICS_LISTEN": f"127.0.0.1:{media_port}"})
    stack.start_stasis(
        Pbx.objects.get(placements__tenant=tenant).pk,
        env={**json_logs, "STASIS_METRICS_LISTEN": f"127.0.0.1:{stasis_port}"},
    )
    stack.wait_stasis_connected()
    worker = stack.start_worker(
        concurrency=2, env={**json_logs, "WORKER_METRICS_LISTEN": f"127.0.0.1:{worker_port}"}
    )
    stack.start_beat()

    def reported() -> bool:
        attempt = CallAttempt.objects.filter(campaign=campaign).first()
        return attempt is not None and attempt.ended_at is not None and bool(attempt.media_metrics)

    wait_for(reported, timeout=120, what="the call to end with its media report")
    attempt = CallAttempt.objects.get(campaign=campaign)
    call_id = str(attempt.pk)

    # The media worker: the call is counted, with its audio both ways and the agent's reply latency.
    media = scrape(media_port)
    assert total(media, "media_calls_total") == 1, media
    assert total(media, "media_calls_live") == 0
    assert total(media, "media_connections_total", result="accepted") >= 1
    assert total(media, "media_frames_in_total") > 0
    assert total(media, "media_frames_out_total") > 0
    assert total(media, "media_first_audio_seconds_count") == 1
    assert total(media, "media_reply_latency_seconds_count") == attempt.media_metrics["replies"] >= 1
    assert total(media, "media_realtime_errors_total") == 0
    assert total(media, "process_cpu_seconds_total") > 0  # the default registry is served too

    # The Stasis app: connected to its PBX; the call's ARI events timed, its end counted with its outcome.
    stasis = scrape(stasis_port)
    assert total(stasis, "stasis_app_connected", app=SIM_APP) == 1, stasis
    assert total(stasis, "stasis_call_outcomes_total", app=SIM_APP, outcome=attempt.outcome) == 1, stasis
    assert total(stasis, "stasis_calls_live", app=SIM_APP) == 0
    assert total(stasis, "stasis_ari_event_lag_seconds_count", app=SIM_APP) >= 3  # StasisStart, ..., end

    # The Celery worker: the dispatch that placed the call and the call's report ran there.
    tasks = scrape(worker_port)
    assert total(tasks, "celery_tasks_total", task="media.call_report", state="SUCCESS") == 1, tasks
    dispatch = "campaigns.tasks.dispatch_tenant_task"
    assert total(tasks, "celery_tasks_total", task=dispatch, state="SUCCESS") >= 1
    # The outbound counters: the pass that claimed the call, its originate, the CPS limiter's answer.
    assert total(tasks, "campaigns_originates_total", result="sent") == 1, tasks
    assert total(tasks, "campaigns_originates_total", result="failed") == 0
    assert total(tasks, "campaigns_dispatch_passes_total") >= 1
    assert total(tasks, "campaigns_dispatch_claimed_total") == 1
    assert total(tasks, "campaigns_limiter_wait_seconds_count") >= 1

    # JSON logs: the media worker's lines about the call carry its call and tenant ids ...
    media_log = json_lines(stack.directory / "media.log")
    media_lines = [line for line in media_log if line.get("call_id") == call_id]
    assert media_lines, stack.logs()
    assert any(line.get("tenant_id") == str(tenant.pk) for line in media_lines), media_lines
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in media_lines)
    # ... and the worker's lines of the tasks about the call (its report) or its tenant (the dispatch) too,
    # without the tasks' arguments (call reports hold transcripts).
    worker_lines = json_lines(worker.log)
    assert worker_lines, worker.tail()
    assert any(line.get("call_id") == call_id for line in worker_lines), worker.tail()
    assert any(line.get("tenant_id") == str(tenant.pk) for line in worker_lines), worker.tail()
    assert not any("data" in line for line in worker_lines)
