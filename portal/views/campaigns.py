"""Portal pages: campaigns.

The list (state, progress of leads done / total, calls live now), the create and edit form (validated by the
REST API's ``CampaignInputSerializer``, written by ``campaigns.services.campaigns`` as the API does), start /
pause / resume (POST, managers and up), and the campaign's page: its figures (``campaign_stats``), outcomes
over time, its live calls re-read on each ``calls`` event, and its leads with, one click away, why a lead is
not being dialed now (``lead_why_not_dialed``, as ``GET /api/v1/leads/{id}/why``).

Every lookup goes through the tenant's selectors: another tenant's id is a 404.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from campaigns.api.serializers import CampaignInputSerializer
from campaigns.models import Campaign, Lead, default_calling_windows, default_retry_delays
from campaigns.selectors import (
    LEAD_FINISHED_STATUSES,
    OUTCOME_CHART_BUCKETS,
    agent_profile_list,
    campaign_list,
    campaign_list_with_progress,
    campaign_outcomes_over_time,
    campaign_stats,
    lead_list,
    lead_why_not_dialed,
)
from campaigns.services.campaigns import (
    campaign_create,
    campaign_pause,
    campaign_resume,
    campaign_start,
    campaign_update,
)
from orchestrator.errors import InvalidInput
from portal.access import PortalRequest, portal_audit, portal_view
from portal.forms import Bound, bind, initial
from portal.pagination import paginate
from portal.views.amd import FORM_CHOICES as AMD_FORM_CHOICES
from portal.views.amd import amd_form_values
from portal.views.compliance import campaign_form_values as compliance_form_values

JSON_FIELDS = ("calling_windows", "retry_delays", "amd_settings", "result_fields")
DATETIME_FIELDS = ("starts_at", "ends_at")


def _req(request: HttpRequest) -> PortalRequest:
    return request  # type: ignore[return-value]


def _campaign(request: HttpRequest, pk: int) -> Campaign:
    return get_object_or_404(campaign_list(tenant=_req(request).portal.tenant), pk=pk)


def _target(campaign: Campaign) -> str:
    return f"campaign {campaign.pk} ({campaign.name})"


def _progress(done: int, total: int) -> int:
    return round(100 * done / total) if total else 0


# ------------------------------------------------------------------------------------------------ list


@portal_view()
def index(request: HttpRequest) -> HttpResponse:
    page = paginate(request, campaign_list_with_progress(tenant=_req(request).portal.tenant))
    campaigns: list[Any] = list(page.object_list)  # annotated rows (campaign_list_with_progress)
    rows = [(c, _progress(c.leads_finished, c.leads_total)) for c in campaigns]
    return render(request, "portal/campaigns/list.html", {"page": page, "rows": rows})


# ------------------------------------------------------------------------------------------------ form


def _local_input(value: datetime | None, zone: ZoneInfo) -> str:
    return value.astimezone(zone).strftime("%Y-%m-%dT%H:%M") if value else ""


def _form_values(campaign: Campaign | None, request: PortalRequest) -> dict[str, Any]:
    tenant = request.portal.tenant
    if campaign is None:
        return {
            "max_concurrent_calls": tenant.max_concurrent_calls,
            "max_attempts": 3,
            "ring_timeout": 30,
            "priority": 0,
            "calling_windows": json.dumps(default_calling_windows(), indent=1),
            "retry_delays": json.dumps(default_retry_delays(), indent=1),
            **compliance_form_values(None),
            **amd_form_values(None),
        }
    zone = ZoneInfo(tenant.default_timezone)
    return {
        "name": campaign.name,
        "agent": campaign.agent_id,
        "caller_id": campaign.caller_id,
        "calling_windows": json.dumps(campaign.calling_windows, indent=1),
        "starts_at": _local_input(campaign.starts_at, zone),
        "ends_at": _local_input(campaign.ends_at, zone),
        "max_concurrent_calls": campaign.max_concurrent_calls,
        "max_attempts": campaign.max_attempts,
        "retry_delays": json.dumps(campaign.retry_delays, indent=1),
        "ring_timeout": campaign.ring_timeout,
        "priority": campaign.priority,
        **compliance_form_values(campaign),
        **amd_form_values(campaign),
        "result_fields": json.dumps(campaign.result_fields, indent=1) if campaign.result_fields else "",
    }


def _save_form(
    request: PortalRequest, write: Callable[[dict[str, Any]], Campaign]
) -> tuple[Bound, Campaign | None]:
    """Validate the POST with the API's serializer (dates read in the tenant's zone), then write it."""
    tenant = request.portal.tenant
    with timezone.override(ZoneInfo(tenant.default_timezone)):
        bound = bind(
            CampaignInputSerializer, request.POST, context={"tenant": tenant}, json_fields=JSON_FIELDS
        )
    saved = None
    if bound.ok:
        try:
            saved = write(dict(bound.data))
        except InvalidInput as exc:
            bound.add_invalid(exc)
    return bound, saved


def _render_form(
    request: PortalRequest, form: Bound, campaign: Campaign | None, status: int = 200
) -> HttpResponse:
    agents = [(a.pk, a.name) for a in agent_profile_list(tenant=request.portal.tenant).only("pk", "name")]
    return render(
        request,
        "portal/campaigns/form.html",
        {
            "form": form,
            "campaign": campaign,
            "agents": agents,
            "zone": f"In {request.portal.tenant.default_timezone}, the account's time zone.",
            **AMD_FORM_CHOICES,
        },
        status=status,
    )


@portal_view()
def new(request: HttpRequest) -> HttpResponse:
    req = _req(request)
    if request.method != "POST":
        return _render_form(req, initial(_form_values(None, req)), None)
    tenant = req.portal.tenant
    bound, created = _save_form(req, lambda data: campaign_create(tenant=tenant, **data))
    if created is None:
        return _render_form(req, bound, None, status=400)
    portal_audit(request, "campaign.create", _target(created))
    messages.success(request, "Campaign created. Import its contacts, then start it.")
    return redirect("portal:campaign", pk=created.pk)


@portal_view()
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    req = _req(request)
    campaign = _campaign(request, pk)
    if request.method != "POST":
        return _render_form(req, initial(_form_values(campaign, req)), campaign)
    bound, saved = _save_form(req, lambda data: campaign_update(campaign=campaign, **data))
    if saved is None:
        campaign.refresh_from_db()  # a refused update may have set fields on the instance
        return _render_form(req, bound, campaign, status=400)
    portal_audit(request, "campaign.update", _target(saved), fields=sorted(bound.data))
    messages.success(request, "Campaign saved.")
    return redirect("portal:campaign", pk=saved.pk)


# ------------------------------------------------------------------------------------------ start/pause


def _move(
    request: HttpRequest, pk: int, service: Callable[..., Campaign], action: str, done: str
) -> HttpResponse:
    campaign = _campaign(request, pk)
    try:
        moved = service(campaign=campaign)
    except InvalidInput as exc:
        messages.error(request, f"Could not {action} the campaign: {exc.field} {exc.message}")
    else:
        portal_audit(request, f"campaign.{action}", _target(moved), status=moved.status)
        messages.success(request, done)
    return redirect("portal:campaign", pk=campaign.pk)


@require_POST
@portal_view()
def start(request: HttpRequest, pk: int) -> HttpResponse:
    return _move(request, pk, campaign_start, "start", "Campaign started.")


@require_POST
@portal_view()
def pause(request: HttpRequest, pk: int) -> HttpResponse:
    return _move(request, pk, campaign_pause, "pause", "Campaign paused.")


@require_POST
@portal_view()
def resume(request: HttpRequest, pk: int) -> HttpResponse:
    return _move(request, pk, campaign_resume, "resume", "Campaign resumed.")


# ---------------------------------------------------------------------------------------------- detail


def _live_context(campaign: Campaign) -> dict[str, Any]:
    stats = campaign_stats(campaign=campaign)
    finished = sum(stats["leads"][status] for status in LEAD_FINISHED_STATUSES)
    return {
        "campaign": campaign,
        "stats": stats,
        "finished": finished,
        "progress": _progress(finished, stats["leads_total"]),
    }


def _leads_context(request: HttpRequest, campaign: Campaign) -> dict[str, Any]:
    status = request.GET.get("status") or ""
    if status not in Lead.Status.values:
        status = ""
    leads = lead_list(tenant=_req(request).portal.tenant, campaign_id=campaign.pk, status=status or None)
    return {
        "campaign": campaign,
        "leads_page": paginate(request, leads),
        "status": status,
        "statuses": Lead.Status.choices,
        "import_url": _url_or_blank("portal:import-new", campaign),
    }


def _chart(campaign: Campaign, bucket: str) -> dict[str, Any]:
    outcomes = campaign_outcomes_over_time(campaign=campaign, bucket=bucket)
    return {
        "x": outcomes["x"],
        "series": [{"label": outcome, "values": values} for outcome, values in outcomes["series"].items()],
        "height": 220,
    }


@portal_view()
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = _campaign(request, pk)
    by = request.GET.get("by", "hour")
    bucket = by if by in OUTCOME_CHART_BUCKETS else "hour"
    chart = _chart(campaign, bucket)
    context = {
        **_live_context(campaign),
        **_leads_context(request, campaign),
        "chart": chart,
        "chart_empty": not chart["series"],
        "bucket": bucket,
        "calls_url": _url_or_blank("portal:calls", campaign),
        "export_url": f"/api/v1/campaigns/{campaign.pk}/export",
    }
    return render(request, "portal/campaigns/detail.html", context)


def _url_or_blank(name: str, campaign: Campaign) -> str:
    """``<name's url>?campaign=<id>``, or "" while the portal has no such page."""
    try:
        return f"{reverse(name)}?campaign={campaign.pk}"
    except NoReverseMatch:  # a page another part of the portal adds; until then, no link target
        return ""


@portal_view()
def live(request: HttpRequest, pk: int) -> HttpResponse:
    """The campaign's state, progress and live calls (re-read by the detail page on each ``calls`` event)."""
    return render(request, "portal/campaigns/_live.html", _live_context(_campaign(request, pk)))


@portal_view()
def leads(request: HttpRequest, pk: int) -> HttpResponse:
    """The campaign's leads, filtered by status, paginated: the table alone for htmx, else a page."""
    campaign = _campaign(request, pk)
    context = _leads_context(request, campaign)
    template = (
        "portal/campaigns/_leads.html" if getattr(request, "htmx", False) else "portal/campaigns/leads.html"
    )
    return render(request, template, context)


# ------------------------------------------------------------------------------------ why not dialed


def _when(value: Any) -> str:
    if not isinstance(value, datetime):
        return str(value or "")
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z")


def reason_text(reason: dict[str, Any]) -> str:
    """One reason of ``lead_why_not_dialed`` in words."""
    code = reason.get("code")
    texts: dict[str, Callable[[], str]] = {
        "done": lambda: (
            f"The lead is done ({reason.get('done_reason') or reason.get('last_outcome') or 'finished'})."
        ),
        "suppressed": lambda: f"The lead is suppressed ({reason.get('done_reason') or 'never dialable'}).",
        "in_attempt": lambda: f"A call to it is in progress now ({reason.get('state') or 'live'}).",
        "dnc": lambda: "The number is on the do-not-call list.",
        "attempts_exhausted": lambda: f"All {reason.get('max')} attempts are spent.",
        "campaign_not_running": lambda: (
            f"The campaign is not dialing (campaign {reason.get('campaign_status')}, "
            f"tenant {reason.get('tenant_status')})."
        ),
        "callback": lambda: f"The callee asked to be called back at {_when(reason.get('at'))}.",
        "retry_delay": lambda: (
            f"Waiting before a retry after {reason.get('last_outcome') or 'the last call'}, "
            f"until {_when(reason.get('until'))}."
        ),
        "outside_window": lambda: (
            "Outside the callee's calling window"
            + (
                f"; it opens {_when(reason['next_opening'])}"
                if reason.get("next_opening")
                else "; no opening in sight"
            )
            + (f" ({', '.join(reason.get('zones') or ())})." if reason.get("zones") else ".")
            + (f" {reason['state']}'s own calling hours apply." if reason.get("state") else "")
        ),
        "no_consent": lambda: "The campaign requires prior express consent; the contact holds no valid one.",
        "abandonment_slowdown": lambda: (
            f"The campaign dials at half its cap: {reason.get('abandoned_30d')} of "
            f"{reason.get('answered_30d')} answered calls in 30 days got no agent within 2 s (over 3%)."
        ),
        "tenant_at_cap": lambda: (
            f"The account's calls are at their cap ({reason.get('live')} live of "
            f"{reason.get('max_concurrent_calls')}, {reason.get('inbound_reserve')} kept for inbound)."
        ),
        "campaign_at_cap": lambda: (
            f"The campaign's calls are at its cap ({reason.get('live')} of "
            f"{reason.get('max_concurrent_calls')})."
        ),
        "no_pbx_capacity": lambda: "No phone line (PBX channel) is free.",
        "pbx_unavailable": lambda: "No phone system of the account is connected now.",
        "no_media_worker": lambda: "No voice agent worker is up now.",
    }
    text = texts.get(str(code))
    return text() if text else str(code)


@portal_view()
def lead_why(request: HttpRequest, pk: int) -> HttpResponse:
    """Why this lead is not being dialed now, and when it will be: a fragment for htmx, else a page."""
    tenant = _req(request).portal.tenant
    lead = get_object_or_404(lead_list(tenant=tenant).select_related("campaign"), pk=pk)
    try:
        why = lead_why_not_dialed(tenant=tenant, lead_id=lead.pk)
    except Lead.DoesNotExist as exc:  # gone in between
        raise Http404 from exc
    context = {"lead": lead, "why": why, "reasons": [reason_text(r) for r in why["reasons"]]}
    template = (
        "portal/campaigns/_why.html" if getattr(request, "htmx", False) else "portal/campaigns/why.html"
    )
    return render(request, template, context)


urlpatterns = [
    path("", index, name="campaigns"),
    path("new", new, name="campaign-new"),
    path("<int:pk>/", detail, name="campaign"),
    path("<int:pk>/edit", edit, name="campaign-edit"),
    path("<int:pk>/start", start, name="campaign-start"),
    path("<int:pk>/pause", pause, name="campaign-pause"),
    path("<int:pk>/resume", resume, name="campaign-resume"),
    path("<int:pk>/live", live, name="campaign-live"),
    path("<int:pk>/leads/", leads, name="campaign-leads"),
    path("leads/<int:pk>/why", lead_why, name="lead-why"),
]
