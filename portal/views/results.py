"""Portal pages of results out: a campaign's "redial" (a form choosing the outcomes to redial and the new
campaign's name; the new draft campaign opens), through the API's input serializer and the service."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path

from campaigns.api.serializers import RedialInputSerializer
from campaigns.lifecycle import AttemptOutcome
from campaigns.selectors import campaign_list
from campaigns.services.redial import REDIAL_DEFAULT_OUTCOMES, campaign_redial
from orchestrator.errors import InvalidInput
from portal.access import PortalRequest, portal_audit, portal_view
from portal.forms import bind, initial
from tenants.roles import Capability


def _portal(request: HttpRequest) -> PortalRequest:
    return request  # type: ignore[return-value]  # portal_view has set request.portal


@portal_view(Capability.WRITE)
def redial(request: HttpRequest, pk: int) -> HttpResponse:
    portal = _portal(request).portal
    campaign = get_object_or_404(campaign_list(tenant=portal.tenant), pk=pk)
    form = initial({"outcomes": list(REDIAL_DEFAULT_OUTCOMES), "name": f"{campaign.name} (redial)"})
    if request.method == "POST":
        form = bind(RedialInputSerializer, request.POST)
        if form.ok:
            try:
                copy = campaign_redial(campaign=campaign, **form.data)
            except InvalidInput as exc:
                form.add_invalid(exc)
            else:
                portal_audit(request, "campaign.redial", f"campaign {campaign.pk}", new_campaign=copy.pk)
                messages.success(
                    request, f"“{copy.name}” created as a draft with {copy.leads.count()} leads."
                )
                return redirect("portal:campaign", pk=copy.pk)
    outcomes = list(dict.fromkeys([*REDIAL_DEFAULT_OUTCOMES, *(o.value for o in AttemptOutcome)]))
    context = {"title": "Redial", "campaign": campaign, "form": form, "outcomes": outcomes}
    return render(request, "portal/results/redial.html", context, status=400 if form.errors else 200)


urlpatterns = [path("<int:pk>/redial", redial, name="campaign-redial")]
