"""What the admin of every domain app shares: running a service's validator on a form field, so the admin
refuses exactly what the API refuses (DESIGN.md §4: the rules live in the services), and the read-only
model admin for rows only the product writes (call attempts, incidents, the audit log)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from orchestrator.errors import InvalidInput


def clean_with(form: forms.BaseForm, field: str, validator: Callable[[Any], Any]) -> None:
    """Run a service validator on a cleaned field; put its error on the field, store its normalised value
    (a validator that only checks returns None and leaves the value as it is)."""
    if field not in form.cleaned_data:
        return
    try:
        result = validator(form.cleaned_data[field])
    except InvalidInput as exc:
        form.add_error(field, exc.message)
    else:
        if result is not None:
            form.cleaned_data[field] = result


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the operator may look at but never add, change or delete in the admin."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
