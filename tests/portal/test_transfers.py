"""The portal's transfer target pages (list, create, the target's page with its reps, delete) and the
campaign form's transfer targets."""

from __future__ import annotations

import pytest
from django.urls import reverse

from campaigns.models import Campaign, TransferTarget
from campaigns.services.transfers import transfer_target_create
from tests.campaigns.factories import make_agent
from tests.portal.test_campaigns import _form as campaign_form

pytestmark = pytest.mark.django_db


def test_create_a_group_with_its_reps_and_manage_them(tenant, manager, viewer):
    page = manager.get(reverse("portal:transfer-targets"))
    assert page.status_code == 200 and b"No transfer target yet." in page.content
    bad = manager.post(
        reverse("portal:transfer-target-new"),
        {"name": "Sales", "kind": "group", "mode": "warm", "reps": "Sam, +14155550111\nBo, nope"},
    )
    assert bad.status_code == 400 and b"members[1].number" in bad.content
    assert not TransferTarget.objects.exists()
    created = manager.post(
        reverse("portal:transfer-target-new"),
        {"name": "Sales", "kind": "group", "mode": "warm", "reps": "Sam, +14155550111, 2\nBo, +14155550112"},
    )
    target = TransferTarget.objects.get(tenant=tenant)
    assert created.status_code == 302 and created.url == reverse("portal:transfer-target", args=[target.pk])
    assert [(m.name, m.max_concurrent) for m in target.members.all()] == [("Sam", 2), ("Bo", 1)]
    listed = manager.get(reverse("portal:transfer-targets"))
    assert b"Sam (0/2)" in listed.content
    # A rep added, capped, switched off, removed.
    url = reverse("portal:transfer-target-member-add", args=[target.pk])
    assert manager.post(url, {"name": "Cy", "number": "12"}).status_code == 400
    assert (
        manager.post(url, {"name": "Cy", "number": "+14155550113", "max_concurrent": "3"}).status_code == 302
    )
    cy = target.members.get(name="Cy")
    member_url = reverse("portal:transfer-target-member", args=[target.pk, cy.pk])
    manager.post(member_url, {"action": "cap", "max_concurrent": "5"})
    manager.post(member_url, {"action": "toggle"})
    cy.refresh_from_db()
    assert (cy.max_concurrent, cy.enabled) == (5, False)
    manager.post(member_url, {"action": "remove"})
    assert not target.members.filter(name="Cy").exists()
    # Settings; a viewer sees the page but may not change it.
    saved = manager.post(
        reverse("portal:transfer-target", args=[target.pk]), {"name": "Sales team", "mode": "cold"}
    )
    assert saved.status_code == 302
    target.refresh_from_db()
    assert (target.name, target.mode) == ("Sales team", "cold")
    assert viewer.get(reverse("portal:transfer-target", args=[target.pk])).status_code == 200
    assert viewer.post(reverse("portal:transfer-target-delete", args=[target.pk])).status_code == 403
    assert manager.post(reverse("portal:transfer-target-delete", args=[target.pk])).status_code == 302
    assert not TransferTarget.objects.exists()


def test_another_tenants_target_is_not_found(other_tenant, manager):
    theirs = transfer_target_create(tenant=other_tenant, name="Theirs", number="+14155550111")
    assert manager.get(reverse("portal:transfer-target", args=[theirs.pk])).status_code == 404
    assert manager.post(reverse("portal:transfer-target-delete", args=[theirs.pk])).status_code == 404
    assert b"Theirs" not in manager.get(reverse("portal:transfer-targets")).content


def test_a_queue_target_is_checked_against_the_operators_contexts(manager):
    bad = manager.post(
        reverse("portal:transfer-target-new"),
        {"name": "Q", "kind": "queue", "mode": "warm", "endpoint": "PJSIP/+14155550111@trunk"},
    )
    assert bad.status_code == 400 and b"Local/&lt;queue&gt;@&lt;context&gt;" in bad.content
    good = manager.post(
        reverse("portal:transfer-target-new"),
        {"name": "Q", "kind": "queue", "mode": "warm", "endpoint": "Local/sales@ai-queues"},
    )
    assert good.status_code == 302


def test_the_campaign_form_picks_transfer_targets(tenant, other_tenant, manager):
    agent = make_agent(tenant)
    desk = transfer_target_create(tenant=tenant, name="Desk", number="+14155550111")
    theirs = transfer_target_create(tenant=other_tenant, name="Theirs", number="+14155550112")
    form = manager.get(reverse("portal:campaign-new"))
    assert (
        b'name="transfer_targets"' in form.content
        and b"Desk" in form.content
        and b"Theirs" not in form.content
    )
    refused = manager.post(
        reverse("portal:campaign-new"),
        campaign_form(
            agent.pk, transfer_targets__present="1", transfer_targets=[str(desk.pk), str(theirs.pk)]
        ),
    )
    assert refused.status_code == 400 and b"no such transfer target" in refused.content
    assert not Campaign.objects.exists()
    created = manager.post(
        reverse("portal:campaign-new"),
        campaign_form(agent.pk, transfer_targets__present="1", transfer_targets=[str(desk.pk)]),
    )
    assert created.status_code == 302, created.content
    campaign = Campaign.objects.get()
    assert [t.pk for t in campaign.transfer_targets.all()] == [desk.pk]
    edit = manager.get(reverse("portal:campaign-edit", args=[campaign.pk]))
    assert f'value="{desk.pk}" checked'.encode() in edit.content


def test_the_call_page_lists_its_transfers(tenant, manager):
    from django.db import transaction

    from campaigns.services.transfers import transfer_pick
    from tests.campaigns.factories import make_campaign, make_lead, make_pbx
    from tests.portal.test_calls import make_call

    make_pbx(tenant)
    call = make_call(make_lead(tenant, make_campaign(tenant)))
    target = transfer_target_create(
        tenant=tenant, name="Team", kind="group", members=[{"name": "Sam", "number": "+14155550111"}]
    )
    page = manager.get(reverse("portal:call", kwargs={"pk": call.pk}))
    assert page.status_code == 200 and b"call-transfers" not in page.content
    with transaction.atomic():
        transfer_pick(attempt=call, target=target, summary="<b>wants</b> a quote")
    page = manager.get(reverse("portal:call", kwargs={"pk": call.pk}))
    assert b'id="call-transfers"' in page.content and b"Sam +14155550111" in page.content
    assert b"&lt;b&gt;wants&lt;/b&gt; a quote" in page.content
