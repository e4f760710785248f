"""Reads about template variables: which ones a campaign's agent uses that its contacts lack, and the
brief preview of one lead (what the agent would be told on a call to it).

Both go through the code that writes the real call brief (``campaigns.services.briefs.brief_texts`` and
``campaigns.prompts``), so a preview or a refusal can never disagree with what a call would say.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from campaigns.models import Campaign, Lead
from campaigns.prompts import contact_variables, missing_variables, template_variables
from campaigns.services.briefs import brief_texts
from tenants.models import Tenant

# Leads are read in chunks of this many rows: a campaign may hold many thousands.
_CHUNK = 2_000


@dataclass(frozen=True)
class MissingVariables:
    """Variables the agent uses → how many of the campaign's ``leads`` (those still to be dialed) have a
    contact without a value for it; only variables lacked by at least one contact are listed."""

    lacking: dict[str, int]
    leads: int

    def describe(self) -> str:
        parts = [f"{{{{{name}}}}} is missing for {count}" for name, count in sorted(self.lacking.items())]
        return (
            f"the agent's instructions or greeting use variables that some of the campaign's {self.leads} "
            f"contacts to call lack ({'; '.join(parts)}): give the contacts those variables (e.g. a CSV "
            "column of that name) or change the agent; name, first_name and phone_number are built in"
        )


def campaign_missing_variables(*, campaign: Campaign) -> MissingVariables:
    """For the campaign's waiting leads, which variables of its agent's templates their contacts lack."""
    agent = campaign.agent
    templates = (agent.instructions, agent.greeting)
    if not any(template_variables(template) for template in templates):
        return MissingVariables(lacking={}, leads=0)
    lacking: Counter[str] = Counter()
    leads = 0
    rows = (
        Lead.objects.filter(campaign=campaign, status=Lead.Status.WAITING)
        .order_by()
        .values_list("contact__name", "contact__phone_number", "contact__variables")
    )
    for name, phone_number, variables in rows.iterator(chunk_size=_CHUNK):
        leads += 1
        values = contact_variables(name=name, phone_number=phone_number, variables=variables or {})
        lacking.update(missing_variables(templates=templates, values=values))
    return MissingVariables(lacking=dict(lacking), leads=leads)


def lead_brief_preview(*, tenant: Tenant, lead_id: int) -> dict[str, Any]:
    """The instructions and greeting a call to the lead would carry now, the variables they use, those the
    contact lacks (said as blanks) and the values used. Another tenant's lead is ``Lead.DoesNotExist``."""
    lead = Lead.objects.select_related("campaign__agent", "contact").get(pk=lead_id, campaign__tenant=tenant)
    texts = brief_texts(agent=lead.campaign.agent, contact=lead.contact)
    return {
        "lead_id": lead.pk,
        "campaign_id": lead.campaign_id,
        "agent_id": lead.campaign.agent_id,
        "instructions": texts.instructions,
        "greeting": texts.greeting,
        "variables_used": texts.used,
        "variables_missing": texts.missing,
        "variables": texts.values,
    }
