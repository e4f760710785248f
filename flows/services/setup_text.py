"""Text a tenant supplies that later reaches a prompt, a spoken greeting or an SMS (flow instructions,
greetings, names, intake labels, SMS templates) is hostile input (DESIGN.md §5 rules 6 and 8):

* control characters are stripped (C0/C1, DEL; and the bidirectional overrides that make an SMS read
  differently from what it holds); multi-line fields keep ``\\n`` and ``\\t`` (``\\r\\n`` becomes ``\\n``),
  one-line fields turn any line break into a space;
* lengths are bounded (an InvalidInput naming the field when longer, never a silent cut);
* SMS templates may only use their own placeholders (``{person}``…), never attribute or index access
  (``{person.__class__}``) nor format specs: ``str.format`` runs them later;
* every URL in a text that is sent on (an SMS) must pass the operator's URL policy (tenants/urlpolicy.py).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

from orchestrator.errors import InvalidInput
from tenants.urlpolicy import UrlPolicy

# C0 and C1 controls and DEL, except tab and newline (kept in multi-line text); bidi embeddings, overrides
# and isolates (U+202A-202E, U+2066-2069), and the line/paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_LINE_BREAK = re.compile(r"\r\n|[\r\n\t]")
_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)

# Bounds (characters) of what a tenant may store.
NAME_MAX = 200
LABEL_MAX = 100
INSTRUCTIONS_MAX = 8000
GREETING_MAX = 500
SMS_TEMPLATE_MAX = 480  # three SMS segments
SPOKEN_MAX = 500


def clean_text(value: object, *, field: str, max_length: int, multiline: bool = False) -> str:
    """``value`` as stored text: control characters stripped, spaces trimmed, at most ``max_length``
    characters (InvalidInput naming ``field`` when longer or not text)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(field, "must be text")
    text = value.replace("\r\n", "\n")
    text = _LINE_BREAK.sub(lambda m: m.group(0) if multiline and m.group(0) in "\n\t" else " ", text)
    text = _CONTROL.sub("", text).strip()
    if len(text) > max_length:
        raise InvalidInput(field, f"is {len(text)} characters long: at most {max_length}")
    return text


def clean_name(value: object, *, field: str = "name", max_length: int = NAME_MAX) -> str:
    """A one-line, non-empty name."""
    text = clean_text(value, field=field, max_length=max_length)
    if not text:
        raise InvalidInput(field, "must not be empty")
    return text


def clean_template(value: object, *, field: str, placeholders: Iterable[str], max_length: int) -> str:
    """An SMS template: clean text whose ``{...}`` are only the given placeholders, with URLs allowed by
    the URL policy."""
    text = clean_text(value, field=field, max_length=max_length, multiline=True)
    allowed = set(placeholders)
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InvalidInput(field, f"has an unmatched brace ({exc}); write {{{{ or }}}} for a brace") from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in allowed or spec or conversion:
            names = ", ".join(f"{{{n}}}" for n in sorted(allowed))
            raise InvalidInput(
                field, f"{{{name}}} is not a placeholder here (use {names}, or {{{{ for a brace)"
            )
    check_urls(text, field=field)
    return text


def check_urls(text: str, *, field: str) -> None:
    """Every http(s) URL in ``text`` must pass the operator's URL policy (public hosts only by default)."""
    policy = UrlPolicy.from_settings()
    for match in _URL.finditer(text):
        policy.check_url(match.group(0).rstrip(".,;:!?)"), field=field)
