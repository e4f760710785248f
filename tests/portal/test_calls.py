"""Portal: the call log (search and filters, pagination, few queries) and a call's page (facts, timeline,
transcript, tool calls, metrics; live parts for a live call)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from campaigns.models import AttemptEvent, CallAttempt, Campaign, Lead
from tests.campaigns.factories import make_campaign, make_lead

pytestmark = pytest.mark.django_db


def make_call(lead: Lead, **fields: Any) -> CallAttempt:
    campaign: Campaign = lead.campaign
    defaults: dict[str, Any] = {"state": "ended", "outcome": "answered", "number": lead.contact.phone_number}
    defaults.update(fields)
    return CallAttempt.objects.create(tenant=campaign.tenant, campaign=campaign, lead=lead, **defaults)


def make_calls(tenant, campaign, n: int, start: int = 0) -> list[CallAttempt]:
    return [make_call(make_lead(tenant, campaign, f"+1212555{start + i:04d}")) for i in range(n)]


def test_a_finished_call_shows_facts_transcript_tool_calls_metrics_and_timeline(tenant, manager):
    campaign = make_campaign(tenant, name="Spring promo")
    lead = make_lead(tenant, campaign, "+12125550188")
    now = timezone.now()
    call = make_call(
        lead,
        answered_at=now - timedelta(seconds=30),
        ended_at=now,
        duration_s=30.4,
        disposition="interested",
        transcript=[
            {
                "role": "agent",
                "text": "Hello, this is Acme.",
                "at": (now - timedelta(seconds=29)).isoformat(),
            },
            {"role": "caller", "text": "<b>Hi</b> there", "at": (now - timedelta(seconds=25)).isoformat()},
            {
                "role": "system",
                "text": 'set_disposition: {"ok":true}',
                "at": (now - timedelta(seconds=20)).isoformat(),
            },
        ],
        media_metrics={
            "answer_to_first_audio_ms": 412.4,
            "reply_latency_ms_p50": 640.0,
            "replies": 3,
            "errors": [],
        },
    )
    AttemptEvent.objects.create(
        attempt=call, kind="state", type="dialing->ringing", at=now - timedelta(seconds=40)
    )
    AttemptEvent.objects.create(
        attempt=call, kind="note", type="disposition", data={"disposition": "interested"}
    )
    page = manager.get(reverse("portal:call", kwargs={"pk": call.pk}))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="call-state"' in html and 'data-state="ended"' in html
    transcript = html.split('id="call-transcript"')[1].split("</ul>")[0]
    assert "Agent" in transcript and "Hello, this is Acme." in transcript and "Caller" in transcript
    assert "&lt;b&gt;Hi&lt;/b&gt;" in transcript  # tenant data is escaped
    assert "sse-swap" not in transcript  # an ended call does not listen
    assert "set_disposition" in html.split('id="call-tools"')[1]
    metrics = html.split('id="call-metrics"')[1]
    assert "412 ms" in metrics and "640 ms" in metrics
    timeline = html.split('id="call-timeline"')[1]
    assert "dialing-&gt;ringing" in timeline and "disposition" in timeline
    assert 'id="call-recording"' not in html  # no recording is stored
    assert 'hx-trigger="sse:call-' not in html


def test_a_live_call_listens_for_its_transcript_and_state(tenant, manager):
    call = make_call(make_lead(tenant), state="bridged", outcome="", answered_at=timezone.now())
    html = manager.get(reverse("portal:call", kwargs={"pk": call.pk})).content.decode()
    assert f'sse-swap="transcript-{call.pk}"' in html and 'hx-swap="beforeend"' in html
    assert f'hx-trigger="sse:call-{call.pk}, every 10s"' in html
    assert "The conversation shows here as it is spoken." in html
    state = manager.get(reverse("portal:call-state", kwargs={"pk": call.pk}))
    assert state.status_code == 200 and b'data-state="bridged"' in state.content
    # the line the live stream sends (portal/live.py renders it with this template and context)
    line = render_to_string(
        "portal/calls/_transcript_line.html",
        {"line": {"role": "caller", "text": "Is this <Acme>?", "at": timezone.now()}},
    )
    assert line.startswith("<li") and "Caller" in line and "&lt;Acme&gt;" in line


def test_the_log_searches_and_filters(tenant, manager):
    spring = make_campaign(tenant, name="Spring")
    autumn = make_campaign(tenant, name="Autumn")
    a = make_call(make_lead(tenant, spring, "+12125550101"), disposition="interested")
    b = make_call(make_lead(tenant, autumn, "+13105550102"), outcome="busy")
    old = make_call(make_lead(tenant, autumn, "+13105550103"), queued_at=timezone.now() - timedelta(days=10))
    url = reverse("portal:calls")

    def shown(**query: str) -> set[str]:
        page = manager.get(url, query)
        assert page.status_code == 200
        return {str(c.pk) for c in (a, b, old) if f'data-call="{c.pk}"' in page.content.decode()}

    assert shown() == {str(a.pk), str(b.pk), str(old.pk)}
    assert shown(number="212 555") == {str(a.pk)}
    assert shown(campaign=str(autumn.pk)) == {str(b.pk), str(old.pk)}
    assert shown(outcome="busy") == {str(b.pk)}
    assert shown(disposition="interested") == {str(a.pk)}
    today = timezone.now().date().isoformat()
    assert shown(date_from=today, date_to=today) == {str(a.pk), str(b.pk)}
    # a bad filter says so beside it and is left out
    page = manager.get(url, {"outcome": "nonsense", "date_from": "yesterday"})
    assert b'data-field="outcome"' in page.content and b'data-field="date_from"' in page.content
    assert page.content.count(b"data-call=") == 3
    empty = manager.get(url, {"number": "999999"})
    assert b"No call matches these filters" in empty.content


def test_empty_log_says_what_to_do(tenant, viewer):
    page = viewer.get(reverse("portal:calls"))
    assert page.status_code == 200 and b"No call yet." in page.content


def test_another_tenants_call_is_not_found(tenant, other_tenant, manager):
    theirs = make_call(make_lead(other_tenant))
    assert manager.get(reverse("portal:call", kwargs={"pk": theirs.pk})).status_code == 404
    assert manager.get(reverse("portal:call-state", kwargs={"pk": theirs.pk})).status_code == 404
    assert f'data-call="{theirs.pk}"' not in manager.get(reverse("portal:calls")).content.decode()


def test_a_viewer_may_read_calls_but_not_post(tenant, viewer):
    call = make_call(make_lead(tenant))
    assert viewer.get(reverse("portal:call", kwargs={"pk": call.pk})).status_code == 200
    assert viewer.post(reverse("portal:call", kwargs={"pk": call.pk})).status_code == 403


def test_the_log_reads_in_a_handful_of_queries(tenant, manager, django_assert_max_num_queries):
    campaign = make_campaign(tenant)
    make_calls(tenant, campaign, 3)
    with django_assert_max_num_queries(10):
        assert manager.get(reverse("portal:calls")).status_code == 200
    make_calls(tenant, campaign, 60, start=100)
    with django_assert_max_num_queries(10):
        page = manager.get(reverse("portal:calls"))
    assert page.content.count(b"data-call=") == 50  # a page
    assert b"Page 1 of 2" in page.content


def test_the_call_page_reads_in_a_handful_of_queries(tenant, manager, django_assert_max_num_queries):
    call = make_call(make_lead(tenant))
    for n in range(40):
        AttemptEvent.objects.create(attempt=call, kind="ari", type=f"Event{n}")
    with django_assert_max_num_queries(10):
        assert manager.get(reverse("portal:call", kwargs={"pk": call.pk})).status_code == 200


def test_the_first_page_of_the_log_follows_the_calls(tenant, manager):
    call = make_call(make_lead(tenant))
    page = manager.get(reverse("portal:calls"), {"outcome": "answered"}).content.decode()
    assert 'hx-trigger="sse:calls"' in page and "sse-connect" in page
    partial = manager.get(
        reverse("portal:calls"), {"outcome": "answered"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert partial.lstrip().startswith('<div id="calls-log"') and f'data-call="{call.pk}"' in partial
    assert "<html" not in partial


def test_a_followed_call_page_gets_the_stored_transcript_once_the_report_is_in(tenant, manager):
    """A page opened mid-call has only the lines spoken since; when the call has ended and the media
    worker's report is stored, the state partial brings the whole transcript (out of band)."""
    lead = make_lead(tenant)
    now = timezone.now()
    attempt = CallAttempt.objects.create(
        tenant=tenant, campaign=lead.campaign, lead=lead, number=lead.contact.phone_number,
        state="ended", outcome="answered", answered_at=now, ended_at=now,
    )  # fmt: skip
    url = reverse("portal:call-state", args=[attempt.pk])
    waiting = manager.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="sse:call-' in waiting  # still followed: the report is due
    assert "call-transcript-section" not in waiting  # the live lines shown so far stay
    CallAttempt.objects.filter(pk=attempt.pk).update(
        transcript=[{"role": "agent", "text": "Hello from the start of the call", "t_ms": 0}],
        media_metrics={"first_audio_ms": 120},
    )
    done = manager.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="sse:call-' not in done  # nothing more to follow
    assert 'id="call-transcript-section" hx-swap-oob="outerHTML"' in done
    assert "Hello from the start of the call" in done
