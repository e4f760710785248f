"""Portal pages: After hours. Numbers and the inbound flows they route to (business hours, holidays, intake
fields, in-hours and after-hours handling), on-call people, groups, rotations (with a calendar of who is on
call each day), rotation overrides, escalation policies, incidents (with their live timeline and the
acknowledge / resolve buttons) and inbound calls.

What the pages show comes from ``flows.setup_selectors`` / ``flows.selectors`` (who is on call is always
``flows.selectors.rotation_on_call_person``); every write is validated by the flows API's input serializer
(``portal.forms.bind``) and made by the service the API view calls (flows/api/views.py), then audited. A
form's nested lists (a flow's hours, holidays and intake fields; a policy's steps; a rotation's members in
turn order) are plain inputs turned into the API's lists here, and the API's errors about an entry of a list
are shown beside the input it came from.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST
from rest_framework import serializers

from campaigns.phone import normalize_phone_number
from flows import setup_selectors as sel
from flows.api import serializers as s
from flows.models import (
    WEEKDAY_CHOICES,
    EscalationPolicy,
    EscalationStep,
    InboundCall,
    InboundFlow,
    Incident,
    PhoneNumber,
    Rotation,
    RotationOverride,
)
from flows.selectors import (
    flow_is_open,
    flow_next_opening,
    flow_timezone,
    rotation_calendar,
    rotation_on_call_person,
)
from flows.services.incident_actions import (
    incident_acknowledge_by_api,
    incident_escalate_by_api,
    incident_resolve_by_api,
)
from flows.services.setup import (
    inbound_flow_create,
    inbound_flow_delete,
    inbound_flow_update,
    phone_number_create,
    phone_number_delete,
    phone_number_update,
)
from flows.services.setup_oncall import (
    escalation_policy_create,
    escalation_policy_delete,
    escalation_policy_update,
    oncall_group_create,
    oncall_group_delete,
    oncall_group_update,
    oncall_person_create,
    oncall_person_delete,
    oncall_person_update,
    rotation_create,
    rotation_delete,
    rotation_override_create,
    rotation_override_delete,
    rotation_update,
)
from orchestrator.errors import InvalidInput
from portal.access import PortalContext, PortalRequest, portal_audit, portal_view
from portal.forms import FORM_ERRORS, Bound, bind, bind_query, initial
from portal.pagination import paginate
from tenants.models import Tenant

#: How many days the rotation calendar shows (from today, local to the rotation).
CALENDAR_DAYS = 28
#: How many rows the overview shows of each list (the full lists are on their own pages).
OVERVIEW_ROWS = 10
#: Blank rows offered after a policy's steps and a rotation's members.
BLANK_ROWS = 2


def _portal(request: HttpRequest) -> PortalContext:
    return cast("PortalRequest", request).portal


def _tenant(request: HttpRequest) -> Tenant:
    return _portal(request).tenant


def _who(request: HttpRequest) -> str:
    return _portal(request).user.get_username()


# ------------------------------------------------------------------------------------------ overview


@portal_view()
def index(request: HttpRequest) -> HttpResponse:
    tenant = _tenant(request)
    numbers = sel.phone_number_list(tenant=tenant)
    return render(
        request,
        "portal/after_hours/index.html",
        {
            "numbers": list(numbers[:OVERVIEW_ROWS]),
            "numbers_count": numbers.count(),
            "on_call": sel.on_call_now(tenant=tenant, at=timezone.now()),
            **_open_incidents(tenant),
        },
    )


def _open_incidents(tenant: Tenant) -> dict[str, Any]:
    incidents = sel.incident_unresolved_list(tenant=tenant)
    return {"incidents": list(incidents[:OVERVIEW_ROWS]), "incidents_count": incidents.count()}


@portal_view()
def open_incidents(request: HttpRequest) -> HttpResponse:
    """The overview's open incidents (re-read on ``sse:incidents``)."""
    return render(request, "portal/after_hours/_open_incidents.html", _open_incidents(_tenant(request)))


# ------------------------------------------------------------------------------- create / edit / delete


@dataclass(frozen=True)
class Kind:
    """One kind of row a tenant sets up, and how the portal writes it (as the API does)."""

    name: str  # audit prefix and URL stem, e.g. "phone_number"
    label: str  # "phone number"
    title: str  # "Phone number"
    list_url: str
    selector: Callable[..., QuerySet[Any]]
    serializer: type[serializers.Serializer[Any]]
    create: Callable[[Tenant, dict[str, Any]], Model]
    update: Callable[[Any, dict[str, Any]], Model]
    delete: Callable[[Any], None]
    initial: Callable[[Any], dict[str, Any]]
    context: Callable[[HttpRequest, Any, Bound], dict[str, Any]]
    nested: Callable[
        [QueryDict, Tenant, Any], tuple[dict[str, Any], dict[str, list[str]], Callable[..., Any]]
    ]
    detail_url: str = ""

    @property
    def short(self) -> str:
        """The URL names' stem: ``ah-<short>-new``, ``-edit``, ``-delete``."""
        return self.name.split("_")[-1]

    @property
    def template(self) -> str:
        return f"portal/after_hours/{self.name}_form.html"

    def done_url(self, obj: Model) -> str:
        return reverse(self.detail_url, args=[obj.pk]) if self.detail_url else reverse(self.list_url)


def _no_nested(post: QueryDict, tenant: Tenant, obj: Any) -> tuple[dict[str, Any], dict[str, list[str]], Any]:
    return {}, {}, lambda errors: errors


def _form(request: HttpRequest, kind: Kind, obj: Any, bound: Bound, status: int = 200) -> HttpResponse:
    context = {
        "kind": kind,
        "obj": obj,
        "form": bound,
        "delete_url": reverse(f"portal:ah-{kind.short}-delete", args=[obj.pk]) if obj else "",
        "cancel_url": kind.done_url(obj) if obj else reverse(kind.list_url),
        **kind.context(request, obj, bound),
    }
    return render(request, kind.template, context, status=status)


def _save(request: HttpRequest, kind: Kind, obj: Any) -> HttpResponse:
    """Validate the POST with the API's serializer, write through the service, audit; else 400 with the
    errors beside the fields and nothing saved."""
    tenant = _tenant(request)
    extra, parse_errors, remap = kind.nested(request.POST, tenant, obj)
    bound = bind(kind.serializer, request.POST, context={"tenant": tenant}, extra=extra)
    for name, errors in parse_errors.items():
        bound.errors.setdefault(name, []).extend(errors)
    if bound.ok:
        try:
            saved = (
                kind.create(tenant, dict(bound.data)) if obj is None else kind.update(obj, dict(bound.data))
            )
        except InvalidInput as exc:
            bound.add_invalid(exc)
        else:
            action = "create" if obj is None else "update"
            portal_audit(request, f"{kind.name}.{action}", f"{kind.label} {saved.pk} ({saved})")
            messages.success(request, f"{kind.title} {'created' if obj is None else 'saved'}.")
            return redirect(kind.done_url(saved))
    bound.errors = _unplaced_to_form(remap(bound.errors), kind)
    return _form(request, kind, obj, bound, status=400)


#: Form inputs that are not the serializer's own fields (where list entries' errors are shown).
_OWN_INPUTS = re.compile(r"^(step_\d+|hours_\d|holidays_text|intake_text|steps|business_hours)$")


def _unplaced_to_form(errors: dict[str, list[str]], kind: Kind) -> dict[str, list[str]]:
    """An error on a name the form has no input for is shown at the top of the form, naming it."""
    inputs = {name for name, fld in kind.serializer().fields.items() if not fld.read_only}
    out: dict[str, list[str]] = {}
    for key, messages_ in errors.items():
        if key == FORM_ERRORS or key in inputs or _OWN_INPUTS.match(key):
            out.setdefault(key, []).extend(messages_)
        else:
            out.setdefault(FORM_ERRORS, []).extend(f"{key}: {m}" for m in messages_)
    return out


def _create_view(kind: Kind) -> Callable[[HttpRequest], HttpResponse]:
    @portal_view()
    def view(request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            return _save(request, kind, None)
        return _form(request, kind, None, initial(kind.initial(None)))

    view.__name__ = f"{kind.name}_new"
    return view


def _edit_view(kind: Kind) -> Callable[[HttpRequest, int], HttpResponse]:
    @portal_view()
    def view(request: HttpRequest, pk: int) -> HttpResponse:
        obj = get_object_or_404(kind.selector(tenant=_tenant(request)), pk=pk)
        if request.method == "POST":
            return _save(request, kind, obj)
        return _form(request, kind, obj, initial(kind.initial(obj)))

    view.__name__ = f"{kind.name}_edit"
    return view


def _delete_view(kind: Kind) -> Callable[[HttpRequest, int], HttpResponse]:
    @require_POST
    @portal_view()
    def view(request: HttpRequest, pk: int) -> HttpResponse:
        obj = get_object_or_404(kind.selector(tenant=_tenant(request)), pk=pk)
        target = f"{kind.label} {obj.pk} ({obj})"
        try:
            kind.delete(obj)
        except InvalidInput as exc:
            messages.error(request, f"The {kind.label} was not deleted: {exc.message}.")
            return redirect(kind.done_url(obj))
        portal_audit(request, f"{kind.name}.delete", target)
        messages.success(request, f"{kind.title} deleted.")
        return redirect(reverse(kind.list_url))

    view.__name__ = f"{kind.name}_delete"
    return view


def _choices(queryset: QuerySet[Any]) -> list[tuple[int, str]]:
    return [(row.pk, str(row)) for row in queryset]


def _plain(queryset: QuerySet[Any]) -> QuerySet[Any]:
    """A selector's rows without its prefetches (for a select's options)."""
    return queryset.prefetch_related(None)


_ENTRY = re.compile(r"^\[(\d+)\]\.?\s*(.*)$", re.DOTALL)


def _remapper(
    name: str, targets: list[str], fallback: str
) -> Callable[[dict[str, list[str]]], dict[str, list[str]]]:
    """Errors of the API's list ``name`` (``name.3.closes`` from the serializer, or ``name`` with a message
    ``[3].closes: ...`` from the service) put on the form input entry 3 came from (``targets[3]``)."""

    def target(index: int) -> str:
        return targets[index] if 0 <= index < len(targets) else fallback

    def remap(errors: dict[str, list[str]]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for key, messages_ in errors.items():
            if key != name and not key.startswith(f"{name}."):
                out.setdefault(key, []).extend(messages_)
                continue
            parts = key.split(".")
            if len(parts) > 1 and parts[1].isdigit():
                detail = ".".join(parts[2:])
                out.setdefault(target(int(parts[1])), []).extend(
                    f"{detail}: {m}" if detail else m for m in messages_
                )
                continue
            for message in messages_:
                match = _ENTRY.match(message)
                if match:
                    out.setdefault(target(int(match[1])), []).append(match[2])
                else:
                    out.setdefault(fallback, []).append(message)
        return out

    return remap


def _chain(*remaps: Callable[[dict[str, list[str]]], dict[str, list[str]]]) -> Callable[..., Any]:
    def remap(errors: dict[str, list[str]]) -> dict[str, list[str]]:
        for one in remaps:
            errors = one(errors)
        return errors

    return remap


def _selected(bound: Bound, name: str, current: list[str]) -> list[str]:
    """The ids chosen in a repeated input (the POST's when submitted, else the object's)."""
    if not bound.submitted:
        return current
    value = bound.values.get(name)
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value]) if str(v).strip()]


# ------------------------------------------------------------------------------------- phone numbers


def _number_context(request: HttpRequest, obj: PhoneNumber | None, bound: Bound) -> dict[str, Any]:
    return {"flow_choices": _choices(_plain(sel.inbound_flow_list(tenant=_tenant(request))))}


NUMBER = Kind(
    name="phone_number",
    label="phone number",
    title="Phone number",
    list_url="portal:ah-numbers",
    selector=sel.phone_number_list,
    serializer=s.PhoneNumberInputSerializer,
    create=lambda tenant, data: phone_number_create(tenant=tenant, **data),
    update=lambda obj, data: phone_number_update(phone_number=obj, **data),
    delete=lambda obj: phone_number_delete(phone_number=obj),
    initial=lambda obj: {"number": obj.number, "label": obj.label, "flow": obj.flow_id} if obj else {},
    context=_number_context,
    nested=_no_nested,
)


@portal_view()
def numbers(request: HttpRequest) -> HttpResponse:
    page = paginate(request, sel.phone_number_list(tenant=_tenant(request)))
    return render(request, "portal/after_hours/numbers.html", {"page": page})


# ------------------------------------------------------------------------------------- inbound flows

_HOURS = re.compile(r"^(\d{1,2}:\d{2})\s*[-–]\s*(\d{1,2}:\d{2})$")


def _hours_text(ranges: list[tuple[Any, Any]]) -> str:
    return ", ".join(f"{opens:%H:%M}-{closes:%H:%M}" for opens, closes in ranges)


def _flow_initial(flow: InboundFlow | None) -> dict[str, Any]:
    if flow is None:
        return {
            "enabled": True,
            "in_hours_action": InboundFlow.InHoursAction.AGENT,
            "after_hours_action": InboundFlow.AfterHoursAction.AGENT_AND_PAGE,
            "transfer_timeout_s": 30,
            "urgent_reply": InboundFlow._meta.get_field("urgent_reply").default,
            "caller_ack_sms": InboundFlow._meta.get_field("caller_ack_sms").default,
            "taken_sms": InboundFlow._meta.get_field("taken_sms").default,
        }
    values: dict[str, Any] = {
        name: getattr(flow, name)
        for name in (
            "name",
            "instructions",
            "greeting",
            "voice",
            "timezone",
            "in_hours_action",
            "office_number",
            "transfer_timeout_s",
            "after_hours_action",
            "business_name",
            "refusal_message",
            "urgent_reply",
            "caller_ack_sms",
            "taken_sms",
            "enabled",
        )
    }
    values["agent"] = flow.agent_id
    values["escalation_policy"] = flow.escalation_policy_id
    by_day: dict[int, list[tuple[Any, Any]]] = {}
    for hours in flow.business_hours.all():
        by_day.setdefault(hours.weekday, []).append((hours.opens, hours.closes))
    for day, ranges in by_day.items():
        values[f"hours_{day}"] = _hours_text(sorted(ranges))
    values["holidays_text"] = "\n".join(f"{h.date:%Y-%m-%d} {h.name}".strip() for h in flow.holidays.all())
    values["intake_text"] = "\n".join(
        f"{f.name} | {f.label}{' | required' if f.required else ''}" for f in flow.intake_fields.all()
    )
    return values


def _flow_nested(
    post: QueryDict, tenant: Tenant, obj: InboundFlow | None
) -> tuple[dict[str, Any], dict[str, list[str]], Callable[..., Any]]:
    """The form's hours per weekday ("09:00-12:00, 13:00-17:00"), holidays (a line each: "2026-12-25
    Christmas") and intake fields (a line each: "name | Label | required") as the API's lists."""
    errors: dict[str, list[str]] = {}
    hours: list[dict[str, Any]] = []
    hours_from: list[str] = []
    for day in range(7):
        text = post.get(f"hours_{day}", "").strip()
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = _HOURS.match(part)
            if not match:
                errors.setdefault(f"hours_{day}", []).append(
                    f"{part!r} is not a range of hours like 09:00-17:00"
                )
                continue
            hours.append({"weekday": day, "opens": match[1], "closes": match[2]})
            hours_from.append(f"hours_{day}")
    holidays: list[dict[str, Any]] = []
    for line in filter(None, (line.strip() for line in post.get("holidays_text", "").splitlines())):
        when, _, name = line.partition(" ")
        holidays.append({"date": when, "name": name.strip()})
    intake: list[dict[str, Any]] = []
    for line in filter(None, (line.strip() for line in post.get("intake_text", "").splitlines())):
        parts = [p.strip() for p in line.split("|")]
        flag = parts[2].lower() if len(parts) > 2 else ""
        if flag not in ("", "required", "optional"):
            errors.setdefault("intake_text", []).append(
                f"{line!r}: the third part is 'required' or 'optional'"
            )
        intake.append(
            {"name": parts[0], "label": parts[1] if len(parts) > 1 else "", "required": flag == "required"}
        )
    extra = {"business_hours": hours, "holidays": holidays, "intake_fields": intake}
    remap = _chain(
        _remapper("business_hours", hours_from, "business_hours"),
        _remapper("holidays", ["holidays_text" for _ in holidays], "holidays_text"),
        _remapper("intake_fields", ["intake_text" for _ in intake], "intake_text"),
    )
    return extra, errors, remap


def _flow_context(request: HttpRequest, obj: InboundFlow | None, bound: Bound) -> dict[str, Any]:
    tenant = _tenant(request)
    return {
        "weekdays": [(day, name, f"hours_{day}") for day, name in WEEKDAY_CHOICES],
        "agent_choices": _choices(sel.agent_profile_list(tenant=tenant)),
        "policy_choices": _choices(_plain(sel.escalation_policy_list(tenant=tenant))),
        "in_hours_choices": InboundFlow.InHoursAction.choices,
        "after_hours_choices": InboundFlow.AfterHoursAction.choices,
    }


FLOW = Kind(
    name="inbound_flow",
    label="inbound flow",
    title="Inbound flow",
    list_url="portal:ah-flows",
    detail_url="portal:ah-flow",
    selector=sel.inbound_flow_list,
    serializer=s.InboundFlowInputSerializer,
    create=lambda tenant, data: inbound_flow_create(tenant=tenant, **data),
    update=lambda obj, data: inbound_flow_update(flow=obj, **data),
    delete=lambda obj: inbound_flow_delete(flow=obj),
    initial=_flow_initial,
    context=_flow_context,
    nested=_flow_nested,
)


@portal_view()
def flows(request: HttpRequest) -> HttpResponse:
    queryset = sel.inbound_flow_list(tenant=_tenant(request)).select_related("agent", "escalation_policy")
    return render(request, "portal/after_hours/flows.html", {"page": paginate(request, queryset)})


@portal_view()
def flow(request: HttpRequest, pk: int) -> HttpResponse:
    tenant = _tenant(request)
    queryset = sel.inbound_flow_list(tenant=tenant).select_related("agent", "escalation_policy")
    obj: InboundFlow = get_object_or_404(queryset, pk=pk)
    now = timezone.now()
    by_day: dict[int, list[Any]] = {day: [] for day, _ in WEEKDAY_CHOICES}
    for hours in obj.business_hours.all():
        by_day[hours.weekday].append(hours)
    return render(
        request,
        "portal/after_hours/flow.html",
        {
            "flow": obj,
            "timezone_name": flow_timezone(flow=obj),
            "open_now": flow_is_open(flow=obj, at=now),
            "next_opening": flow_next_opening(flow=obj, after=now),
            "week": [(name, by_day[day]) for day, name in WEEKDAY_CHOICES],
            "calls": list(sel.inbound_call_search(tenant=tenant, flow_id=obj.pk)[:OVERVIEW_ROWS]),
        },
    )


# ------------------------------------------------------------------------------------------- people


PERSON = Kind(
    name="oncall_person",
    label="on-call person",
    title="On-call person",
    list_url="portal:ah-people",
    selector=sel.oncall_person_list,
    serializer=s.OnCallPersonInputSerializer,
    create=lambda tenant, data: oncall_person_create(tenant=tenant, **data),
    update=lambda obj, data: oncall_person_update(person=obj, **data),
    delete=lambda obj: oncall_person_delete(person=obj),
    initial=lambda obj: (
        {f: getattr(obj, f) for f in ("name", "phone", "sms_number", "timezone", "active")}
        if obj
        else {"active": True}
    ),
    context=lambda request, obj, bound: {},
    nested=_no_nested,
)


@portal_view()
def people(request: HttpRequest) -> HttpResponse:
    page = paginate(request, sel.oncall_person_list(tenant=_tenant(request)))
    return render(request, "portal/after_hours/people.html", {"page": page})


# ------------------------------------------------------------------------------------------- groups


def _people_context(request: HttpRequest, name: str, current: list[str], bound: Bound) -> dict[str, Any]:
    chosen = set(_selected(bound, name, current))
    return {
        "people_choices": [
            (str(p.pk), p.name, str(p.pk) in chosen, p.active)
            for p in sel.oncall_person_list(tenant=_tenant(request))
        ]
    }


GROUP = Kind(
    name="oncall_group",
    label="group",
    title="Group",
    list_url="portal:ah-groups",
    selector=sel.oncall_group_list,
    serializer=s.OnCallGroupInputSerializer,
    create=lambda tenant, data: oncall_group_create(tenant=tenant, **data),
    update=lambda obj, data: oncall_group_update(group=obj, **data),
    delete=lambda obj: oncall_group_delete(group=obj),
    initial=lambda obj: {"name": obj.name} if obj else {},
    context=lambda request, obj, bound: _people_context(
        request, "members", [str(p.pk) for p in obj.members.all()] if obj else [], bound
    ),
    nested=_no_nested,
)


@portal_view()
def groups(request: HttpRequest) -> HttpResponse:
    page = paginate(request, sel.oncall_group_list(tenant=_tenant(request)))
    return render(request, "portal/after_hours/groups.html", {"page": page})


# ---------------------------------------------------------------------------------------- rotations


def _rotation_initial(obj: Rotation | None) -> dict[str, Any]:
    if obj is None:
        return {"handoff": Rotation.Handoff.WEEKLY, "handoff_weekday": 0, "handoff_time": "09:00"}
    return {
        "name": obj.name,
        "handoff": obj.handoff,
        "handoff_weekday": obj.handoff_weekday,
        "handoff_time": f"{obj.handoff_time:%H:%M}",
        "start_date": f"{obj.start_date:%Y-%m-%d}",
        "timezone": obj.timezone,
    }


def _rotation_context(request: HttpRequest, obj: Rotation | None, bound: Bound) -> dict[str, Any]:
    current = [str(m.person_id) for m in obj.members.all()] if obj else []
    chosen = _selected(bound, "members", current)
    rows = [*chosen, *([""] * max(BLANK_ROWS, 3 - len(chosen)))]
    return {
        "member_rows": rows,
        "people": _choices(sel.oncall_person_list(tenant=_tenant(request))),
        "handoff_choices": Rotation.Handoff.choices,
        "weekday_choices": WEEKDAY_CHOICES,
    }


ROTATION = Kind(
    name="rotation",
    label="rotation",
    title="Rotation",
    list_url="portal:ah-rotations",
    detail_url="portal:ah-rotation",
    selector=sel.rotation_list,
    serializer=s.RotationInputSerializer,
    create=lambda tenant, data: rotation_create(tenant=tenant, **data),
    update=lambda obj, data: rotation_update(rotation=obj, **data),
    delete=lambda obj: rotation_delete(rotation=obj),
    initial=_rotation_initial,
    context=_rotation_context,
    nested=_no_nested,
)


@portal_view()
def rotations(request: HttpRequest) -> HttpResponse:
    page = paginate(request, sel.rotation_list(tenant=_tenant(request)))
    now = timezone.now()
    rows = [(rotation, rotation_on_call_person(rotation=rotation, at=now)) for rotation in page]
    return render(request, "portal/after_hours/rotations.html", {"page": page, "rows": rows})


@portal_view()
def rotation(request: HttpRequest, pk: int) -> HttpResponse:
    obj: Rotation = get_object_or_404(sel.rotation_list(tenant=_tenant(request)), pk=pk)
    return _rotation_page(request, obj, override_form=initial({}))


def _rotation_page(
    request: HttpRequest, obj: Rotation, *, override_form: Bound, status: int = 200
) -> HttpResponse:
    zone = ZoneInfo(obj.timezone)
    today = timezone.now().astimezone(zone).date()
    calendar = rotation_calendar(rotation=obj, start=today, days=CALENDAR_DAYS)
    # Weeks of the calendar, Monday first: blank cells before today.
    cells: list[Any] = [None] * today.weekday() + list(calendar)
    weeks = [cells[i : i + 7] for i in range(0, len(cells), 7)]
    weeks[-1] += [None] * (7 - len(weeks[-1]))
    now = timezone.now()
    return render(
        request,
        "portal/after_hours/rotation.html",
        {
            "rotation": obj,
            "members": list(obj.members.all()),
            "weeks": weeks,
            "weekday_names": [name[:3] for _, name in WEEKDAY_CHOICES],
            "overrides": [o for o in obj.overrides.all() if o.ends_at > now],
            "people": _choices(sel.oncall_person_list(tenant=_tenant(request))),
            "override_form": override_form,
        },
        status=status,
    )


def _aware(text: str, zone: ZoneInfo) -> str:
    """A ``datetime-local`` value in the rotation's zone, as the ISO text with its offset the API takes."""
    value = parse_datetime(text.strip()) if text else None
    if value is None:
        return text
    if timezone.is_naive(value):
        value = value.replace(tzinfo=zone)
    return value.isoformat()


@require_POST
@portal_view()
def override_new(request: HttpRequest, pk: int) -> HttpResponse:
    obj: Rotation = get_object_or_404(sel.rotation_list(tenant=_tenant(request)), pk=pk)
    zone = ZoneInfo(obj.timezone)
    extra: dict[str, Any] = {"rotation": obj.pk}
    for name in ("starts_at", "ends_at"):
        if request.POST.get(name, "").strip():
            extra[name] = _aware(request.POST[name], zone)
    bound = bind(
        s.RotationOverrideInputSerializer, request.POST, context={"tenant": _tenant(request)}, extra=extra
    )
    if bound.ok:
        try:
            override = rotation_override_create(**bound.data)
        except InvalidInput as exc:
            bound.add_invalid(exc)
        else:
            portal_audit(
                request,
                "rotation_override.create",
                f"rotation {obj.pk} ({obj.name})",
                person=override.person.name,
                starts_at=override.starts_at.isoformat(),
                ends_at=override.ends_at.isoformat(),
            )
            messages.success(request, f"{override.person.name} is on call for {obj.name} in that time.")
            return redirect(reverse("portal:ah-rotation", args=[obj.pk]))
    bound.errors = {
        key if key in ("person", "starts_at", "ends_at") else FORM_ERRORS: (
            msgs if key in ("person", "starts_at", "ends_at", FORM_ERRORS) else [f"{key}: {m}" for m in msgs]
        )
        for key, msgs in bound.errors.items()
    }
    return _rotation_page(request, obj, override_form=bound, status=400)


@require_POST
@portal_view()
def override_delete(request: HttpRequest, pk: int) -> HttpResponse:
    override: RotationOverride = get_object_or_404(sel.rotation_override_list(tenant=_tenant(request)), pk=pk)
    rotation_id, target = override.rotation_id, f"rotation {override.rotation_id} ({override.rotation.name})"
    rotation_override_delete(override=override)
    portal_audit(request, "rotation_override.delete", target, override=pk)
    messages.success(request, "Override removed.")
    return redirect(reverse("portal:ah-rotation", args=[rotation_id]))


# ----------------------------------------------------------------------------------------- policies

_STEP_KINDS = tuple(kind.value for kind in EscalationStep.TargetKind)


def _policy_initial(obj: EscalationPolicy | None) -> dict[str, Any]:
    if obj is None:
        return {"repeat": 0, "fallback_sms": EscalationPolicy._meta.get_field("fallback_sms").default}
    return {
        "name": obj.name,
        "repeat": obj.repeat,
        "fallback_sms": obj.fallback_sms,
        "fallback_callback": obj.fallback_callback,
    }


def _step_rows(post: QueryDict) -> list[int]:
    return sorted({int(m[1]) for key in post if (m := re.match(r"^step_(\d+)_target$", key)) is not None})


def _policy_nested(
    post: QueryDict, tenant: Tenant, obj: EscalationPolicy | None
) -> tuple[dict[str, Any], dict[str, list[str]], Callable[..., Any]]:
    """The form's step rows (``step_<n>_target`` = ``person:<id>``, ``rotation:<id>`` or ``group:<id>``;
    ``_call``, ``_sms``, ``_wait``) as the API's ``steps`` list; rows without a target are left out."""
    errors: dict[str, list[str]] = {}
    steps: list[dict[str, Any]] = []
    step_from: list[str] = []
    for row in _step_rows(post):
        target = post.get(f"step_{row}_target", "").strip()
        if not target:
            continue
        kind, _, ident = target.partition(":")
        if kind not in _STEP_KINDS or not ident.isdigit():
            errors.setdefault(f"step_{row}", []).append("Choose whom the step notifies.")
            continue
        step: dict[str, Any] = {
            "target_kind": kind,
            kind: int(ident),
            "notify_call": f"step_{row}_call" in post,
            "notify_sms": f"step_{row}_sms" in post,
        }
        wait = post.get(f"step_{row}_wait", "").strip()
        if wait:
            try:
                step["wait_s"] = int(wait)
            except ValueError:
                errors.setdefault(f"step_{row}", []).append("wait_s: A whole number is required.")
        steps.append(step)
        step_from.append(f"step_{row}")
    return {"steps": steps}, errors, _remapper("steps", step_from, "steps")


def _policy_context(request: HttpRequest, obj: EscalationPolicy | None, bound: Bound) -> dict[str, Any]:
    tenant = _tenant(request)
    people = list(sel.oncall_person_list(tenant=tenant))
    targets = [
        ("People", [(f"person:{p.pk}", p.name) for p in people]),
        (
            "Rotations (whoever is on call)",
            [(f"rotation:{r.pk}", r.name) for r in _plain(sel.rotation_list(tenant=tenant))],
        ),
        (
            "Groups (everyone)",
            [(f"group:{g.pk}", g.name) for g in _plain(sel.oncall_group_list(tenant=tenant))],
        ),
    ]
    rows: list[dict[str, Any]] = []
    if bound.submitted:
        post = request.POST
        for row in _step_rows(post):
            rows.append(
                {
                    "n": row,
                    "target": post.get(f"step_{row}_target", ""),
                    "call": f"step_{row}_call" in post,
                    "sms": f"step_{row}_sms" in post,
                    "wait": post.get(f"step_{row}_wait", ""),
                }
            )
    elif obj is not None:
        for step in obj.steps.all():
            ident = step.person_id or step.rotation_id or step.group_id
            rows.append(
                {
                    "target": f"{step.target_kind}:{ident}",
                    "call": step.notify_call,
                    "sms": step.notify_sms,
                    "wait": step.wait_s,
                }
            )
    if not bound.submitted:
        blank = {"target": "", "call": True, "sms": True, "wait": 120}
        rows += [dict(blank) for _ in range(max(BLANK_ROWS, 3 - len(rows)))]
        for index, values in enumerate(rows):
            values["n"] = index
    for values in rows:
        values["field"] = f"step_{values['n']}"
        values["errors"] = bound.errors.get(values["field"], [])
    current = [str(p.pk) for p in obj.fallback_people.all()] if obj else []
    chosen = set(_selected(bound, "fallback_people", current))
    return {
        "step_rows": rows,
        "targets": targets,
        "people_choices": [(str(p.pk), p.name, str(p.pk) in chosen, p.active) for p in people],
    }


POLICY = Kind(
    name="escalation_policy",
    label="escalation policy",
    title="Escalation policy",
    list_url="portal:ah-policies",
    detail_url="portal:ah-policy",
    selector=sel.escalation_policy_list,
    serializer=s.EscalationPolicyInputSerializer,
    create=lambda tenant, data: escalation_policy_create(tenant=tenant, **data),
    update=lambda obj, data: escalation_policy_update(policy=obj, **data),
    delete=lambda obj: escalation_policy_delete(policy=obj),
    initial=_policy_initial,
    context=_policy_context,
    nested=_policy_nested,
)


@portal_view()
def policies(request: HttpRequest) -> HttpResponse:
    page = paginate(request, sel.escalation_policy_list(tenant=_tenant(request)))
    return render(request, "portal/after_hours/policies.html", {"page": page})


@portal_view()
def policy(request: HttpRequest, pk: int) -> HttpResponse:
    obj = get_object_or_404(
        sel.escalation_policy_list(tenant=_tenant(request)).prefetch_related("flows"), pk=pk
    )
    return render(request, "portal/after_hours/policy.html", {"policy": obj})


# ---------------------------------------------------------------------------------------- incidents


def _filters(
    request: HttpRequest, serializer_class: type[serializers.Serializer[Any]], phone_fields: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The list's filters from the query string, checked by the API's filter serializer (a bad one is
    named and left out)."""
    data, errors = bind_query(serializer_class, {k: str(v) for k, v in request.GET.items() if k != "page"})
    for name in phone_fields:
        if data.get(name):
            try:
                data[name] = normalize_phone_number(data[name], field=name)
            except InvalidInput as exc:
                errors[name] = [exc.message]
                data.pop(name)
    return data, errors


@portal_view()
def incidents(request: HttpRequest) -> HttpResponse:
    tenant = _tenant(request)
    data, errors = _filters(request, s.IncidentFilterSerializer, ("number", "caller"))
    queryset = sel.incident_search(
        tenant=tenant,
        status=data.get("status"),
        flow_id=data.get("flow"),
        number=data.get("number"),
        caller=data.get("caller"),
        since=data.get("since"),
        until=data.get("until"),
        acknowledged_by=data.get("acknowledged_by"),
    )
    return render(
        request,
        "portal/after_hours/incidents.html",
        {
            "page": paginate(request, queryset),
            "filters": Bound(values=dict(request.GET.items()), errors=errors, submitted=True),
            "filtered": bool(data) or bool(errors),
            "status_choices": Incident.Status.choices,
            "flow_choices": _choices(_plain(sel.inbound_flow_list(tenant=tenant))),
        },
    )


def _incident(request: HttpRequest, pk: int) -> Incident:
    queryset = sel.incident_detail_list(tenant=_tenant(request)).select_related("flow", "inbound_call")
    return get_object_or_404(queryset, pk=pk)


def _incident_page(
    request: HttpRequest,
    obj: Incident,
    *,
    ack_form: Bound | None = None,
    resolve_form: Bound | None = None,
    status: int = 200,
) -> HttpResponse:
    pages = list(obj.pages.all())
    names = {p.pk: p.name for p in sel.oncall_person_list(tenant=_tenant(request))}
    return render(
        request,
        "portal/after_hours/incident.html",
        {
            "incident": obj,
            "events": list(sel.incident_events(incident=obj)),
            "pages": [(page, names.get(page.person_id or 0, "")) for page in pages],
            "people": list(names.items()),
            "can_ack": obj.status in (Incident.Status.OPEN, Incident.Status.EXHAUSTED),
            "can_resolve": obj.status != Incident.Status.RESOLVED,
            "can_escalate": obj.status == Incident.Status.OPEN,
            "ack_form": ack_form or initial({}),
            "resolve_form": resolve_form or initial({}),
            "steps": obj.policy_snapshot.get("steps", []) if isinstance(obj.policy_snapshot, dict) else [],
        },
        status=status,
    )


@portal_view()
def incident(request: HttpRequest, pk: int) -> HttpResponse:
    return _incident_page(request, _incident(request, pk))


@portal_view()
def incident_timeline(request: HttpRequest, pk: int) -> HttpResponse:
    """The incident's timeline (re-read on ``sse:incident-<id>``)."""
    obj = get_object_or_404(sel.incident_detail_list(tenant=_tenant(request)).prefetch_related(None), pk=pk)
    return render(
        request,
        "portal/after_hours/_incident_timeline.html",
        # ``oob``: the status badge comes along (htmx swaps it in place), so the page follows the state too.
        {"incident": obj, "events": list(sel.incident_events(incident=obj)), "oob": True},
    )


@require_POST
@portal_view()
def incident_ack(request: HttpRequest, pk: int) -> HttpResponse:
    obj = _incident(request, pk)
    bound = bind(s.IncidentAcknowledgeSerializer, request.POST, context={"tenant": _tenant(request)})
    if bound.ok:
        person = bound.data.get("person")
        try:
            incident_acknowledge_by_api(incident=obj, person=person, by=_who(request))
        except InvalidInput as exc:
            bound.add_invalid(exc)
        else:
            portal_audit(
                request,
                "incident.acknowledge",
                f"incident {obj.pk} ({obj.short_code})",
                person=person.name if person else "",
            )
            messages.success(request, f"Incident {obj.short_code} acknowledged.")
            return redirect(reverse("portal:ah-incident", args=[obj.pk]))
    return _incident_page(request, obj, ack_form=bound, status=400)


@require_POST
@portal_view()
def incident_resolve(request: HttpRequest, pk: int) -> HttpResponse:
    obj = _incident(request, pk)
    bound = bind(s.IncidentResolveSerializer, request.POST, context={"tenant": _tenant(request)})
    if bound.ok:
        try:
            incident_resolve_by_api(incident=obj, note=bound.data.get("note", ""), by=_who(request))
        except InvalidInput as exc:
            bound.add_invalid(exc)
        else:
            portal_audit(request, "incident.resolve", f"incident {obj.pk} ({obj.short_code})")
            messages.success(request, f"Incident {obj.short_code} resolved.")
            return redirect(reverse("portal:ah-incident", args=[obj.pk]))
    return _incident_page(request, obj, resolve_form=bound, status=400)


@require_POST
@portal_view()
def incident_escalate(request: HttpRequest, pk: int) -> HttpResponse:
    """Fire the next step now (the API's ``escalate``)."""
    obj = _incident(request, pk)
    try:
        incident_escalate_by_api(incident=obj)
    except InvalidInput as exc:
        bound = Bound(submitted=True)
        bound.add_invalid(exc)
        return _incident_page(request, obj, ack_form=bound, status=400)
    portal_audit(request, "incident.escalate", f"incident {obj.pk} ({obj.short_code})")
    messages.success(request, f"Incident {obj.short_code}: the next step fired.")
    return redirect(reverse("portal:ah-incident", args=[obj.pk]))


# ------------------------------------------------------------------------------------ inbound calls


@portal_view()
def calls(request: HttpRequest) -> HttpResponse:
    tenant = _tenant(request)
    data, errors = _filters(request, s.InboundCallFilterSerializer, ("number", "caller"))
    queryset = sel.inbound_call_search(
        tenant=tenant,
        status=data.get("status"),
        handling=data.get("handling"),
        flow_id=data.get("flow"),
        number=data.get("number"),
        caller=data.get("caller"),
        since=data.get("since"),
        until=data.get("until"),
    )
    return render(
        request,
        "portal/after_hours/calls.html",
        {
            "page": paginate(request, queryset),
            "filters": Bound(values=dict(request.GET.items()), errors=errors, submitted=True),
            "filtered": bool(data) or bool(errors),
            "status_choices": InboundCall.Status.choices,
            "handling_choices": InboundCall.Handling.choices,
            "flow_choices": _choices(_plain(sel.inbound_flow_list(tenant=tenant))),
        },
    )


def _turns(transcript: Any) -> list[dict[str, Any]]:
    """Stored turns ``{role, text, at}`` as the transcript line template takes them (``at`` a time)."""
    if not isinstance(transcript, list):
        return []
    return [
        {"role": t.get("role", ""), "text": t.get("text", ""), "at": parse_datetime(t.get("at") or "")}
        for t in transcript
        if isinstance(t, Mapping)
    ]


@portal_view()
def call(request: HttpRequest, pk: int) -> HttpResponse:
    obj: InboundCall = get_object_or_404(sel.inbound_call_search(tenant=_tenant(request)), pk=pk)
    linked = list(obj.incidents.all())
    duration = (obj.ended_at - obj.started_at).total_seconds() if obj.ended_at else None
    return render(
        request,
        "portal/after_hours/call.html",
        {
            "call": obj,
            "incident": linked[0] if linked else None,
            "turns": _turns(obj.transcript),
            "duration": duration,
            "metrics": sorted(obj.media_metrics.items()) if isinstance(obj.media_metrics, dict) else [],
        },
    )


# -------------------------------------------------------------------------------------------- routes


def _crud(stem: str, kind: Kind) -> list[Any]:
    return [
        path(f"{stem}/new", _create_view(kind), name=f"ah-{kind.short}-new"),
        path(f"{stem}/<int:pk>/edit", _edit_view(kind), name=f"ah-{kind.short}-edit"),
        path(f"{stem}/<int:pk>/delete", _delete_view(kind), name=f"ah-{kind.short}-delete"),
    ]


urlpatterns = [
    path("", index, name="after-hours"),
    path("open-incidents", open_incidents, name="ah-open-incidents"),
    path("numbers/", numbers, name="ah-numbers"),
    *_crud("numbers", NUMBER),
    path("flows/", flows, name="ah-flows"),
    path("flows/<int:pk>/", flow, name="ah-flow"),
    *_crud("flows", FLOW),
    path("people/", people, name="ah-people"),
    *_crud("people", PERSON),
    path("groups/", groups, name="ah-groups"),
    *_crud("groups", GROUP),
    path("rotations/", rotations, name="ah-rotations"),
    path("rotations/<int:pk>/", rotation, name="ah-rotation"),
    *_crud("rotations", ROTATION),
    path("rotations/<int:pk>/overrides/new", override_new, name="ah-override-new"),
    path("overrides/<int:pk>/delete", override_delete, name="ah-override-delete"),
    path("policies/", policies, name="ah-policies"),
    path("policies/<int:pk>/", policy, name="ah-policy"),
    *_crud("policies", POLICY),
    path("incidents/", incidents, name="ah-incidents"),
    path("incidents/<int:pk>/", incident, name="ah-incident"),
    path("incidents/<int:pk>/timeline", incident_timeline, name="ah-incident-timeline"),
    path("incidents/<int:pk>/acknowledge", incident_ack, name="ah-incident-ack"),
    path("incidents/<int:pk>/resolve", incident_resolve, name="ah-incident-resolve"),
    path("incidents/<int:pk>/escalate", incident_escalate, name="ah-incident-escalate"),
    path("calls/", calls, name="ah-calls"),
    path("calls/<int:pk>/", call, name="ah-call"),
]
