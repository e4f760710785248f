"""Agent instructions are templates with ``{{variable}}`` placeholders, filled from a contact's variables.

Plain substitution only: no expressions, filters, attribute access or code execution, so a tenant's
template (or a contact's data) can never run anything. Substituted values are not re-scanned, so a value
containing ``{{other}}`` stays literal.
"""

from __future__ import annotations

import re

# {{ name }}: letters, digits and underscores, optional spaces inside the braces.
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render_instructions(template: str, variables: dict[str, str]) -> str:
    """``template`` with every ``{{name}}`` replaced by ``variables[name]`` (``""`` when unknown)."""
    return _PLACEHOLDER.sub(lambda match: str(variables.get(match.group(1), "")), template)


def template_variables(template: str) -> set[str]:
    """The variable names a template uses."""
    return {match.group(1) for match in _PLACEHOLDER.finditer(template)}
