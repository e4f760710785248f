"""Writes of what a tenant sets up for inbound calls: its numbers (DIDs) and inbound flows with their
business hours, holidays and intake fields (the API and the demo call these; the admin's forms use the same
validators). The on-call side (people, groups, rotations, policies) is in ``flows.services.setup_oncall``.

Each function checks its input and raises InvalidInput naming the field (DESIGN.md §5 rule 6), checks that
every row it links to belongs to the same tenant (rule 7), and writes in one transaction. A flow's nested
lists (``business_hours``, ``holidays``, ``intake_fields``), when given, replace the flow's whole set.
Tenant text that reaches a prompt or an SMS goes through ``flows.services.setup_text``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, time
from typing import Any

from django.db import transaction
from django.db.models import Model

from campaigns.models import AgentProfile
from campaigns.phone import normalize_phone_number
from flows.models import (
    DEFAULT_CALLER_ACK_SMS,
    DEFAULT_TAKEN_SMS,
    DEFAULT_URGENT_REPLY,
    INTAKE_NAME_RE,
    BusinessHours,
    EscalationPolicy,
    Holiday,
    InboundFlow,
    IntakeField,
    PhoneNumber,
)
from flows.services.setup_text import (
    GREETING_MAX,
    INSTRUCTIONS_MAX,
    LABEL_MAX,
    NAME_MAX,
    SMS_TEMPLATE_MAX,
    SPOKEN_MAX,
    check_urls,
    clean_name,
    clean_template,
    clean_text,
)
from orchestrator.errors import InvalidInput, full_clean_or_raise
from tenants.models import Tenant
from tenants.validators import is_timezone_name

MAX_BUSINESS_HOURS = 50
MAX_HOLIDAYS = 400
MAX_INTAKE_FIELDS = 30
MAX_TRANSFER_TIMEOUT_S = 120
# The sound a refused caller hears: an Asterisk media URI (sound:ss-noservice, sound:custom/closed).
_SOUND_URI = re.compile(r"^(sound|recording):[A-Za-z0-9_\-]+(/[A-Za-z0-9_\-]+)*$")
_VOICE = re.compile(r"^[a-z0-9_\-]{0,50}$")

CALLER_ACK_PLACEHOLDERS = ("person", "business", "code")
TAKEN_PLACEHOLDERS = ("person", "code")


def same_tenant(obj: Model | None, tenant: Tenant, *, field: str) -> None:
    """InvalidInput(``field``) unless ``obj`` (when given) belongs to ``tenant``: another tenant's row is
    "no such object", as the API says for an id it cannot see."""
    if obj is None:
        return
    if getattr(obj, "tenant_id", None) != tenant.pk:
        raise InvalidInput(field, f"No such object in this tenant (id {obj.pk}).")


def clean_timezone(value: object, *, field: str = "timezone", blank: bool = True) -> str:
    text = clean_text(value, field=field, max_length=64)
    if not text and blank:
        return ""
    if not is_timezone_name(text):
        raise InvalidInput(field, f"{text!r} is not an IANA time zone name (e.g. America/New_York)")
    return text


def clean_phone(value: object, *, field: str, blank: bool = False) -> str:
    text = clean_text(value, field=field, max_length=32)
    if not text and blank:
        return ""
    return normalize_phone_number(text, field=field)


# ------------------------------------------------------------------------------------- phone numbers


def phone_number_create(
    *, tenant: Tenant, number: str, flow: InboundFlow | None = None, label: str = ""
) -> PhoneNumber:
    """A DID of the tenant (E.164, unique across the platform), routed to ``flow`` (none: refused)."""
    same_tenant(flow, tenant, field="flow")
    phone = PhoneNumber(
        tenant=tenant,
        number=clean_phone(number, field="number"),
        flow=flow,
        label=clean_text(label, field="label", max_length=NAME_MAX),
    )
    with transaction.atomic():
        full_clean_or_raise(phone)
        phone.save()
    return phone


def phone_number_update(*, phone_number: PhoneNumber, **changes: Any) -> PhoneNumber:
    """Change some of: number, flow, label."""
    unknown = set(changes) - {"number", "flow", "label"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "cannot be changed")
    if "number" in changes:
        phone_number.number = clean_phone(changes["number"], field="number")
    if "flow" in changes:
        same_tenant(changes["flow"], phone_number.tenant, field="flow")
        phone_number.flow = changes["flow"]
    if "label" in changes:
        phone_number.label = clean_text(changes["label"], field="label", max_length=NAME_MAX)
    with transaction.atomic():
        full_clean_or_raise(phone_number)
        phone_number.save()
    return phone_number


def phone_number_delete(*, phone_number: PhoneNumber) -> None:
    """Release the number (calls already recorded keep the DID they were made to)."""
    phone_number.delete()


# ------------------------------------------------------------------------------------- inbound flows

_FLOW_DEFAULTS: dict[str, Any] = {
    "agent": None,
    "instructions": "",
    "greeting": "",
    "voice": "",
    "timezone": "",
    "in_hours_action": InboundFlow.InHoursAction.AGENT,
    "office_number": "",
    "transfer_timeout_s": 30,
    "after_hours_action": InboundFlow.AfterHoursAction.AGENT_AND_PAGE,
    "escalation_policy": None,
    "business_name": "",
    "refusal_message": "",
    "urgent_reply": DEFAULT_URGENT_REPLY,
    "caller_ack_sms": DEFAULT_CALLER_ACK_SMS,
    "taken_sms": DEFAULT_TAKEN_SMS,
    "enabled": True,
}
FLOW_FIELDS = ("name", *_FLOW_DEFAULTS)
FLOW_NESTED = ("business_hours", "holidays", "intake_fields")


def _choice(value: object, choices: Iterable[str], *, field: str) -> str:
    allowed = list(choices)
    if value not in allowed:
        raise InvalidInput(field, f"must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def _positive_int(value: object, *, field: str, minimum: int, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise InvalidInput(field, f"must be a whole number from {minimum} to {maximum}")
    return value


def _clean_flow_field(tenant: Tenant, name: str, value: Any) -> Any:  # noqa: PLR0911 - one per field
    if name == "name":
        return clean_name(value)
    if name == "agent":
        if value is not None and not isinstance(value, AgentProfile):
            raise InvalidInput(name, "must be an agent profile")
        same_tenant(value, tenant, field=name)
        return value
    if name == "escalation_policy":
        if value is not None and not isinstance(value, EscalationPolicy):
            raise InvalidInput(name, "must be an escalation policy")
        same_tenant(value, tenant, field=name)
        return value
    if name == "instructions":
        return clean_text(value, field=name, max_length=INSTRUCTIONS_MAX, multiline=True)
    if name in ("greeting", "urgent_reply"):
        text = clean_text(value, field=name, max_length=GREETING_MAX if name == "greeting" else SPOKEN_MAX)
        check_urls(text, field=name)
        return text
    if name == "voice":
        text = clean_text(value, field=name, max_length=50)
        if not _VOICE.match(text):
            raise InvalidInput(name, "must be a voice name: lower case letters, digits, _ and -")
        return text
    if name == "timezone":
        return clean_timezone(value, field=name)
    if name == "in_hours_action":
        return _choice(value, InboundFlow.InHoursAction.values, field=name)
    if name == "after_hours_action":
        return _choice(value, InboundFlow.AfterHoursAction.values, field=name)
    if name == "office_number":
        return clean_phone(value, field=name, blank=True)
    if name == "transfer_timeout_s":
        return _positive_int(value, field=name, minimum=5, maximum=MAX_TRANSFER_TIMEOUT_S)
    if name == "business_name":
        return clean_text(value, field=name, max_length=NAME_MAX)
    if name == "refusal_message":
        text = clean_text(value, field=name, max_length=200)
        if text and (not _SOUND_URI.match(text)):
            raise InvalidInput(
                name, "must be an Asterisk sound, e.g. sound:ss-noservice (blank: the platform's)"
            )
        return text
    if name == "caller_ack_sms":
        return clean_template(
            value, field=name, placeholders=CALLER_ACK_PLACEHOLDERS, max_length=SMS_TEMPLATE_MAX
        )
    if name == "taken_sms":
        return clean_template(value, field=name, placeholders=TAKEN_PLACEHOLDERS, max_length=SMS_TEMPLATE_MAX)
    if name == "enabled":
        if not isinstance(value, bool):
            raise InvalidInput(name, "must be true or false")
        return value
    raise InvalidInput(name, "cannot be changed")


def _as_time(value: object, *, field: str) -> time:
    if isinstance(value, time):
        return value.replace(second=0, microsecond=0, tzinfo=None)
    if isinstance(value, str):
        try:
            return time.fromisoformat(value).replace(second=0, microsecond=0, tzinfo=None)
        except ValueError:
            pass
    raise InvalidInput(field, f"{value!r} is not a time of day (HH:MM)")


def _as_date(value: object, *, field: str) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidInput(field, f"{value!r} is not a date (YYYY-MM-DD)")


def _items(value: object, *, field: str, maximum: int) -> list[Mapping[str, Any]]:
    if not isinstance(value, list | tuple) or not all(isinstance(item, Mapping) for item in value):
        raise InvalidInput(field, "must be a list of objects")
    if len(value) > maximum:
        raise InvalidInput(field, f"at most {maximum} entries")
    return list(value)


def validate_business_hours(value: object) -> list[tuple[int, time, time]]:
    """``[{"weekday": 0-6 (Monday 0), "opens": "HH:MM", "closes": "HH:MM"}]``; closes after opens, or
    00:00 for midnight (the end of the day)."""
    ranges = []
    for index, item in enumerate(_items(value, field="business_hours", maximum=MAX_BUSINESS_HOURS)):
        where = f"[{index}]"
        weekday = item.get("weekday")
        if not isinstance(weekday, int) or isinstance(weekday, bool) or not 0 <= weekday <= 6:
            raise InvalidInput("business_hours", f"{where}.weekday: must be 0 (Monday) to 6 (Sunday)")
        try:
            opens = _as_time(item.get("opens"), field="opens")
            closes = _as_time(item.get("closes"), field="closes")
        except InvalidInput as exc:
            raise InvalidInput("business_hours", f"{where}.{exc.field}: {exc.message}") from exc
        if not (closes > opens or closes == time(0, 0)):
            raise InvalidInput(
                "business_hours", f"{where}.closes: must be after opens ({opens:%H:%M}; 00:00 means midnight)"
            )
        ranges.append((weekday, opens, closes))
    return ranges


def validate_holidays(value: object) -> list[tuple[date, str]]:
    """``[{"date": "YYYY-MM-DD", "name": "..."}]``: closed all day (after-hours handling), once a date."""
    holidays: dict[date, str] = {}
    for index, item in enumerate(_items(value, field="holidays", maximum=MAX_HOLIDAYS)):
        try:
            day = _as_date(item.get("date"), field="date")
            name = clean_text(item.get("name", ""), field="name", max_length=NAME_MAX)
        except InvalidInput as exc:
            raise InvalidInput("holidays", f"[{index}].{exc.field}: {exc.message}") from exc
        if day in holidays:
            raise InvalidInput("holidays", f"[{index}].date: {day} is listed twice")
        holidays[day] = name
    return sorted(holidays.items())


def validate_intake_fields(value: object) -> list[tuple[str, str, bool]]:
    """``[{"name": "callback_number", "label": "Callback number", "required": true}]`` in the order the
    agent asks; names ``^[a-z][a-z0-9_]{0,39}$``, once each; the label defaults from the name."""
    fields: list[tuple[str, str, bool]] = []
    seen: set[str] = set()
    for index, item in enumerate(_items(value, field="intake_fields", maximum=MAX_INTAKE_FIELDS)):
        name = item.get("name")
        if not isinstance(name, str) or not INTAKE_NAME_RE.match(name):
            raise InvalidInput(
                "intake_fields",
                f"[{index}].name: {name!r} is not a field name: lower case letters, digits and _, "
                "starting with a letter (at most 40)",
            )
        if name in seen:
            raise InvalidInput("intake_fields", f"[{index}].name: {name!r} is listed twice")
        seen.add(name)
        try:
            label = clean_text(item.get("label", ""), field="label", max_length=LABEL_MAX)
        except InvalidInput as exc:
            raise InvalidInput("intake_fields", f"[{index}].label: {exc.message}") from exc
        required = item.get("required", False)
        if not isinstance(required, bool):
            raise InvalidInput("intake_fields", f"[{index}].required: must be true or false")
        fields.append((name, label or name.replace("_", " ").capitalize(), required))
    return fields


def _check_flow(flow: InboundFlow) -> None:
    if flow.in_hours_action == InboundFlow.InHoursAction.TRANSFER and not flow.office_number:
        raise InvalidInput("office_number", "an in-hours transfer needs the office number")
    full_clean_or_raise(flow)


def _write_nested(flow: InboundFlow, nested: dict[str, Any]) -> None:
    if "business_hours" in nested:
        flow.business_hours.all().delete()
        BusinessHours.objects.bulk_create(
            BusinessHours(flow=flow, weekday=weekday, opens=opens, closes=closes)
            for weekday, opens, closes in nested["business_hours"]
        )
    if "holidays" in nested:
        flow.holidays.all().delete()
        Holiday.objects.bulk_create(
            Holiday(flow=flow, date=day, name=name) for day, name in nested["holidays"]
        )
    if "intake_fields" in nested:
        flow.intake_fields.all().delete()
        IntakeField.objects.bulk_create(
            IntakeField(flow=flow, name=name, label=label, required=required, position=position)
            for position, (name, label, required) in enumerate(nested["intake_fields"])
        )


def _nested(values: dict[str, Any]) -> dict[str, Any]:
    validators = {
        "business_hours": validate_business_hours,
        "holidays": validate_holidays,
        "intake_fields": validate_intake_fields,
    }
    return {name: validators[name](values[name]) for name in FLOW_NESTED if values.get(name) is not None}


def inbound_flow_create(*, tenant: Tenant, name: str, **values: Any) -> InboundFlow:
    """A flow (see ``InboundFlow``); ``business_hours``, ``holidays`` and ``intake_fields`` may be given
    as lists (see the ``validate_*`` functions above). No business hours: always after hours."""
    unknown = set(values) - set(FLOW_FIELDS) - set(FLOW_NESTED)
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a field of an inbound flow")
    nested = _nested(values)
    fields = {**_FLOW_DEFAULTS, **{k: v for k, v in values.items() if k not in FLOW_NESTED}}
    flow = InboundFlow(tenant=tenant, name=_clean_flow_field(tenant, "name", name))
    for field, value in fields.items():
        setattr(flow, field, _clean_flow_field(tenant, field, value))
    with transaction.atomic():
        _check_flow(flow)
        flow.save()
        _write_nested(flow, nested)
    return flow


def inbound_flow_update(*, flow: InboundFlow, **changes: Any) -> InboundFlow:
    """Change some fields and/or replace some nested lists of the flow."""
    unknown = set(changes) - set(FLOW_FIELDS) - set(FLOW_NESTED)
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a field of an inbound flow")
    nested = _nested(changes)
    for field, value in changes.items():
        if field not in FLOW_NESTED:
            setattr(flow, field, _clean_flow_field(flow.tenant, field, value))
    with transaction.atomic():
        _check_flow(flow)
        flow.save()
        _write_nested(flow, nested)
    return flow


def inbound_flow_delete(*, flow: InboundFlow) -> None:
    """Delete a flow; its numbers are left unrouted (calls to them are refused politely), recorded calls
    and incidents keep their rows."""
    flow.delete()
