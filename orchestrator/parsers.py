"""The REST API's JSON parser: DRF's, with the limits a public endpoint needs (DESIGN.md §5 rule 6).

A body is refused with a 400 JSON error, before anything reads it further, when it is

* nested deeper than :data:`MAX_JSON_DEPTH` arrays/objects: counted by a flat scan of the text, without
  recursion, *before* ``json.loads`` (whose decoder, and every serializer after it, recurses once per
  level: a 2 KB body of 990 brackets would otherwise end in ``RecursionError``, a 500);
* not finite (``1e999`` decodes to infinity, which no field can store);
* holding a NUL character or an unpaired surrogate (``"\\u0000"``, ``"\\ud800"``) in any string, key or
  value: PostgreSQL cannot store the first and no UTF-8 text can hold the second, so they would fail deep
  in the database with a 500; the error names the top-level field that holds it.

A body larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE`` never reaches the parser: Django refuses to read it
(``RequestDataTooBig``), which ``orchestrator.api.exception_handler`` answers with a JSON 413.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

#: Deepest nesting of arrays and objects a JSON body may have (the API's own shapes need 4).
MAX_JSON_DEPTH = 32

# One token of the depth scan: a whole string (skipped, brackets inside it do not count) or a bracket.
_DEPTH_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
# A character no stored text may hold: NUL, or half of a surrogate pair left on its own.
_OPENERS = frozenset("[{")
_CLOSERS = frozenset("]}")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON ``text`` nests arrays/objects deeper than ``limit``. A flat scan (no recursion);
    brackets inside strings do not count. Malformed text is left to the decoder to refuse."""
    depth = 0
    for match in _DEPTH_TOKEN.finditer(text):
        lexeme = match.group()
        if lexeme in _OPENERS:
            depth += 1
            if depth > limit:
                return True
        elif lexeme in _CLOSERS:
            depth -= 1
    return False


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def unstorable_text_at(data: Any) -> str | None:
    """The top-level key (or ``""`` for the body itself) of the first string holding a NUL or an unpaired
    surrogate anywhere in ``data``, keys included; None when there is none. Iterative: ``data`` is
    already known to be shallow, but no input should decide how deep the stack goes."""
    roots = list(data.items()) if isinstance(data, dict) else [("", data)]
    for root, value in roots:
        if _UNSTORABLE.search(root):
            return ""  # the name itself cannot be shown
        stack: list[Any] = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                if _UNSTORABLE.search(item):
                    return str(root)
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
    return None


class JSONParser(parsers.JSONParser):
    """``application/json`` with the limits of the module docstring."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        try:
            text = codecs.getreader(encoding)(stream).read() if stream is not None else ""
        except UnicodeDecodeError as exc:
            raise ParseError(f"JSON parse error - not {encoding} text (byte {exc.start})") from exc
        if json_depth_exceeds(text):
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
        try:
            data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as exc:  # RecursionError: belt and braces, the scan ran first
            raise ParseError(f"JSON parse error - {exc}") from exc
        where = unstorable_text_at(data)
        if where is not None:
            message = "text must not contain NUL characters or unpaired surrogates"
            if where:
                raise ValidationError({where: [message]})
            raise ParseError(f"JSON parse error - {message}")
        return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
