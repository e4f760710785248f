"""Agent instructions are templates with ``{{variable}}`` placeholders, filled from a contact's variables.

Plain substitution only: no expressions, filters, attribute access or code execution, so a tenant's
template (or a contact's data) can never run anything. Substituted values are not re-scanned, so a value
containing ``{{other}}`` stays literal.

Every contact offers the built-in variables ``name``, ``first_name`` (the first word of the name) and
``phone_number``, plus its own variables (:func:`contact_variables`). A template using a variable that a
contact lacks would be said with a blank ("Hi , this is..."): the brief preview lists such variables, a
campaign refuses to start while any of its contacts lacks one, and an import warns about the columns a
file is missing (campaigns/variables.py, campaigns/services/campaigns.py, campaigns/services/imports.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# {{ name }}: letters, digits and underscores, optional spaces inside the braces.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render_instructions(template: str, variables: dict[str, str]) -> str:
    """``template`` with every ``{{name}}`` replaced by ``variables[name]`` (``""`` when unknown)."""
    return _PLACEHOLDER.sub(lambda match: str(variables.get(match.group(1), "")), template)


def template_variables(template: str) -> set[str]:
    """The variable names a template uses."""
    return {match.group(1) for match in _PLACEHOLDER.finditer(template)}


#: Variables every contact has, from its own fields: ``first_name`` is the first word of ``name``. A
#: contact variable of the same name (e.g. from a CSV column ``first_name``) wins when it is not blank.
BUILTIN_VARIABLES: tuple[str, ...] = ("name", "first_name", "phone_number")


def contact_variables(*, name: str, phone_number: str, variables: Mapping[str, object]) -> dict[str, str]:
    """The values a template sees for one contact: the built-ins, then the contact's own variables (a blank
    one does not hide a built-in: an empty ``name`` column keeps the contact's name)."""
    words = name.split()
    values = {"name": name, "first_name": words[0] if words else "", "phone_number": phone_number}
    for key, value in variables.items():
        text = str(value)
        if text.strip() or str(key) not in values:
            values[str(key)] = text
    return values


@dataclass(frozen=True)
class RenderedAgentTexts:
    """An agent's instructions and greeting rendered for one contact, and the variables they use; a
    variable is missing when the contact has no non-blank value for it (it renders as "")."""

    instructions: str
    greeting: str
    used: list[str]
    missing: list[str]
    values: dict[str, str]


def render_agent_texts(*, instructions: str, greeting: str, values: Mapping[str, str]) -> RenderedAgentTexts:
    """What the call brief holds (campaigns/services/briefs.py) and the brief preview shows."""
    used = sorted(template_variables(instructions) | template_variables(greeting))
    present = {name: values[name] for name in used if name in values}
    return RenderedAgentTexts(
        instructions=render_instructions(instructions, dict(values)),
        greeting=render_instructions(greeting, dict(values)),
        used=used,
        missing=[name for name in used if not present.get(name, "").strip()],
        values=present,
    )


def missing_variables(*, templates: Iterable[str], values: Mapping[str, str]) -> set[str]:
    """The variables ``templates`` use for which ``values`` has no non-blank value."""
    used: set[str] = set()
    for template in templates:
        used |= template_variables(template)
    return {name for name in used if not values.get(name, "").strip()}
