"""The portal's After hours pages: numbers, flows, people, groups, rotations (and the calendar of who is on
call), overrides, escalation policies, incidents (live timeline, acknowledge / resolve) and inbound calls."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from flows import setup_selectors
from flows.models import (
    BusinessHours,
    EscalationPolicy,
    Holiday,
    InboundFlow,
    Incident,
    IncidentEvent,
    IntakeField,
    OnCallGroup,
    OnCallPerson,
    PhoneNumber,
    Rotation,
    RotationOverride,
)
from flows.selectors import rotation_calendar, rotation_on_call_person
from flows.services import timeline
from flows.services.escalation import incident_timer_key
from flows.services.setup_oncall import rotation_override_create
from tenants.models import AuditEntry, Tenant
from tests.flows.setup_factories import (
    make_call,
    make_flow,
    make_group,
    make_incident,
    make_number,
    make_person,
    make_policy,
    make_rotation,
)
from timers.models import Timer

pytestmark = pytest.mark.django_db


def url(name: str, *args: Any) -> str:
    return reverse(f"portal:{name}", args=args)


def errors_beside(html: str, field: str) -> list[str]:
    """The messages shown in the error list of ``field``."""
    match = re.search(rf'<ul class="errors"[^>]*data-field="{re.escape(field)}"[^>]*>(.*?)</ul>', html, re.S)
    return re.findall(r"<li>(.*?)</li>", match.group(1), re.S) if match else []


def audited(tenant: Tenant, action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(tenant=tenant, action=action, via="portal"))


# ------------------------------------------------------------------------------------- empty states

LIST_PAGES = [
    ("after-hours", "No phone number yet."),
    ("ah-numbers", "No phone number yet."),
    ("ah-flows", "No inbound flow yet."),
    ("ah-people", "No on-call person yet."),
    ("ah-groups", "No group yet."),
    ("ah-rotations", "No rotation yet."),
    ("ah-policies", "No escalation policy yet."),
    ("ah-incidents", "No incident yet."),
    ("ah-calls", "No inbound call yet."),
]


@pytest.mark.parametrize(("name", "title"), LIST_PAGES)
def test_empty_pages_say_what_to_do_next(manager: Client, name: str, title: str) -> None:
    response = manager.get(url(name))
    assert response.status_code == 200
    html = response.content.decode()
    assert title in html
    assert 'data-empty="true"' in html


def test_the_empty_overview_offers_a_manager_the_next_step_and_a_viewer_none(manager, viewer):
    assert url("ah-number-new") in manager.get(url("after-hours")).content.decode()
    html = viewer.get(url("after-hours")).content.decode()
    assert "No phone number yet." in html
    assert url("ah-number-new") not in html
    assert url("ah-rotation-new") not in html


# ----------------------------------------------------------------------------------- pages render


@pytest.fixture
def world(tenant: Tenant) -> dict[str, Any]:
    alice = make_person(tenant, name="Alice")
    bob = make_person(tenant, name="Bob <b>")
    rotation = make_rotation(tenant, [alice, bob], name="Techs")
    group = make_group(tenant, [alice, bob])
    policy = make_policy(tenant, alice, name="Night")
    flow = make_flow(
        tenant,
        name="Main line",
        escalation_policy=policy,
        business_hours=[{"weekday": 0, "opens": "09:00", "closes": "17:00"}],
        holidays=[{"date": "2026-12-25", "name": "Christmas"}],
    )
    number = make_number(tenant, flow, "+12125557000")
    incident = make_incident(tenant, flow=flow, policy=policy, did=number.number, person=alice)
    call = incident.inbound_call
    assert call is not None
    call.transcript = [
        {"role": "assistant", "text": "Acme, how can I help?", "at": "2026-12-04T22:00:01+00:00"},
        {"role": "user", "text": "<script>alert(1)</script> no heat", "at": "2026-12-04T22:00:05+00:00"},
    ]
    call.save()
    return {
        "alice": alice,
        "bob": bob,
        "rotation": rotation,
        "group": group,
        "policy": policy,
        "flow": flow,
        "number": number,
        "incident": incident,
        "call": call,
    }


def test_every_page_renders_what_the_selectors_return(manager, world):
    pages = {
        url("after-hours"): ["+12125557000", "Main line", "Techs", world["incident"].short_code],
        url("ah-numbers"): ["+12125557000", "Main line"],
        url("ah-flows"): ["Main line", "+12125557000", "Night"],
        url("ah-flow", world["flow"].pk): ["Christmas", "09:00", "Take the caller", "Night"],
        url("ah-people"): ["Alice", "Bob &lt;b&gt;"],
        url("ah-groups"): [world["group"].name, "Alice"],
        url("ah-rotations"): ["Techs", "Alice"],
        url("ah-rotation", world["rotation"].pk): ["Techs", 'id="ah-rotation-calendar"'],
        url("ah-policies"): ["Night", "Alice"],
        url("ah-policy", world["policy"].pk): ["Night", "Main line"],
        url("ah-incidents"): [world["incident"].short_code, "No heat, baby at home"],
        url("ah-incident", world["incident"].pk): [
            'id="incident-timeline"',
            f'hx-trigger="sse:incident-{world["incident"].pk}, every 10s"',
            'id="incident-ack"',
            'id="incident-resolve"',
            "Step fired",
        ],
        url("ah-calls"): ["+19175551212", world["incident"].short_code],
        url("ah-call", world["call"].pk): ["Acme, how can I help?", "No heat", "Pat"],
        url("ah-number-new"): ['id="ah-number-form"'],
        url("ah-number-edit", world["number"].pk): ["+12125557000"],
        url("ah-flow-new"): ['id="ah-flow-form"'],
        url("ah-flow-edit", world["flow"].pk): [
            "09:00-17:00",
            "2026-12-25 Christmas",
            "name | Name | required",
        ],
        url("ah-person-new"): ['id="ah-person-form"'],
        url("ah-person-edit", world["alice"].pk): ["Alice"],
        url("ah-group-new"): ['id="ah-group-form"'],
        url("ah-group-edit", world["group"].pk): [world["group"].name],
        url("ah-rotation-new"): ['id="ah-rotation-form"'],
        url("ah-rotation-edit", world["rotation"].pk): ["Techs"],
        url("ah-policy-new"): ['id="ah-policy-form"'],
        url("ah-policy-edit", world["policy"].pk): ["Night", f"person:{world['alice'].pk}"],
        url("ah-incident-timeline", world["incident"].pk): ["Opened", "Step fired"],
    }
    for page_url, expected in pages.items():
        response = manager.get(page_url)
        assert response.status_code == 200, page_url
        html = response.content.decode()
        for text in expected:
            assert text in html, (page_url, text)
    # Tenant text is escaped, never run.
    call_html = manager.get(url("ah-call", world["call"].pk)).content.decode()
    assert "<script>alert(1)</script>" not in call_html
    assert "&lt;script&gt;" in call_html


# ------------------------------------------------------------------------------------------- forms


def test_a_person_is_created_through_the_api_rules_and_audited(tenant, manager):
    response = manager.post(
        url("ah-person-new"),
        {
            "name": "Dana",
            "phone": "+1 212 555 0101",
            "sms_number": "",
            "timezone": "",
            "active": "on",
            "active__present": "1",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    person = OnCallPerson.objects.get(tenant=tenant, name="Dana")
    assert person.phone == "+12125550101"
    assert [e.target for e in audited(tenant, "oncall_person.create")] == [
        f"on-call person {person.pk} (Dana)"
    ]
    assert "On-call person created." in manager.get(response["Location"]).content.decode()


def test_a_bad_person_shows_the_apis_message_beside_the_field_and_saves_nothing(tenant, manager):
    response = manager.post(
        url("ah-person-new"), {"name": "Dana", "phone": "not a number", "timezone": "Mars/Base"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert errors_beside(html, "phone") or errors_beside(html, "timezone")
    assert 'value="Dana"' in html  # what was typed is shown again
    assert not OnCallPerson.objects.filter(tenant=tenant).exists()
    assert not audited(tenant, "oncall_person.create")


def test_a_flow_with_hours_holidays_and_intake_is_created(tenant, manager):
    policy = make_policy(tenant, name="Night")
    response = manager.post(
        url("ah-flow-new"),
        {
            "name": "Front desk",
            "enabled": "on",
            "enabled__present": "1",
            "hours_0": "08:00-12:00, 13:00-17:00",
            "hours_4": "09:00-15:00",
            "holidays_text": "2026-12-25 Christmas\n2027-01-01 New year",
            "intake_text": "callback_number | Callback number | required\nproblem | Problem",
            "in_hours_action": "transfer",
            "office_number": "+12125550100",
            "transfer_timeout_s": "30",
            "after_hours_action": "agent_and_page",
            "escalation_policy": str(policy.pk),
            "instructions": "Be brief.",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    flow = InboundFlow.objects.get(tenant=tenant, name="Front desk")
    assert response["Location"] == url("ah-flow", flow.pk)
    assert [
        (h.weekday, f"{h.opens:%H:%M}", f"{h.closes:%H:%M}") for h in BusinessHours.objects.filter(flow=flow)
    ] == [
        (0, "08:00", "12:00"),
        (0, "13:00", "17:00"),
        (4, "09:00", "15:00"),
    ]
    assert [h.name for h in Holiday.objects.filter(flow=flow)] == ["Christmas", "New year"]
    assert [(f.name, f.required) for f in IntakeField.objects.filter(flow=flow)] == [
        ("callback_number", True),
        ("problem", False),
    ]
    assert flow.escalation_policy == policy and flow.in_hours_action == "transfer"
    assert audited(tenant, "inbound_flow.create")


def test_bad_flow_entries_are_shown_beside_the_input_they_came_from(tenant, manager):
    base = {"name": "Front desk", "in_hours_action": "agent", "after_hours_action": "agent"}
    closing_first = manager.post(url("ah-flow-new"), {**base, "hours_2": "17:00-09:00"})
    assert closing_first.status_code == 400
    assert errors_beside(closing_first.content.decode(), "hours_2")
    not_a_range = manager.post(url("ah-flow-new"), {**base, "hours_1": "all day"})
    assert not_a_range.status_code == 400
    assert "not a range" in " ".join(errors_beside(not_a_range.content.decode(), "hours_1"))
    bad_intake = manager.post(url("ah-flow-new"), {**base, "intake_text": "Callback Number | x"})
    assert bad_intake.status_code == 400
    assert "not a field name" in " ".join(errors_beside(bad_intake.content.decode(), "intake_text"))
    bad_day = manager.post(url("ah-flow-new"), {**base, "holidays_text": "2026-13-45 Nope"})
    assert bad_day.status_code == 400
    assert errors_beside(bad_day.content.decode(), "holidays_text")
    transfer = manager.post(url("ah-flow-new"), {**base, "in_hours_action": "transfer"})
    assert transfer.status_code == 400
    assert "office number" in " ".join(errors_beside(transfer.content.decode(), "office_number"))
    assert not InboundFlow.objects.filter(tenant=tenant).exists()


def test_editing_a_flow_keeps_its_hours_and_saves_changes(tenant, manager, world):
    flow = world["flow"]
    form = manager.get(url("ah-flow-edit", flow.pk)).content.decode()
    assert 'value="09:00-17:00"' in form
    response = manager.post(
        url("ah-flow-edit", flow.pk),
        {
            "name": "Main line",
            "hours_0": "09:00-17:00",
            "hours_5": "10:00-14:00",
            "holidays_text": "2026-12-25 Christmas",
            "intake_text": "name | Name | required",
            "in_hours_action": "agent",
            "after_hours_action": "agent_and_page",
            "escalation_policy": str(world["policy"].pk),
            "transfer_timeout_s": "30",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert sorted(BusinessHours.objects.filter(flow=flow).values_list("weekday", flat=True)) == [0, 5]
    assert audited(tenant, "inbound_flow.update")


def test_a_number_is_routed_and_another_tenants_flow_is_refused(tenant, other_tenant, manager):
    mine = make_flow(tenant, name="Mine")
    theirs = make_flow(other_tenant, name="Theirs")
    refused = manager.post(url("ah-number-new"), {"number": "+12125557999", "flow": str(theirs.pk)})
    assert refused.status_code == 400
    assert "No such object in this tenant" in " ".join(errors_beside(refused.content.decode(), "flow"))
    assert not PhoneNumber.objects.exists()
    ok = manager.post(url("ah-number-new"), {"number": "+12125557999", "label": "Main", "flow": str(mine.pk)})
    assert ok.status_code == 302
    number = PhoneNumber.objects.get(tenant=tenant)
    assert number.flow == mine
    assert audited(tenant, "phone_number.create")
    duplicate = manager.post(url("ah-number-new"), {"number": "+12125557999"})
    assert duplicate.status_code == 400 and PhoneNumber.objects.count() == 1


def test_a_group_and_a_rotation_keep_their_members(tenant, manager):
    alice, bob, carol = (make_person(tenant, name=n) for n in ("Alice", "Bob", "Carol"))
    group = manager.post(
        url("ah-group-new"), {"name": "Plumbers", "members": [alice.pk, carol.pk], "members__present": "1"}
    )
    assert group.status_code == 302, group.content.decode()[:2000]
    assert {p.name for p in OnCallGroup.objects.get(name="Plumbers").members.all()} == {"Alice", "Carol"}
    rotation = manager.post(
        url("ah-rotation-new"),
        {
            "name": "Weekends",
            "handoff": "daily",
            "handoff_weekday": "0",
            "handoff_time": "08:00",
            "start_date": "2026-11-02",
            "timezone": "America/New_York",
            "members": [str(carol.pk), str(alice.pk), ""],
            "members__present": "1",
        },
    )
    assert rotation.status_code == 302, rotation.content.decode()[:2000]
    saved = Rotation.objects.get(name="Weekends")
    assert [m.person.name for m in saved.members.order_by("position")] == ["Carol", "Alice"]
    assert rotation["Location"] == url("ah-rotation", saved.pk)
    twice = manager.post(
        url("ah-rotation-new"),
        {
            "name": "Bad",
            "handoff": "daily",
            "handoff_time": "08:00",
            "start_date": "2026-11-02",
            "members": [str(bob.pk), str(bob.pk)],
            "members__present": "1",
        },
    )
    assert twice.status_code == 400
    assert "listed twice" in " ".join(errors_beside(twice.content.decode(), "members"))
    assert not Rotation.objects.filter(name="Bad").exists()
    assert audited(tenant, "oncall_group.create") and audited(tenant, "rotation.create")


def test_a_policy_is_written_from_its_step_rows(tenant, manager):
    alice = make_person(tenant, name="Alice")
    rotation = make_rotation(tenant, [alice], name="Techs")
    group = make_group(tenant, [alice])
    response = manager.post(
        url("ah-policy-new"),
        {
            "name": "Night",
            "step_0_target": f"person:{alice.pk}",
            "step_0_call": "on",
            "step_0_wait": "120",
            "step_1_target": f"rotation:{rotation.pk}",
            "step_1_call": "on",
            "step_1_sms": "on",
            "step_1_wait": "300",
            "step_2_target": "",
            "step_2_wait": "120",
            "step_3_target": f"group:{group.pk}",
            "step_3_sms": "on",
            "step_3_wait": "60",
            "repeat": "1",
            "fallback_people": [str(alice.pk)],
            "fallback_people__present": "1",
            "fallback_sms": "Nobody took {code}.",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    policy = EscalationPolicy.objects.get(tenant=tenant, name="Night")
    steps = list(policy.steps.order_by("position"))
    assert [(s.target_kind, s.notify_call, s.notify_sms, s.wait_s) for s in steps] == [
        ("person", True, False, 120),
        ("rotation", True, True, 300),
        ("group", False, True, 60),
    ]
    assert list(policy.fallback_people.all()) == [alice] and policy.repeat == 1
    assert audited(tenant, "escalation_policy.create")


def test_a_bad_policy_step_is_shown_on_its_row_and_nothing_is_saved(tenant, other_tenant, manager, settings):
    alice = make_person(tenant, name="Alice")
    stranger = make_person(other_tenant, name="Stranger")
    no_way = manager.post(
        url("ah-policy-new"),
        {
            "name": "Night",
            "step_0_target": f"person:{alice.pk}",
            "step_0_wait": "60",
            "step_1_target": f"person:{alice.pk}",
            "step_1_call": "on",
            "step_1_wait": "60",
        },
    )
    assert no_way.status_code == 400
    assert errors_beside(no_way.content.decode(), "step_0")  # neither call nor SMS
    foreign = manager.post(
        url("ah-policy-new"),
        {"name": "Night", "step_0_target": f"person:{stranger.pk}", "step_0_call": "on", "step_0_wait": "60"},
    )
    assert foreign.status_code == 400
    assert "No such object" in " ".join(errors_beside(foreign.content.decode(), "step_0"))
    none = manager.post(url("ah-policy-new"), {"name": "Night", "step_0_target": ""})
    assert none.status_code == 400
    assert errors_beside(none.content.decode(), "steps")
    assert not EscalationPolicy.objects.filter(tenant=tenant).exists()


def test_a_rotation_in_use_is_not_deleted_and_the_page_says_why(tenant, manager):
    alice = make_person(tenant, name="Alice")
    rotation = make_rotation(tenant, [alice], name="Techs")
    make_policy(tenant, name="Night", steps=[{"target_kind": "rotation", "rotation": rotation, "wait_s": 60}])
    response = manager.post(url("ah-rotation-delete", rotation.pk), follow=True)
    assert "used by escalation policy Night" in response.content.decode()
    assert Rotation.objects.filter(pk=rotation.pk).exists()
    assert not audited(tenant, "rotation.delete")
    person = make_person(tenant, name="Spare")
    assert manager.post(url("ah-person-delete", person.pk)).status_code == 302
    assert not OnCallPerson.objects.filter(pk=person.pk).exists()
    assert audited(tenant, "oncall_person.delete")


# --------------------------------------------------------------------------------- rotation calendar


def test_the_rotation_calendar_is_what_the_on_call_selector_says(tenant, manager):
    people = [make_person(tenant, name=n) for n in ("Ann", "Ben", "Cat")]
    rotation = make_rotation(
        tenant,
        people,
        name="Techs",
        handoff="daily",
        handoff_time=time(8, 0),
        timezone="America/Chicago",
        start_date=date(2026, 1, 1),
    )
    zone = ZoneInfo("America/Chicago")
    today = timezone.now().astimezone(zone).date()
    starts = datetime.combine(today + timedelta(days=3), time(0, 0), tzinfo=zone)
    rotation_override_create(
        rotation=rotation, person=people[0], starts_at=starts, ends_at=starts + timedelta(days=2)
    )
    html = manager.get(url("ah-rotation", rotation.pk)).content.decode()
    shown = dict(re.findall(r'<td data-day="([\d-]+)" data-person="(\d*)"', html))
    assert len(shown) == 28
    fresh = Rotation.objects.get(pk=rotation.pk)  # no prefetch: the selector reads the rows itself
    for offset in range(28):
        day = today + timedelta(days=offset)
        person = rotation_on_call_person(rotation=fresh, at=datetime.combine(day, time(8, 0), tzinfo=zone))
        assert person is not None
        assert shown[day.isoformat()] == str(person.pk), day
    # The override shows on its days.
    assert shown[(today + timedelta(days=3)).isoformat()] == str(people[0].pk)
    assert shown[(today + timedelta(days=4)).isoformat()] == str(people[0].pk)
    # The prefetched rows answer the same as the selector reading them, with no query per day.
    prefetched = setup_selectors.rotation_list(tenant=tenant).get(pk=rotation.pk)
    calendar = rotation_calendar(rotation=prefetched, start=today, days=28)
    assert [p.pk if p else None for _, _, p in calendar] == [
        int(shown[d.isoformat()]) for d, _, _ in calendar
    ]


def test_an_override_is_added_in_the_rotations_zone_and_removed(tenant, manager):
    ann, ben = make_person(tenant, name="Ann"), make_person(tenant, name="Ben")
    rotation = make_rotation(tenant, [ann], name="Techs", timezone="America/New_York")
    response = manager.post(
        url("ah-override-new", rotation.pk),
        {"person": str(ben.pk), "starts_at": "2026-12-24T18:00", "ends_at": "2026-12-26T08:00"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    override = RotationOverride.objects.get(rotation=rotation)
    assert override.person == ben
    assert override.starts_at == datetime(2026, 12, 24, 23, 0, tzinfo=ZoneInfo("UTC"))
    assert audited(tenant, "rotation_override.create")
    if override.ends_at > timezone.now():  # the page lists overrides now or ahead, in the rotation's zone
        assert "2026-12-24 18:00" in manager.get(url("ah-rotation", rotation.pk)).content.decode()
    backwards = manager.post(
        url("ah-override-new", rotation.pk),
        {"person": str(ben.pk), "starts_at": "2026-12-26T08:00", "ends_at": "2026-12-24T18:00"},
    )
    assert backwards.status_code == 400
    assert "after starts_at" in " ".join(errors_beside(backwards.content.decode(), "ends_at"))
    assert manager.post(url("ah-override-delete", override.pk)).status_code == 302
    assert not RotationOverride.objects.exists()
    assert audited(tenant, "rotation_override.delete")


# ---------------------------------------------------------------------------------------- incidents


def test_acknowledge_then_resolve_really_change_the_incident(tenant, manager, world):
    incident = world["incident"]
    assert incident.status == Incident.Status.OPEN
    escalate = manager.post(url("ah-incident-escalate", incident.pk))
    assert escalate.status_code == 302
    # The next step's timer is due now (it fires with the timers' sweep, as for the API's escalate).
    assert Timer.objects.get(key=incident_timer_key(incident.pk), state="pending").due_at <= timezone.now()
    assert audited(tenant, "incident.escalate")
    ack = manager.post(url("ah-incident-ack", incident.pk), {"person": str(world["bob"].pk)})
    assert ack.status_code == 302
    incident.refresh_from_db()
    assert incident.status == Incident.Status.ACKNOWLEDGED
    assert incident.acknowledged_by == world["bob"] and incident.ack_channel == "api"
    assert IncidentEvent.objects.filter(incident=incident, kind="acknowledged").exists()
    page = manager.get(ack["Location"]).content.decode()
    assert "acknowledged." in page and 'id="incident-ack"' not in page
    # Twice: refused, said beside the button.
    again = manager.post(url("ah-incident-ack", incident.pk), {})
    assert again.status_code == 400
    assert "cannot be acknowledged" in again.content.decode()
    resolve = manager.post(url("ah-incident-resolve", incident.pk), {"note": "Fixed the boiler"})
    assert resolve.status_code == 302
    incident.refresh_from_db()
    assert incident.status == Incident.Status.RESOLVED and incident.resolved_at is not None
    timeline_html = manager.get(url("ah-incident-timeline", incident.pk)).content.decode()
    assert "Resolved" in timeline_html and "Fixed the boiler" in timeline_html
    assert 'id="incident-status" data-status="resolved" hx-swap-oob="true"' in timeline_html
    assert audited(tenant, "incident.acknowledge") and audited(tenant, "incident.resolve")


def test_a_timeline_event_is_announced_to_the_live_pages(tenant, world, monkeypatch):
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(timeline, "live_notify", lambda **kw: sent.append(kw))
    incident = world["incident"]
    timeline.event_add(incident=incident, kind=IncidentEvent.Kind.NOTE, detail={"note": "x"})
    timeline.event_add(incident=incident.pk, kind=IncidentEvent.Kind.NOTE, detail={"note": "y"})
    assert [(s["tenant_id"], s["kind"], s["incident_id"]) for s in sent] == [
        (tenant.pk, "incident", incident.pk),
        (tenant.pk, "incident", incident.pk),
    ]


def test_incident_filters_use_the_apis_rules(tenant, manager, world):
    incident = world["incident"]
    assert incident.short_code in manager.get(url("ah-incidents") + "?status=open").content.decode()
    resolved = manager.get(url("ah-incidents") + "?status=resolved").content.decode()
    assert incident.short_code not in resolved and "No incident matches these filters." in resolved
    bad = manager.get(url("ah-incidents") + "?status=nope&caller=abc").content.decode()
    assert errors_beside(bad, "status") and errors_beside(bad, "caller")
    by_caller = manager.get(url("ah-incidents") + "?caller=%2B19175551212").content.decode()
    assert incident.short_code in by_caller


# ------------------------------------------------------------------------------ viewers and tenants


def test_a_viewer_sees_no_write_controls_and_a_forged_write_changes_nothing(tenant, viewer, world):
    incident = world["incident"]
    for page_url in (
        url("ah-numbers"),
        url("ah-flows"),
        url("ah-flow", world["flow"].pk),
        url("ah-people"),
        url("ah-groups"),
        url("ah-rotations"),
        url("ah-rotation", world["rotation"].pk),
        url("ah-policies"),
        url("ah-policy", world["policy"].pk),
        url("ah-incident", incident.pk),
    ):
        html = viewer.get(page_url).content.decode()
        assert 'action="/after-hours' not in html, page_url  # no form that writes
        assert not re.search(r'href="[^"]*/(new|edit)"', html), page_url
        assert 'id="incident-ack"' not in html and 'id="incident-resolve"' not in html
    forged = [
        (url("ah-person-new"), {"name": "Eve", "phone": "+12125550199"}),
        (url("ah-person-edit", world["alice"].pk), {"name": "Mallory", "phone": "+12125550199"}),
        (url("ah-person-delete", world["bob"].pk), {}),
        (url("ah-flow-delete", world["flow"].pk), {}),
        (url("ah-incident-ack", incident.pk), {}),
        (url("ah-incident-resolve", incident.pk), {}),
        (url("ah-incident-escalate", incident.pk), {}),
        (url("ah-override-new", world["rotation"].pk), {"person": world["alice"].pk}),
    ]
    for post_url, data in forged:
        assert viewer.post(post_url, data).status_code == 403, post_url
    incident.refresh_from_db()
    assert incident.status == Incident.Status.OPEN
    assert sorted(OnCallPerson.objects.filter(tenant=tenant).values_list("name", flat=True)) == [
        "Alice",
        "Bob <b>",
    ]
    assert InboundFlow.objects.filter(pk=world["flow"].pk).exists()
    assert not RotationOverride.objects.exists()
    assert not AuditEntry.objects.filter(tenant=tenant).exists()


def test_another_tenants_ids_are_not_found(tenant, other_tenant, manager):
    theirs = make_incident(other_tenant)
    flow = theirs.flow
    assert flow is not None
    their_number = flow.phone_numbers.first()
    assert their_number is not None
    person = make_person(other_tenant)
    rotation = make_rotation(other_tenant, [person])
    override = rotation_override_create(
        rotation=rotation,
        person=person,
        starts_at=timezone.now(),
        ends_at=timezone.now() + timedelta(hours=1),
    )
    gets = [
        url("ah-flow", flow.pk),
        url("ah-flow-edit", flow.pk),
        url("ah-number-edit", their_number.pk),
        url("ah-person-edit", person.pk),
        url("ah-group-edit", make_group(other_tenant).pk),
        url("ah-rotation", rotation.pk),
        url("ah-rotation-edit", rotation.pk),
        url("ah-policy", flow.escalation_policy_id),
        url("ah-policy-edit", flow.escalation_policy_id),
        url("ah-incident", theirs.pk),
        url("ah-incident-timeline", theirs.pk),
        url("ah-call", theirs.inbound_call_id),
    ]
    for page_url in gets:
        assert manager.get(page_url).status_code == 404, page_url
    posts = [
        url("ah-incident-ack", theirs.pk),
        url("ah-incident-resolve", theirs.pk),
        url("ah-person-delete", person.pk),
        url("ah-flow-delete", flow.pk),
        url("ah-override-new", rotation.pk),
        url("ah-override-delete", override.pk),
    ]
    for post_url in posts:
        assert manager.post(post_url, {}).status_code == 404, post_url
    theirs.refresh_from_db()
    assert theirs.status == Incident.Status.OPEN
    assert (
        OnCallPerson.objects.filter(pk=person.pk).exists()
        and RotationOverride.objects.filter(pk=override.pk).exists()
    )
    # Their rows never show in our lists.
    assert theirs.short_code not in manager.get(url("ah-incidents")).content.decode()


# ------------------------------------------------------------------------------------ query counts


def _fill(tenant: Tenant, n: int) -> None:
    people = [make_person(tenant) for _ in range(min(n, 5))]
    for i in range(n):
        make_rotation(tenant, people[: 1 + i % len(people)])
        make_group(tenant, people[:2])
    policy = make_policy(
        tenant,
        people[0],
        steps=[
            {"target_kind": "person", "person": people[0], "wait_s": 60},
            {
                "target_kind": "rotation",
                "rotation": Rotation.objects.filter(tenant=tenant).first(),
                "wait_s": 60,
            },
            {
                "target_kind": "group",
                "group": OnCallGroup.objects.filter(tenant=tenant).first(),
                "wait_s": 60,
            },
        ],
    )
    for _ in range(n):
        make_person(tenant)
        make_policy(tenant, people[0], fallback_people=people[:2])
        flow = make_flow(tenant, escalation_policy=policy, holidays=[{"date": "2026-12-25"}])
        make_number(tenant, flow)
        make_call(tenant, flow, "+12125558111")
    for _ in range(min(n, 12)):  # incidents are slow to open: enough for several rows per page
        make_incident(tenant, flow=flow, policy=policy, person=people[0])


LIST_URLS = [
    "after-hours",
    "ah-numbers",
    "ah-flows",
    "ah-people",
    "ah-groups",
    "ah-rotations",
    "ah-policies",
    "ah-incidents",
    "ah-calls",
]


@pytest.mark.parametrize("n", [3, 40])
def test_list_pages_read_in_a_handful_of_queries_however_long_the_list(
    tenant, manager, django_assert_max_num_queries, n
):
    _fill(tenant, n)
    for name in LIST_URLS:
        with django_assert_max_num_queries(14):
            assert manager.get(url(name)).status_code == 200, name


@pytest.mark.parametrize("n", [2, 20])
def test_detail_pages_read_in_a_handful_of_queries(tenant, manager, django_assert_max_num_queries, n):
    people = [make_person(tenant) for _ in range(n)]
    rotation = make_rotation(tenant, people)
    for i in range(n):
        start = timezone.now() + timedelta(days=i)
        rotation_override_create(
            rotation=rotation, person=people[i], starts_at=start, ends_at=start + timedelta(hours=5)
        )
    incident = make_incident(tenant, person=people[0])
    for _ in range(n):
        timeline.event_add(
            incident=incident, kind=IncidentEvent.Kind.NOTE, person=people[1], detail={"note": "n"}
        )
    for page_url in (
        url("ah-rotation", rotation.pk),
        url("ah-incident", incident.pk),
        url("ah-flow", incident.flow_id),
    ):
        with django_assert_max_num_queries(16):
            assert manager.get(page_url).status_code == 200, page_url
