"""The signed acknowledgement link (``/ack/<token>``, sent in page SMS). GET shows the incident and buttons
and changes nothing (link previews and scanners fetch links); only the page's POST acts. The token is the
credential (signed, expiring: flows/services/links.py), so the form needs no session nor CSRF cookie."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
from django.utils.html import format_html, format_html_join
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from flows.lifecycle import ACKNOWLEDGEABLE
from flows.models import Incident
from flows.services.escalation import caller_label, problem_of
from flows.services.links import ack_token_read
from flows.services.responses import LINK_ACTIONS, link_act

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><meta name="viewport"
content="width=device-width, initial-scale=1"><meta name="robots" content="noindex">
<title>Incident {code}</title></head><body style="font-family:sans-serif;max-width:32em;margin:2em auto">
<h1>Incident {code}</h1><p>{caller}: {problem}</p><p><strong>{state}</strong></p>{notice}
<form method="post">{buttons}</form></body></html>"""


def _buttons(actions: list[tuple[str, str]]) -> str:
    return format_html_join(
        "",
        '<button type="submit" name="action" value="{}" style="font-size:1.2em;margin:.3em">{}</button>',
        actions,
    )


def _render(incident: Incident, person_id: int, notice: str = "") -> HttpResponse:
    if incident.status in ACKNOWLEDGEABLE:
        state = "Waiting for someone to take it."
        actions = [("accept", "Accept"), ("decline", "Decline")]
    elif incident.status == Incident.Status.ACKNOWLEDGED:
        who = incident.acknowledged_by.name if incident.acknowledged_by else "someone"
        state = f"Taken by {who}."
        mine = incident.acknowledged_by_id == person_id
        actions = (
            [("connect", "Connect me to the caller now"), ("later", "I will call back later")]
            if (mine and not incident.ack_choice)
            else []
        )
    else:
        state, actions = "Resolved.", []
    body = format_html(
        _PAGE,
        code=incident.short_code,
        caller=caller_label(incident),
        problem=problem_of(incident),
        state=state,
        notice=format_html("<p>{}</p>", notice) if notice else "",
        buttons=_buttons(actions),
    )
    response = HttpResponse(body)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


@csrf_exempt
@require_http_methods(["GET", "POST"])
def ack_link(request: HttpRequest, token: str) -> HttpResponse:
    link = ack_token_read(token)
    incident = (
        Incident.objects.select_related("acknowledged_by", "inbound_call", "tenant", "flow")
        .filter(pk=link.incident_id)
        .first()
        if link
        else None
    )
    if link is None or incident is None:
        return HttpResponseNotFound("This link is not valid (or has expired).")
    if request.method == "GET":
        return _render(incident, link.person_id)
    action = request.POST.get("action", "")
    if action not in LINK_ACTIONS:
        return _render(incident, link.person_id, "Unknown action.")
    done = link_act(incident_id=incident.pk, person_id=link.person_id, action=action)
    incident.refresh_from_db()
    return _render(incident, link.person_id, "Done." if done else "Nothing changed (already handled).")
