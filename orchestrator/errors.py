"""Errors shared by the services of every app.

Services reject bad input with :class:`InvalidInput`, which names the offending field so that the API can
answer with field-level validation errors, the admin can attach the message to the right form field, and a
management command can name the option (DESIGN.md §5 rule 6). It is a ``ValueError`` on purpose: pure
validators (phone numbers, calling windows) raise plain ``ValueError`` and callers may treat both alike.
"""

from __future__ import annotations

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import router
from django.db.models import BaseConstraint, CheckConstraint, Model, UniqueConstraint


class InvalidInput(ValueError):
    """Bad input for one field; ``str()`` reads ``"<field>: <message>"``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def invalid_input_from(error: ValidationError) -> InvalidInput:
    """The first message of a Django ``ValidationError`` (e.g. from ``full_clean``) as an InvalidInput."""
    if hasattr(error, "error_dict"):
        for field, errors in error.message_dict.items():
            return InvalidInput(field, " ".join(errors))
    return InvalidInput("__all__", " ".join(error.messages))


#: Constraints over several fields: the field a user changes to satisfy it, and the message to show. A
#: constraint not listed names its one field (a check on one field, a unique constraint's last field, e.g.
#: ``name`` of ``(tenant, name)``), else it is a ``non_field_errors``. Names are unique project-wide (each is
#: prefixed with its model); a test checks that every multi-field check constraint of the project is here.
CONSTRAINT_FIELDS: dict[str, tuple[str, str]] = {
    "campaign_ends_after_start": ("ends_at", "must be after starts_at"),
    "tenant_inbound_reserve_lt_max_concurrent_calls": (
        "inbound_reserve",
        "must be smaller than max_concurrent_calls",
    ),
    # The API's and the admin's input is "password" (stored encrypted) or "password_env".
    "pbx_exactly_one_password_source": ("password", "give exactly one of password or password_env"),
    "pbx_own_password_is_stored": (
        "password_env",
        "a tenant's own PBX keeps its password stored (give password), never in an environment variable",
    ),
    "lead_waiting_has_next_due_at": ("next_due_at", "a waiting lead needs a due time"),
    "smsaccount_one_secret_source": ("secret", "give at most one of secret or secret_env"),
    # flows (inbound flows, on-call)
    "businesshours_closes_after_opens": ("closes", "must be after opens (00:00 means midnight)"),
    "inboundflow_transfer_has_office_number": (
        "office_number",
        "an in-hours transfer needs the office number",
    ),
    "rotationoverride_ends_after_start": ("ends_at", "must be after starts_at"),
    "escalationstep_one_target_of_its_kind": (
        "target_kind",
        "a step targets exactly one person, rotation or group, of its kind",
    ),
    "escalationstep_notifies_somehow": ("notify_call", "a step notifies by call, by SMS or both"),
}


def constraint_field(constraint: BaseConstraint) -> str:
    """The field a violation of ``constraint`` is reported on (see :data:`CONSTRAINT_FIELDS`)."""
    if constraint.name in CONSTRAINT_FIELDS:
        return CONSTRAINT_FIELDS[constraint.name][0]
    if isinstance(constraint, UniqueConstraint) and constraint.fields:
        return str(constraint.fields[-1])
    if isinstance(constraint, CheckConstraint):
        fields = constraint.condition.referenced_base_fields  # type: ignore[union-attr]
        if len(fields) == 1:
            return str(next(iter(fields)))
    return NON_FIELD_ERRORS


def full_clean_or_raise(instance: Model, *, exclude: list[str] | None = None) -> None:
    """Run a model instance's ``full_clean`` (field validators, choices, unique fields) and then its
    constraints one by one, and turn the first failure into :class:`InvalidInput`: a constraint's is
    reported on the field it is about (:func:`constraint_field`), e.g. ``ends_at`` for an end before the
    start, never as an anonymous model-wide error. The database constraints still decide races."""
    try:
        instance.full_clean(exclude=exclude, validate_constraints=False)
    except ValidationError as exc:
        raise invalid_input_from(exc) from exc
    excluded = set(exclude or ())
    using = router.db_for_write(type(instance), instance=instance)
    for model_class, constraints in instance.get_constraints():
        for constraint in constraints:
            try:
                # Every Django constraint class has validate(); the stubs declare it per subclass only.
                constraint.validate(model_class, instance, exclude=excluded, using=using)  # type: ignore[attr-defined]
            except ValidationError as exc:
                known = CONSTRAINT_FIELDS.get(constraint.name)
                message = known[1] if known else " ".join(exc.messages)
                raise InvalidInput(constraint_field(constraint), message) from exc
