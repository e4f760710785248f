"""Errors shared by the services of every app.

Services reject bad input with :class:`InvalidInput`, which names the offending field so that the API can
answer with field-level validation errors, the admin can attach the message to the right form field, and a
management command can name the option (DESIGN.md §5 rule 6). It is a ``ValueError`` on purpose: pure
validators (phone numbers, calling windows) raise plain ``ValueError`` and callers may treat both alike.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db.models import Model


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


def full_clean_or_raise(instance: Model, *, exclude: list[str] | None = None) -> None:
    """Run a model instance's ``full_clean`` (field validators, choices, unique and check constraints) and
    turn its ``ValidationError`` into :class:`InvalidInput`. The database constraints still decide races."""
    try:
        instance.full_clean(exclude=exclude)
    except ValidationError as exc:
        raise invalid_input_from(exc) from exc
