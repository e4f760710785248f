"""The AI disclosure every call opens with (FCC 2024 declaratory ruling: an AI-generated voice is an
"artificial voice" under the TCPA), and the checks on tenant text that reaches the agent's prompt.

The campaign's ``disclosure`` is a tenant's text with one placeholder, ``{company}`` (the tenant's name).
The brief's greeting starts with it (plus :data:`RECORDING_NOTICE` when the campaign records calls), and
the instructions tell the agent it must say it is an AI and never deny it (campaigns/services/briefs.py).

Tenant text is hostile input to a prompt: it is length-capped and may not hold control characters (a
newline could fake a new instruction line); ``{company}`` is the only placeholder. The tenant's name is
cleaned the same way when it is filled in. Pure Python, no Django.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "AI_DISCLOSURE_INSTRUCTION",
    "DEFAULT_DISCLOSURE",
    "DISCLOSURE_MAX_LENGTH",
    "RECORDING_NOTICE",
    "clean_prompt_text",
    "disclosure_text",
    "validate_disclosure",
]

DEFAULT_DISCLOSURE = "This is an AI assistant calling on behalf of {company}."
DISCLOSURE_MAX_LENGTH = 300
COMPANY_MAX_LENGTH = 100
RECORDING_NOTICE = "This call may be recorded."

#: Appended to the agent's instructions on every call.
AI_DISCLOSURE_INSTRUCTION = (
    "Compliance: you are an AI assistant. Your greeting already said so; if the person asks whether you "
    "are a human, a robot or an AI, say truthfully that you are an AI assistant. Never claim or imply that "
    "you are a human."
)

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ALLOWED = frozenset({"company"})


def _has_control(text: str) -> bool:
    # Cc (newlines, escapes), Cf (bidi overrides, zero-width), Co/Cs/Cn: nothing a spoken sentence needs.
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def validate_disclosure(text: object) -> str:
    """The disclosure template, stripped; ValueError (a message for the ``disclosure`` field) when it is
    empty, too long, holds control characters or a placeholder other than ``{company}``."""
    if not isinstance(text, str):
        raise ValueError("must be text")
    text = text.strip()
    if not text:
        raise ValueError("must not be empty: every call discloses that the caller is an AI")
    if len(text) > DISCLOSURE_MAX_LENGTH:
        raise ValueError(f"at most {DISCLOSURE_MAX_LENGTH} characters")
    if _has_control(text):
        raise ValueError("must not contain control characters (line breaks, tabs, invisible marks)")
    for match in _PLACEHOLDER.finditer(text):
        if match.group(1) not in _ALLOWED:
            raise ValueError(f"unknown placeholder {{{match.group(1)}}}: only {{company}} is allowed")
    if "{" in _PLACEHOLDER.sub("", text) or "}" in _PLACEHOLDER.sub("", text):
        raise ValueError("unbalanced braces: use {company} for the company's name")
    return text


def clean_prompt_text(text: str, *, max_length: int) -> str:
    """Text from a tenant made safe to put in a prompt: control characters become spaces, runs of spaces
    one, and it is cut to ``max_length``."""
    cleaned = "".join(" " if unicodedata.category(ch).startswith("C") else ch for ch in text)
    return " ".join(cleaned.split())[:max_length]


def disclosure_text(template: str, *, company: str, recording: bool) -> str:
    """What the agent says first: the template with ``{company}`` filled in, then the recording notice when
    the call is recorded. A stored template that no longer passes :func:`validate_disclosure` (edited
    around the service) falls back to the default, never dropped: the disclosure is always said."""
    try:
        template = validate_disclosure(template)
    except ValueError:
        template = DEFAULT_DISCLOSURE
    text = template.replace("{company}", clean_prompt_text(company, max_length=COMPANY_MAX_LENGTH))
    # The media worker quotes the greeting in the agent's prompt (Say exactly: "..."): no quote may end it.
    text = text.replace('"', "'")
    return f"{text} {RECORDING_NOTICE}" if recording else text
