"""Template variables a newcomer trips on: ``{{first_name}}`` with a CSV that only had ``name`` once made
the agent say "Hi , this is the demo assistant". Now: ``first_name`` is built in (from the name), a
campaign refuses to start while a contact lacks a variable its agent uses, the import warns about the
column it is missing, and ``GET /api/v1/leads/{id}/brief`` shows what a call would say."""

from __future__ import annotations

import pytest

from campaigns.models import Campaign
from campaigns.prompts import contact_variables, missing_variables
from campaigns.services.campaigns import campaign_pause, campaign_start
from campaigns.services.contacts import lead_add
from campaigns.services.imports import leads_import_csv
from orchestrator.errors import InvalidInput
from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_lead, make_tenant
from tests.campaigns.test_api import API, api_client

pytestmark = pytest.mark.django_db

GREETING = "Hi {{first_name}}, this is the demo assistant."


def _campaign(
    instructions: str = "Call {{first_name}} about {{plan}}.", greeting: str = GREETING
) -> Campaign:
    tenant = make_tenant()
    return make_campaign(tenant, agent=make_agent(tenant, instructions=instructions, greeting=greeting))


def test_built_in_variables_come_from_the_contact_and_its_own_win_unless_blank():
    values = contact_variables(name="Dana Smith", phone_number="+12125550101", variables={"plan": "gold"})
    assert values == {
        "name": "Dana Smith",
        "first_name": "Dana",
        "phone_number": "+12125550101",
        "plan": "gold",
    }
    values = contact_variables(
        name="Dana Smith", phone_number="+1", variables={"first_name": "Dee", "name": " "}
    )
    assert (values["first_name"], values["name"]) == ("Dee", "Dana Smith")
    assert contact_variables(name="", phone_number="+1", variables={})["first_name"] == ""
    assert missing_variables(templates=["{{first_name}} {{x}}", "{{name}}"], values=values) == {"x"}


def test_a_campaign_whose_contacts_lack_a_variable_is_refused_at_start_naming_it_and_the_count():
    campaign = _campaign()
    tenant = campaign.tenant
    lead_add(
        campaign=campaign,
        contact=make_contact(tenant, "+12125550101", name="Ann Lee", variables={"plan": "a"}),
    )
    lead_add(campaign=campaign, contact=make_contact(tenant, "+12125550102", variables={"plan": "b"}))
    lead_add(campaign=campaign, contact=make_contact(tenant, "+12125550103"))

    response = api_client(tenant).post(f"{API}/campaigns/{campaign.pk}/start")

    assert response.status_code == 400
    [message] = response.json()["variables"]
    assert "{{first_name}} is missing for 2" in message
    assert "{{plan}} is missing for 1" in message
    assert "3 contacts" in message
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_a_campaign_starts_once_every_contact_has_its_variables():
    campaign = _campaign(instructions="Call {{first_name}}.", greeting="Hello {{name}}!")
    tenant = campaign.tenant
    make_lead(tenant, campaign, "+12125550101")
    with pytest.raises(InvalidInput) as error:
        campaign_start(campaign=campaign)
    assert error.value.field == "variables"
    make_contact(tenant, "+12125550101", name="Ann Lee")  # the name gives name and first_name
    assert campaign_start(campaign=campaign).status == Campaign.Status.RUNNING


def test_resume_checks_the_variables_too():
    campaign = _campaign(instructions="Call {{first_name}}.", greeting="")
    tenant = campaign.tenant
    lead_add(campaign=campaign, contact=make_contact(tenant, "+12125550101", name="Ann"))
    campaign_start(campaign=campaign)
    campaign_pause(campaign=campaign)
    make_lead(tenant, campaign, "+12125550102")  # added while paused, without a name
    response = api_client(tenant).post(f"{API}/campaigns/{campaign.pk}/resume")
    assert (response.status_code, list(response.json())) == (400, ["variables"])
    assert Campaign.objects.get(pk=campaign.pk).status == Campaign.Status.PAUSED


def test_a_campaign_without_variables_starts_whatever_its_contacts():
    campaign = _campaign(instructions="Hello there.", greeting="")
    make_lead(campaign.tenant, campaign, "+12125550101")
    assert campaign_start(campaign=campaign).status == Campaign.Status.RUNNING


def test_the_import_warns_about_a_column_the_templates_need_and_the_file_lacks():
    campaign = _campaign()
    report = leads_import_csv(campaign=campaign, data="phone_number,name\n+12125550101,Ann Lee\n")
    assert report["created"] == 1
    assert [warning["column"] for warning in report["warnings"]] == ["plan"]
    assert "no plan column" in report["warnings"][0]["message"]

    # The original trip: name given but not first_name: first_name now comes from the name; a row without
    # a name is warned about by row.
    report = leads_import_csv(
        campaign=campaign, data="phone_number,name,plan\n+12125550102,Bo Chen,gold\n+12125550103,,silver\n"
    )
    assert [warning["column"] for warning in report["warnings"]] == ["name"]
    assert "empty in 1 row(s) (3)" in report["warnings"][0]["message"]
    assert "{{first_name}}" in report["warnings"][0]["message"]


def test_an_import_with_every_column_has_no_warning():
    campaign = _campaign()
    report = leads_import_csv(campaign=campaign, data="phone_number,first_name,plan\n+12125550101,Ann,gold\n")
    assert report["warnings"] == []
    report = leads_import_csv(
        campaign=_campaign(instructions="Hi.", greeting=""), data="phone_number\n+12125550109\n"
    )
    assert report["warnings"] == []


def test_the_brief_preview_renders_the_real_brief_texts_for_one_lead():
    campaign = _campaign()
    tenant = campaign.tenant
    lead = make_lead(tenant, campaign, "+12125550101")
    make_contact(tenant, "+12125550101", name="Ann Lee")
    api = api_client(tenant)

    body = api.get(f"{API}/leads/{lead.pk}/brief").json()

    assert body == {
        "lead_id": lead.pk,
        "campaign_id": campaign.pk,
        "agent_id": campaign.agent_id,
        "instructions": "Call Ann about .",
        "greeting": "Hi Ann, this is the demo assistant.",
        "variables_used": ["first_name", "plan"],
        "variables_missing": ["plan"],
        "variables": {"first_name": "Ann"},
    }
    other = make_lead(make_tenant())
    assert api.get(f"{API}/leads/{other.pk}/brief").status_code == 404
