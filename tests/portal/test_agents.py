"""The portal's agent profile pages: list, create/edit, the profile's page and the call brief preview."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.models import AgentProfile
from tenants.models import AuditEntry
from tests.campaigns.factories import make_agent, make_campaign, make_contact, make_lead

pytestmark = pytest.mark.django_db


def _form(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Sales",
        "instructions": "You call {{first_name}} about their {{appointment}}.",
        "greeting": "Hi {{first_name}}!",
        "voice": "coral",
        "model": "gpt-realtime",
        "language": "en",
        "turn_detection": "semantic_vad",
        "tools__present": "1",
        "tools": ["end_call", "transfer_to_human"],
        "transfer_numbers": "+14155550111\n\n +14155550112 \n",
    }
    data.update(overrides)
    return data


def test_the_list_says_what_to_do_when_there_is_no_agent(manager, viewer):
    page = manager.get(reverse("portal:agents"))
    assert page.status_code == 200
    assert b"No agent yet." in page.content and b'data-empty="true"' in page.content
    assert reverse("portal:agent-new").encode() in page.content
    assert reverse("portal:agent-new").encode() not in viewer.get(reverse("portal:agents")).content


def test_the_list_shows_the_tenants_agents_only(tenant, other_tenant, manager):
    agent = make_agent(tenant, name="<b>Sales</b>")
    make_campaign(tenant, agent=agent)
    make_agent(other_tenant, name="Theirs")
    page = manager.get(reverse("portal:agents"))
    assert b"&lt;b&gt;Sales&lt;/b&gt;" in page.content and b"<b>Sales</b>" not in page.content
    assert b"Theirs" not in page.content
    assert b'data-campaigns="1"' in page.content


@pytest.mark.parametrize("count", [3, 40])
def test_the_list_reads_in_a_handful_of_queries_however_many_agents(
    tenant, manager, django_assert_max_num_queries, count
):
    for n in range(count):
        agent = make_agent(tenant, name=f"Agent {n:03d}")
        if n < 2:
            make_campaign(tenant, agent=agent)
    with django_assert_max_num_queries(10):
        page = manager.get(reverse("portal:agents"))
    assert page.status_code == 200
    assert page.content.count(b"data-agent=") == count


def test_creating_an_agent_saves_the_api_shape_and_audits_it(tenant, manager):
    form = manager.get(reverse("portal:agent-new"))
    assert form.status_code == 200 and b'id="agent-form"' in form.content
    response = manager.post(reverse("portal:agent-new"), _form())
    assert response.status_code == 302
    agent = AgentProfile.objects.get(tenant=tenant)
    assert response["Location"] == reverse("portal:agent", args=[agent.pk])
    assert agent.tools == ["end_call", "transfer_to_human"]
    assert agent.transfer_numbers == ["+14155550111", "+14155550112"]
    assert agent.voice == "coral" and agent.turn_detection == "semantic_vad"
    entry = AuditEntry.objects.get(tenant=tenant)
    assert entry.action == "agent.create" and f"agent {agent.pk}" in entry.target
    page = manager.get(response["Location"])
    assert b"Agent created." in page.content and b"+14155550111" in page.content


def test_no_tool_checked_means_no_tools(tenant, manager):
    data = _form()
    data.pop("tools")
    assert manager.post(reverse("portal:agent-new"), data).status_code == 302
    assert AgentProfile.objects.get(tenant=tenant).tools == []


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"transfer_numbers": "+14155550111\nnot-a-number"}, "transfer_numbers", b"international form"),
        ({"tools": ["end_call", "launch_rockets"]}, "tools", b"launch_rockets"),
        ({"instructions": "   "}, "instructions", b""),
        ({"name": ""}, "name", b""),
        ({"turn_detection": "guess"}, "turn_detection", b"must be one of"),
    ],
)
def test_a_bad_form_shows_the_message_beside_the_field_and_saves_nothing(
    tenant, manager, overrides, field, message
):
    response = manager.post(reverse("portal:agent-new"), _form(**overrides))
    assert response.status_code == 400
    marker = f'data-field="{field}"'.encode()
    assert marker in response.content
    assert message in response.content.split(marker, 1)[1].split(b"</ul>", 1)[0]
    assert not AgentProfile.objects.exists()
    assert not AuditEntry.objects.exists()


def test_editing_an_agent_changes_it_and_a_bad_edit_changes_nothing(tenant, manager):
    agent = make_agent(tenant, name="Support")
    form = manager.get(reverse("portal:agent-edit", args=[agent.pk]))
    assert form.status_code == 200 and b"Support" in form.content
    bad = manager.post(reverse("portal:agent-edit", args=[agent.pk]), _form(transfer_numbers="nope"))
    assert bad.status_code == 400
    agent.refresh_from_db()
    assert agent.name == "Support" and agent.transfer_numbers == []
    good = manager.post(reverse("portal:agent-edit", args=[agent.pk]), _form(name="Support 2"))
    assert good.status_code == 302
    agent.refresh_from_db()
    assert agent.name == "Support 2" and agent.tools == ["end_call", "transfer_to_human"]
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["agent.update"]


def test_a_viewer_sees_no_write_controls_and_a_forged_post_changes_nothing(tenant, viewer):
    agent = make_agent(tenant, name="Keep")
    page = viewer.get(reverse("portal:agent", args=[agent.pk]))
    assert page.status_code == 200
    assert reverse("portal:agent-edit", args=[agent.pk]).encode() not in page.content
    assert reverse("portal:agent-preview", args=[agent.pk]).encode() in page.content  # reading is fine
    assert (
        viewer.post(reverse("portal:agent-edit", args=[agent.pk]), _form(name="Changed")).status_code == 403
    )
    assert viewer.post(reverse("portal:agent-new"), _form()).status_code == 403
    agent.refresh_from_db()
    assert agent.name == "Keep" and AgentProfile.objects.count() == 1
    assert not AuditEntry.objects.exists()


def test_another_tenants_agent_is_not_found(other_tenant, manager):
    theirs = make_agent(other_tenant, name="Theirs")
    for name in ("portal:agent", "portal:agent-edit", "portal:agent-preview"):
        assert manager.get(reverse(name, args=[theirs.pk])).status_code == 404
    assert manager.post(reverse("portal:agent-edit", args=[theirs.pk]), _form()).status_code == 404
    theirs.refresh_from_db()
    assert theirs.name == "Theirs"


def test_the_agent_page_lists_its_campaigns_or_says_none(tenant, manager):
    agent = make_agent(tenant)
    page = manager.get(reverse("portal:agent", args=[agent.pk]))
    assert b"No campaign uses this agent yet." in page.content
    make_campaign(tenant, agent=agent, name="Uses it")
    assert b"Uses it" in manager.get(reverse("portal:agent", args=[agent.pk])).content


# -------------------------------------------------------------------------------------------- preview


def test_the_preview_renders_the_brief_for_a_sample_contact(tenant, manager):
    agent = make_agent(
        tenant,
        instructions="You call {{first_name}} about their {{appointment}}.",
        greeting="Hi {{first_name}}!",
        tools=["end_call", "send_sms"],
        transfer_numbers=["+14155550111"],
    )
    page = manager.get(reverse("portal:agent-preview", args=[agent.pk]))
    assert page.status_code == 200
    content = page.content.decode()
    assert "Hi Alex!" in content
    assert "You call Alex about their ." in content
    assert 'data-missing="appointment"' in content
    assert "send_sms" in content and "+14155550111" in content
    # A contact typed in, with the variable.
    typed = manager.get(
        reverse("portal:agent-preview", args=[agent.pk]),
        {
            "name": "Maria Lopez",
            "phone_number": "+34911234567",
            "variables": '{"appointment": "dentist visit"}',
        },
    )
    assert "You call Maria about their dentist visit." in typed.content.decode()
    assert 'data-missing=""' in typed.content.decode()


def test_the_preview_for_a_lead_uses_its_contact_and_campaign(tenant, other_tenant, manager):
    agent = make_agent(tenant, greeting="Hello {{name}}")
    campaign = make_campaign(tenant, agent=agent, caller_id="+14155550177")
    contact = make_contact(tenant, "+12125550150", name="Jo <Smith>")
    lead = make_lead(tenant, campaign, contact.phone_number)
    page = manager.get(reverse("portal:agent-preview", args=[agent.pk]), {"lead": lead.pk})
    assert page.status_code == 200
    assert b"Hello Jo &lt;Smith&gt;" in page.content
    assert b"+14155550177" in page.content
    theirs = make_lead(other_tenant, make_campaign(other_tenant), "+12125550151")
    refused = manager.get(reverse("portal:agent-preview", args=[agent.pk]), {"lead": theirs.pk})
    assert refused.status_code == 400
    assert b'data-field="lead"' in refused.content


def test_the_preview_refuses_variables_that_are_not_json(tenant, manager):
    agent = make_agent(tenant)
    page = manager.get(reverse("portal:agent-preview", args=[agent.pk]), {"variables": "{oops"})
    assert page.status_code == 400
    assert b'data-field="variables"' in page.content and b"Not valid JSON" in page.content
