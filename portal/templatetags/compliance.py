"""Template helpers of the compliance partials (portal/templates/portal/compliance/)."""

from __future__ import annotations

from django import template

from campaigns.models import ConsentKind

register = template.Library()


@register.simple_tag
def consent_kind_choices() -> list[tuple[str, str]]:
    """The kinds of prior express consent, for the campaign form's select."""
    return list(ConsentKind.choices)
