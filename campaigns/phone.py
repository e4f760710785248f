"""Phone numbers: parsing to E.164 and the time zones a number belongs to (phonenumbers' metadata).

Numbers must be given in international form (``+<country code>...``): campaigns span countries and
guessing a default region would silently dial the wrong country.
"""

from __future__ import annotations

import phonenumbers
from django.conf import settings
from phonenumbers import timezone as phonenumber_timezones

from orchestrator.errors import InvalidInput

_UNKNOWN_TIMEZONE = "Etc/Unknown"


def _is_test_number(e164: str) -> bool:
    prefixes: list[str] = getattr(settings, "PHONE_TEST_PREFIXES", [])
    return any(prefix and e164.startswith(prefix) for prefix in prefixes)


def normalize_phone_number(raw: str, *, field: str = "phone_number") -> str:
    """``raw`` as E.164 (``+15551234567``); InvalidInput naming ``field`` if it is not a valid number.

    Numbers under a ``PHONE_TEST_PREFIXES`` prefix only need to be possible (right length), so the
    simulator's fictional numbers can be used in demos.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidInput(field, "is required")
    if not text.startswith("+"):
        raise InvalidInput(
            field, f"{text!r} must be in international form, starting with + and the country code"
        )
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidInput(field, f"{text!r} is not a phone number ({exc})") from exc
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if phonenumbers.is_valid_number(parsed):
        return e164
    if _is_test_number(e164) and phonenumbers.is_possible_number(parsed):
        return e164
    raise InvalidInput(field, f"{text!r} is not a valid phone number")


def timezones_for_number(e164: str) -> tuple[str, ...]:
    """The IANA time zones the number may be in (several for e.g. Russian or some mobile numbers); empty
    when phonenumbers does not know."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = tuple(phonenumber_timezones.time_zones_for_number(parsed))
    return tuple(zone for zone in zones if zone != _UNKNOWN_TIMEZONE)


def timezone_for_number(e164: str) -> str:
    """The number's time zone when it is unambiguous, else ``""`` (callers must then be conservative)."""
    zones = timezones_for_number(e164)
    return zones[0] if len(zones) == 1 else ""
