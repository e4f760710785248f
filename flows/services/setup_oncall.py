"""Writes of who is on call: people, groups, rotations (members in order, overrides for a range of time)
and escalation policies (ordered steps, repeats, the fallback). Same rules as ``flows.services.setup``:
InvalidInput naming the field, same-tenant references, one transaction, nested lists replaced as a whole.

A policy's change never alters an escalation already running: an incident keeps the snapshot taken when it
opened (``flows.services.escalation.policy_snapshot``), so steps are simply replaced here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone as dj_timezone

from flows.models import (
    DEFAULT_FALLBACK_SMS,
    EscalationPolicy,
    EscalationStep,
    OnCallGroup,
    OnCallPerson,
    Rotation,
    RotationMember,
    RotationOverride,
)
from flows.services.escalation import step_wait_validate
from flows.services.setup import clean_phone, clean_timezone, same_tenant
from flows.services.setup_text import SMS_TEMPLATE_MAX, clean_name, clean_template
from orchestrator.errors import InvalidInput, full_clean_or_raise
from tenants.models import Tenant

MAX_GROUP_MEMBERS = 100
MAX_ROTATION_MEMBERS = 100
MAX_STEPS = 20
MAX_REPEAT = 10
MAX_WAIT_S = 24 * 3600
MAX_OVERRIDE = timedelta(days=366)
FALLBACK_PLACEHOLDERS = ("code", "caller", "summary", "business")


def _bool(value: object, *, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be true or false")
    return value


def _people(
    value: object, tenant: Tenant, *, field: str, maximum: int, unique: bool = True
) -> list[OnCallPerson]:
    if not isinstance(value, list | tuple) or not all(isinstance(p, OnCallPerson) for p in value):
        raise InvalidInput(field, "must be a list of on-call people")
    if len(value) > maximum:
        raise InvalidInput(field, f"at most {maximum} people")
    seen: set[int] = set()
    for index, person in enumerate(value):
        if person.tenant_id != tenant.pk:
            raise InvalidInput(field, f"[{index}]: No such object in this tenant (id {person.pk}).")
        if unique and person.pk in seen:
            raise InvalidInput(field, f"[{index}]: {person.name} is listed twice")
        seen.add(person.pk)
    return list(value)


def _in_use(exc: ProtectedError, field: str) -> InvalidInput:
    steps = [obj for obj in exc.protected_objects if isinstance(obj, EscalationStep)]
    names = sorted({step.policy.name for step in steps})[:3]
    if names:
        return InvalidInput(field, f"used by escalation policy {', '.join(names)}: change its steps first")
    return InvalidInput(field, "is in use")


# ------------------------------------------------------------------------------------------- people

_PERSON_FIELDS = ("name", "phone", "sms_number", "timezone", "active")


def _clean_person_field(name: str, value: Any) -> Any:
    if name == "name":
        return clean_name(value)
    if name == "phone":
        return clean_phone(value, field="phone")
    if name == "sms_number":
        return clean_phone(value, field="sms_number", blank=True)
    if name == "timezone":
        return clean_timezone(value)
    if name == "active":
        return _bool(value, field=name)
    raise InvalidInput(name, "is not a field of an on-call person")


def oncall_person_create(
    *, tenant: Tenant, name: str, phone: str, sms_number: str = "", timezone: str = "", active: bool = True
) -> OnCallPerson:
    """Someone who may be paged: called on ``phone``, texted on ``sms_number`` (blank: ``phone``)."""
    values = {"name": name, "phone": phone, "sms_number": sms_number, "timezone": timezone, "active": active}
    person = OnCallPerson(tenant=tenant, **{k: _clean_person_field(k, v) for k, v in values.items()})
    with transaction.atomic():
        full_clean_or_raise(person)
        person.save()
    return person


def oncall_person_update(*, person: OnCallPerson, **changes: Any) -> OnCallPerson:
    for name, value in changes.items():
        setattr(person, name, _clean_person_field(name, value))
    with transaction.atomic():
        full_clean_or_raise(person)
        person.save()
    return person


def oncall_person_delete(*, person: OnCallPerson) -> None:
    """Delete someone no escalation step names (incidents keep their timeline, without the link)."""
    try:
        with transaction.atomic():
            person.delete()
    except ProtectedError as exc:
        raise _in_use(exc, "person") from exc


# ------------------------------------------------------------------------------------------- groups


def oncall_group_create(*, tenant: Tenant, name: str, members: Sequence[OnCallPerson] = ()) -> OnCallGroup:
    """People paged together: a step targeting the group pages every active member."""
    group = OnCallGroup(tenant=tenant, name=clean_name(name))
    people = _people(list(members), tenant, field="members", maximum=MAX_GROUP_MEMBERS)
    with transaction.atomic():
        full_clean_or_raise(group)
        group.save()
        group.members.set(people)
    return group


def oncall_group_update(*, group: OnCallGroup, **changes: Any) -> OnCallGroup:
    unknown = set(changes) - {"name", "members"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a field of a group")
    people = None
    if "name" in changes:
        group.name = clean_name(changes["name"])
    if "members" in changes:
        people = _people(list(changes["members"]), group.tenant, field="members", maximum=MAX_GROUP_MEMBERS)
    with transaction.atomic():
        full_clean_or_raise(group)
        group.save()
        if people is not None:
            group.members.set(people)
    return group


def oncall_group_delete(*, group: OnCallGroup) -> None:
    try:
        with transaction.atomic():
            group.delete()
    except ProtectedError as exc:
        raise _in_use(exc, "group") from exc


# ---------------------------------------------------------------------------------------- rotations

_ROTATION_FIELDS = ("name", "handoff", "handoff_weekday", "handoff_time", "start_date", "timezone")


def _clean_rotation_field(name: str, value: Any) -> Any:
    if name == "name":
        return clean_name(value)
    if name == "handoff":
        if value not in Rotation.Handoff.values:
            raise InvalidInput(name, f"must be one of {', '.join(Rotation.Handoff.values)}, not {value!r}")
        return value
    if name == "handoff_weekday":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 6:
            raise InvalidInput(name, "must be 0 (Monday) to 6 (Sunday)")
        return value
    if name == "handoff_time":
        if isinstance(value, str):
            try:
                value = time.fromisoformat(value)
            except ValueError:
                raise InvalidInput(name, f"{value!r} is not a time of day (HH:MM)") from None
        if not isinstance(value, time):
            raise InvalidInput(name, "must be a time of day (HH:MM)")
        return value.replace(second=0, microsecond=0, tzinfo=None)
    if name == "start_date":
        if isinstance(value, str):
            try:
                value = date.fromisoformat(value)
            except ValueError:
                raise InvalidInput(name, f"{value!r} is not a date (YYYY-MM-DD)") from None
        if not isinstance(value, date) or isinstance(value, datetime):
            raise InvalidInput(name, "must be a date (YYYY-MM-DD)")
        return value
    if name == "timezone":
        return clean_timezone(value, blank=False)
    raise InvalidInput(name, "is not a field of a rotation")


def _set_members(rotation: Rotation, people: list[OnCallPerson]) -> None:
    rotation.members.all().delete()
    RotationMember.objects.bulk_create(
        RotationMember(rotation=rotation, person=person, position=position)
        for position, person in enumerate(people)
    )


def rotation_create(
    *,
    tenant: Tenant,
    name: str,
    start_date: date | str,
    members: Sequence[OnCallPerson] = (),
    handoff: str = Rotation.Handoff.WEEKLY,
    handoff_weekday: int = 0,
    handoff_time: time | str = time(9, 0),
    timezone: str = "",
) -> Rotation:
    """Who is on call, in turn: ``members`` in order hand over at ``handoff_time`` (``timezone``, blank:
    the tenant's) each day or each week on ``handoff_weekday``, from ``start_date``."""
    values = {
        "name": name,
        "handoff": handoff,
        "handoff_weekday": handoff_weekday,
        "handoff_time": handoff_time,
        "start_date": start_date,
        "timezone": timezone or tenant.default_timezone or "UTC",
    }
    rotation = Rotation(tenant=tenant, **{k: _clean_rotation_field(k, v) for k, v in values.items()})
    people = _people(list(members), tenant, field="members", maximum=MAX_ROTATION_MEMBERS)
    with transaction.atomic():
        full_clean_or_raise(rotation)
        rotation.save()
        _set_members(rotation, people)
    return rotation


def rotation_update(*, rotation: Rotation, **changes: Any) -> Rotation:
    """Change some fields; ``members`` (in order) replaces the turn order."""
    people = None
    for name, value in changes.items():
        if name == "members":
            people = _people(list(value), rotation.tenant, field="members", maximum=MAX_ROTATION_MEMBERS)
        else:
            setattr(rotation, name, _clean_rotation_field(name, value))
    with transaction.atomic():
        full_clean_or_raise(rotation)
        rotation.save()
        if people is not None:
            _set_members(rotation, people)
    return rotation


def rotation_delete(*, rotation: Rotation) -> None:
    try:
        with transaction.atomic():
            rotation.delete()
    except ProtectedError as exc:
        raise _in_use(exc, "rotation") from exc


def _override_range(starts_at: object, ends_at: object) -> tuple[datetime, datetime]:
    for field, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if not isinstance(value, datetime) or dj_timezone.is_naive(value):
            raise InvalidInput(field, "must be a date and time with its UTC offset")
    assert isinstance(starts_at, datetime) and isinstance(ends_at, datetime)  # noqa: S101 - for mypy
    if ends_at <= starts_at:
        raise InvalidInput("ends_at", "must be after starts_at")
    if ends_at - starts_at > MAX_OVERRIDE:
        raise InvalidInput("ends_at", "an override lasts at most 366 days")
    return starts_at, ends_at


def rotation_override_create(
    *, rotation: Rotation, person: OnCallPerson, starts_at: datetime, ends_at: datetime
) -> RotationOverride:
    """``person`` is on call for ``rotation`` from ``starts_at`` to ``ends_at``, whoever the turn says."""
    same_tenant(person, rotation.tenant, field="person")
    starts_at, ends_at = _override_range(starts_at, ends_at)
    override = RotationOverride(rotation=rotation, person=person, starts_at=starts_at, ends_at=ends_at)
    with transaction.atomic():
        full_clean_or_raise(override)
        override.save()
    return override


def rotation_override_update(*, override: RotationOverride, **changes: Any) -> RotationOverride:
    unknown = set(changes) - {"person", "starts_at", "ends_at"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "cannot be changed")
    if "person" in changes:
        same_tenant(changes["person"], override.rotation.tenant, field="person")
        override.person = changes["person"]
    override.starts_at, override.ends_at = _override_range(
        changes.get("starts_at", override.starts_at), changes.get("ends_at", override.ends_at)
    )
    with transaction.atomic():
        full_clean_or_raise(override)
        override.save()
    return override


def rotation_override_delete(*, override: RotationOverride) -> None:
    override.delete()


# ----------------------------------------------------------------------------------------- policies

_TARGETS = {
    EscalationStep.TargetKind.PERSON: ("person", OnCallPerson),
    EscalationStep.TargetKind.ROTATION: ("rotation", Rotation),
    EscalationStep.TargetKind.GROUP: ("group", OnCallGroup),
}


def validate_steps(value: object, tenant: Tenant) -> list[EscalationStep]:
    """``[{"target_kind": "person"|"rotation"|"group", "person"|"rotation"|"group": <row>,
    "notify_call": bool, "notify_sms": bool, "wait_s": int}]`` in order (at least one step; each notifies
    by call and/or SMS and waits at least ``FLOWS_MIN_STEP_WAIT_S``), as unsaved steps."""
    if not isinstance(value, list | tuple) or not all(isinstance(item, Mapping) for item in value):
        raise InvalidInput("steps", "must be a list of steps")
    if not value:
        raise InvalidInput("steps", "a policy needs at least one step")
    if len(value) > MAX_STEPS:
        raise InvalidInput("steps", f"at most {MAX_STEPS} steps")
    steps = []
    for index, item in enumerate(value):
        where = f"[{index}]"
        kind = item.get("target_kind")
        if kind not in _TARGETS:
            raise InvalidInput("steps", f"{where}.target_kind: must be one of person, rotation, group")
        target_field, target_model = _TARGETS[EscalationStep.TargetKind(kind)]
        target = item.get(target_field)
        if not isinstance(target, target_model):
            raise InvalidInput("steps", f"{where}.{target_field}: required for a {kind} step")
        if getattr(target, "tenant_id", None) != tenant.pk:
            raise InvalidInput(
                "steps", f"{where}.{target_field}: No such object in this tenant (id {target.pk})."
            )
        others = [
            name for name, _ in _TARGETS.values() if name != target_field and item.get(name) is not None
        ]
        if others:
            raise InvalidInput("steps", f"{where}.{others[0]}: a {kind} step names only its {target_field}")
        notify_call = item.get("notify_call", True)
        notify_sms = item.get("notify_sms", True)
        if not isinstance(notify_call, bool) or not isinstance(notify_sms, bool):
            raise InvalidInput("steps", f"{where}.notify_call/notify_sms: must be true or false")
        if not (notify_call or notify_sms):
            raise InvalidInput("steps", f"{where}.notify_call: a step notifies by call, by SMS or both")
        wait_s = item.get("wait_s", 120)
        try:
            step_wait_validate(wait_s)
        except InvalidInput as exc:
            raise InvalidInput("steps", f"{where}.wait_s: {exc.message}") from exc
        if wait_s > MAX_WAIT_S:
            raise InvalidInput("steps", f"{where}.wait_s: at most {MAX_WAIT_S} seconds")
        steps.append(
            EscalationStep(
                position=index,
                target_kind=kind,
                notify_call=notify_call,
                notify_sms=notify_sms,
                wait_s=wait_s,
                **{target_field: target},
            )
        )
    return steps


def _clean_policy_field(tenant: Tenant, name: str, value: Any) -> Any:
    if name == "name":
        return clean_name(value)
    if name == "repeat":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_REPEAT:
            raise InvalidInput(name, f"must be a whole number from 0 to {MAX_REPEAT}")
        return value
    if name == "fallback_sms":
        return clean_template(
            value, field=name, placeholders=FALLBACK_PLACEHOLDERS, max_length=SMS_TEMPLATE_MAX
        )
    if name == "fallback_callback":
        return _bool(value, field=name)
    raise InvalidInput(name, "is not a field of an escalation policy")


def _write_policy(
    policy: EscalationPolicy, steps: list[EscalationStep] | None, fallback: list[OnCallPerson] | None
) -> None:
    full_clean_or_raise(policy)
    policy.save()
    if steps is not None:
        policy.steps.all().delete()
        for step in steps:
            step.policy = policy
        EscalationStep.objects.bulk_create(steps)
    if fallback is not None:
        policy.fallback_people.set(fallback)


def escalation_policy_create(
    *,
    tenant: Tenant,
    name: str,
    steps: Sequence[Mapping[str, Any]],
    repeat: int = 0,
    fallback_people: Sequence[OnCallPerson] = (),
    fallback_sms: str = DEFAULT_FALLBACK_SMS,
    fallback_callback: bool = False,
) -> EscalationPolicy:
    """Ordered steps run ``repeat + 1`` times, then the fallback (``fallback_people`` texted
    ``fallback_sms``; with ``fallback_callback`` the caller is called back at the flow's next opening)."""
    values = {
        "name": name,
        "repeat": repeat,
        "fallback_sms": fallback_sms,
        "fallback_callback": fallback_callback,
    }
    policy = EscalationPolicy(
        tenant=tenant, **{k: _clean_policy_field(tenant, k, v) for k, v in values.items()}
    )
    checked = validate_steps(list(steps), tenant)
    people = _people(list(fallback_people), tenant, field="fallback_people", maximum=MAX_GROUP_MEMBERS)
    with transaction.atomic():
        _write_policy(policy, checked, people)
    return policy


def escalation_policy_update(*, policy: EscalationPolicy, **changes: Any) -> EscalationPolicy:
    """Change some fields; ``steps`` replaces every step, ``fallback_people`` the fallback list. Incidents
    already open keep the policy as it was when they opened."""
    steps = fallback = None
    for name, value in changes.items():
        if name == "steps":
            steps = validate_steps(list(value), policy.tenant)
        elif name == "fallback_people":
            fallback = _people(list(value), policy.tenant, field=name, maximum=MAX_GROUP_MEMBERS)
        else:
            setattr(policy, name, _clean_policy_field(policy.tenant, name, value))
    with transaction.atomic():
        _write_policy(policy, steps, fallback)
    return policy


def escalation_policy_delete(*, policy: EscalationPolicy) -> None:
    """Delete a policy no flow uses (open incidents run on their snapshot)."""
    in_use = list(policy.flows.values_list("name", flat=True)[:3])
    if in_use:
        raise InvalidInput("escalation_policy", f"used by flow(s) {', '.join(in_use)}; change them first")
    policy.delete()
