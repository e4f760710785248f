"""Portal pages of compliance: a contact's prior express consents (listed, recorded, revoked), and the
pieces the campaign pages include (the campaign form's consent and disclosure fields, the campaign's and
the dashboard's abandonment figures: templates under ``portal/compliance/``).

The consent form is validated by the API's ``ContactConsentInputSerializer`` and written by the same
service (``campaigns.services.consent``), so the portal shows the API's messages beside the field.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils import timezone

from campaigns.api.serializers import ContactConsentInputSerializer
from campaigns.models import Campaign, ConsentKind, Contact
from campaigns.selectors import contact_consent_list, contact_list, lead_list
from campaigns.services.consent import consent_create, consent_revoke
from orchestrator.errors import InvalidInput
from portal.access import PortalRequest, portal_audit, portal_view
from portal.forms import Bound, bind


def campaign_form_values(campaign: Campaign | None) -> dict[str, Any]:
    """The compliance fields of the campaign form (a new campaign shows the model's defaults)."""
    campaign = campaign or Campaign()
    return {
        "requires_prior_consent": campaign.requires_prior_consent,
        "prior_consent_kind": campaign.prior_consent_kind,
        "disclosure": campaign.disclosure,
    }


def _contact(request: HttpRequest, pk: int) -> Contact:
    req: PortalRequest = request  # type: ignore[assignment]
    return get_object_or_404(contact_list(tenant=req.portal.tenant), pk=pk)


def _render(
    request: HttpRequest, contact: Contact, form: Bound | None = None, status: int = 200
) -> HttpResponse:
    req: PortalRequest = request  # type: ignore[assignment]
    tenant = req.portal.tenant
    context = {
        "contact": contact,
        "consents": contact_consent_list(tenant=tenant, contact_id=contact.pk),
        "leads": lead_list(tenant=tenant).filter(contact=contact).select_related("campaign"),
        "form": form or Bound(values={"kind": ConsentKind.PRIOR_EXPRESS}),
        "kinds": ConsentKind.choices,
        "zone": f"In {tenant.default_timezone}, the account's time zone.",
    }
    return render(request, "portal/compliance/consents.html", context, status=status)


@portal_view()
def consents(request: HttpRequest, pk: int) -> HttpResponse:
    """A contact's consents, and (POST) recording a new one."""
    contact = _contact(request, pk)
    if request.method != "POST":
        return _render(request, contact)
    req: PortalRequest = request  # type: ignore[assignment]
    with timezone.override(ZoneInfo(req.portal.tenant.default_timezone)):
        form = bind(ContactConsentInputSerializer, request.POST, context={"tenant": req.portal.tenant})
    if form.ok:
        try:
            consent = consent_create(
                contact=contact,
                kind=form.data.get("kind") or ConsentKind.PRIOR_EXPRESS,
                source=form.data.get("source", ""),
                captured_at=form.data.get("captured_at"),
                evidence=form.data.get("evidence", ""),
            )
        except InvalidInput as exc:
            form.add_invalid(exc)
        else:
            portal_audit(request, "consent.create", f"consent {consent.pk} of {contact.phone_number}")
            messages.success(request, f"Consent of {contact.phone_number} recorded.")
            return redirect("portal:contact-consents", pk=contact.pk)
    return _render(request, contact, form, status=400)


@portal_view()
def revoke(request: HttpRequest, pk: int, consent_pk: int) -> HttpResponse:
    contact = _contact(request, pk)
    if request.method != "POST":
        return redirect("portal:contact-consents", pk=contact.pk)
    req: PortalRequest = request  # type: ignore[assignment]
    consent = get_object_or_404(
        contact_consent_list(tenant=req.portal.tenant, contact_id=contact.pk), pk=consent_pk
    )
    consent_revoke(consent=consent)
    portal_audit(request, "consent.revoke", f"consent {consent.pk} of {contact.phone_number}")
    messages.success(
        request,
        f"Consent of {contact.phone_number} revoked: it is no longer dialed where consent is required.",
    )
    return redirect("portal:contact-consents", pk=contact.pk)


urlpatterns = [
    path("contacts/<int:pk>/consents", consents, name="contact-consents"),
    path("contacts/<int:pk>/consents/<int:consent_pk>/revoke", revoke, name="contact-consent-revoke"),
]
