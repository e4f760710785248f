"""The campaign form's transfer targets (``{% campaign_transfer_targets %}``, in the partial
``portal/transfers/_campaign_targets.html``): the tenant's targets as checkboxes, checked as submitted, else
as the campaign has them."""

from __future__ import annotations

from typing import Any

from django import template

from campaigns.transfer_selectors import call_transfer_list, transfer_target_list

register = template.Library()


@register.inclusion_tag("portal/transfers/_campaign_targets_field.html", takes_context=True)
def campaign_transfer_targets(context: template.Context) -> dict[str, Any]:
    request = context["request"]
    form, campaign = context.get("form"), context.get("campaign")
    if form is not None and form.submitted:
        raw = form.values.get("transfer_targets") or []
        chosen = {str(v) for v in (raw if isinstance(raw, list) else [raw])}
    elif campaign is not None:
        chosen = {str(link.target_id) for link in campaign.transfer_target_links.all()}
    else:
        chosen = set()
    errors = [
        message
        for name, messages in (form.errors.items() if form is not None else [])
        if name.startswith("transfer_targets")
        for message in messages
    ]
    targets = transfer_target_list(tenant=request.portal.tenant)
    return {"targets": [(t, str(t.pk) in chosen) for t in targets], "errors": errors, "request": request}


@register.inclusion_tag("portal/transfers/_call_transfers_table.html", takes_context=True)
def call_transfers(context: template.Context) -> dict[str, Any]:
    """The transfers of the call page's attempt (``attempt`` in the context), oldest first."""
    request, attempt = context["request"], context.get("attempt")
    rows = []
    if attempt is not None:
        rows = list(
            call_transfer_list(tenant=request.portal.tenant, attempt_id=attempt.pk).order_by("created_at")
        )
    return {"transfers": rows}
