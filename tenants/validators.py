"""Field validators shared by the tenancy and campaign models and services."""

from __future__ import annotations

import functools
import zoneinfo

from django.core.exceptions import ValidationError


@functools.cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_timezone_name(name: str) -> bool:
    """Whether ``name`` is an IANA time zone name known to zoneinfo (e.g. ``Europe/Paris``)."""
    return name in _known_timezones()


def validate_timezone(value: str) -> None:
    # Checked against the tz database's list rather than by loading ZoneInfo(value): that would also accept
    # file-system paths under the zoneinfo directory ("posix/...", "localtime") that are not zone names.
    if not is_timezone_name(value):
        raise ValidationError(
            "%(value)s is not an IANA time zone name (e.g. Europe/Paris).", params={"value": value}
        )
