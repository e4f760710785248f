"""Portal pages: agent profiles (what the AI agent is told, how it sounds, what it may do).

The list, the create and edit form (validated by the REST API's ``AgentProfileInputSerializer`` and written by
``campaigns.services.agents``, as the API does: tools are checkboxes and transfer numbers one a line, turned
into the API's lists), the profile's page, and a preview of the call brief a call would carry
(``campaigns.selectors.agent_brief_preview``, which runs the code that writes the real brief), for a sample
contact, one typed in, or one of the tenant's leads.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path

from campaigns.api.serializers import AgentProfileInputSerializer
from campaigns.models import AGENT_TOOLS, AgentProfile, Contact, Lead, default_tools
from campaigns.selectors import (
    SAMPLE_CONTACT,
    agent_brief_preview,
    agent_profile_list,
    agent_profile_list_with_usage,
    campaign_list,
    lead_list,
)
from campaigns.services.agents import agent_profile_create, agent_profile_update
from orchestrator.errors import InvalidInput
from portal.access import PortalRequest, portal_audit, portal_view
from portal.forms import Bound, bind, initial
from portal.pagination import paginate

#: Campaigns listed on a profile's page (the rest are counted).
CAMPAIGNS_SHOWN = 20

TOOL_HELP = {
    "end_call": "End the call",
    "transfer_to_human": "Transfer to a person (a transfer number)",
    "schedule_callback": "Schedule a callback the callee asks for",
    "set_disposition": "Record the call's result (disposition)",
    "add_to_dnc": "Put the callee on the do-not-call list when asked",
    "send_sms": "Send the callee a text message",
}


def _req(request: HttpRequest) -> PortalRequest:
    return request  # type: ignore[return-value]


def _agent(request: HttpRequest, pk: int) -> AgentProfile:
    return get_object_or_404(agent_profile_list(tenant=_req(request).portal.tenant), pk=pk)


def _target(agent: AgentProfile) -> str:
    return f"agent {agent.pk} ({agent.name})"


@portal_view()
def index(request: HttpRequest) -> HttpResponse:
    page = paginate(request, agent_profile_list_with_usage(tenant=_req(request).portal.tenant))
    return render(request, "portal/agents/list.html", {"page": page})


# ------------------------------------------------------------------------------------------------ form


def _form_values(agent: AgentProfile | None) -> dict[str, Any]:
    if agent is None:
        return {
            "voice": "alloy",
            "model": "gpt-realtime",
            "language": "en",
            "tools": default_tools(),
            "transfer_numbers": "",
            "turn_detection": AgentProfile.TurnDetection.SERVER_VAD,
        }
    return {
        "name": agent.name,
        "instructions": agent.instructions,
        "greeting": agent.greeting,
        "voice": agent.voice,
        "model": agent.model,
        "language": agent.language,
        "tools": list(agent.tools),
        "transfer_numbers": "\n".join(agent.transfer_numbers),
        "turn_detection": agent.turn_detection,
    }


def _bind(request: HttpRequest) -> Bound:
    """The POST as the API's body: the checked tools and the transfer numbers (one a line) as lists."""
    post = request.POST
    extra: dict[str, Any] = {}
    if "tools" in post or "tools__present" in post:
        extra["tools"] = post.getlist("tools")
    if "transfer_numbers" in post:
        extra["transfer_numbers"] = [
            line.strip() for line in post.get("transfer_numbers", "").splitlines() if line.strip()
        ]
    bound = bind(
        AgentProfileInputSerializer, post, context={"tenant": _req(request).portal.tenant}, extra=extra
    )
    bound.values["tools"] = post.getlist("tools")  # checkboxes: always a list, even of one
    return bound


def _render_form(
    request: HttpRequest, form: Bound, agent: AgentProfile | None, status: int = 200
) -> HttpResponse:
    checked = set(form.values.get("tools") or [])
    tools = [(tool, TOOL_HELP.get(tool, tool), tool in checked) for tool in AGENT_TOOLS]
    context = {
        "form": form,
        "agent": agent,
        "tools": tools,
        "tool_errors": form.errors.get("tools", []),
        "turn_detections": AgentProfile.TurnDetection.choices,
    }
    return render(request, "portal/agents/form.html", context, status=status)


@portal_view()
def new(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _render_form(request, initial(_form_values(None)), None)
    bound = _bind(request)
    created = None
    if bound.ok:
        try:
            created = agent_profile_create(tenant=_req(request).portal.tenant, **bound.data)
        except InvalidInput as exc:
            bound.add_invalid(exc)
    if created is None:
        return _render_form(request, bound, None, status=400)
    portal_audit(request, "agent.create", _target(created))
    messages.success(request, "Agent created.")
    return redirect("portal:agent", pk=created.pk)


@portal_view()
def edit(request: HttpRequest, pk: int) -> HttpResponse:
    agent = _agent(request, pk)
    if request.method != "POST":
        return _render_form(request, initial(_form_values(agent)), agent)
    bound = _bind(request)
    saved = None
    if bound.ok:
        try:
            saved = agent_profile_update(agent=agent, **bound.data)
        except InvalidInput as exc:
            bound.add_invalid(exc)
    if saved is None:
        agent.refresh_from_db()  # a refused update may have set fields on the instance
        return _render_form(request, bound, agent, status=400)
    portal_audit(request, "agent.update", _target(saved), fields=sorted(bound.data))
    messages.success(request, "Agent saved.")
    return redirect("portal:agent", pk=saved.pk)


# ---------------------------------------------------------------------------------------------- detail


@portal_view()
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    agent = _agent(request, pk)
    campaigns = campaign_list(tenant=_req(request).portal.tenant).filter(agent=agent)
    shown = list(campaigns.select_related(None).only("pk", "name", "status")[: CAMPAIGNS_SHOWN + 1])
    context = {
        "agent": agent,
        "campaigns": shown[:CAMPAIGNS_SHOWN],
        "more_campaigns": len(shown) > CAMPAIGNS_SHOWN,
        "tool_help": [(tool, TOOL_HELP.get(tool, tool)) for tool in agent.tools],
    }
    return render(request, "portal/agents/detail.html", context)


def _preview_contact(request: HttpRequest, agent: AgentProfile) -> tuple[Contact | None, Any, Bound]:
    """The contact to preview for: a lead of the tenant (``?lead=``), one typed in (``?name=&phone_number=
    &variables=``), or the sample; and the campaign to take the caller id from. Errors go in the form."""
    tenant = _req(request).portal.tenant
    query = request.GET
    form = initial(
        {
            "name": query.get("name", SAMPLE_CONTACT["name"]),
            "phone_number": query.get("phone_number", SAMPLE_CONTACT["phone_number"]),
            "variables": query.get("variables", "{}"),
            "lead": query.get("lead", ""),
        }
    )
    if query.get("lead"):
        try:
            lead = lead_list(tenant=tenant).select_related("campaign").get(pk=int(query["lead"]))
        except (ValueError, Lead.DoesNotExist):
            form.add_error("lead", "No such lead in this account.")
        else:
            return lead.contact, lead.campaign, form
    variables: Any = {}
    try:
        variables = json.loads(form.values["variables"] or "{}")
    except ValueError as exc:
        form.add_error("variables", f"Not valid JSON: {exc}")
    if not isinstance(variables, dict):
        form.add_error("variables", 'must be an object of name -> value, e.g. {"appointment": "Tuesday"}')
        variables = {}
    contact = Contact(
        tenant=tenant,
        name=str(form.values["name"]),
        phone_number=str(form.values["phone_number"]),
        variables={str(k): str(v) for k, v in variables.items()},
    )
    campaign = campaign_list(tenant=tenant).filter(agent=agent).first()
    return contact, campaign, form


@portal_view()
def preview(request: HttpRequest, pk: int) -> HttpResponse:
    """The call brief a call of this agent would carry (instructions and greeting rendered for a contact)."""
    agent = _agent(request, pk)
    contact, campaign, form = _preview_contact(request, agent)
    result = agent_brief_preview(
        tenant=_req(request).portal.tenant, agent=agent, contact=contact, campaign=campaign
    )
    brief = result["brief"]
    context = {
        "agent": agent,
        "form": form,
        "campaign": campaign,
        "preview": result,
        "brief": brief,
        "brief_json": json.dumps(brief, indent=2, ensure_ascii=False, default=str),
    }
    return render(request, "portal/agents/preview.html", context, status=400 if form.errors else 200)


urlpatterns = [
    path("", index, name="agents"),
    path("new", new, name="agent-new"),
    path("<int:pk>/", detail, name="agent"),
    path("<int:pk>/edit", edit, name="agent-edit"),
    path("<int:pk>/preview", preview, name="agent-preview"),
]
