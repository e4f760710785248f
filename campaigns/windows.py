"""Calling windows: when a callee may be dialed, in the callee's local time (DESIGN §5 rule 4).

A campaign stores its windows as JSON, one list of ``["HH:MM", "HH:MM"]`` intervals per weekday (a missing
day is closed; ``"24:00"`` is allowed as an end and means midnight at the end of that day)::

    {"mon": [["09:00", "17:00"]], "tue": [["09:00", "12:00"], ["13:00", "17:00"]], "sat": []}

On top of the windows, hard bounds (08:00–21:00 local unless a tenant's jurisdiction passes other
``Bounds``) clip every interval: nothing here ever answers "open" outside them.

**Most restrictive.** A number can map to several time zones (a mobile range spanning a country, an area
code straddling a zone line). We cannot know which one the callee is in, so a lead is open only when it is
open in *every* candidate zone: the open periods are intersected. A number that maps to zones too far apart
for any overlap is simply never open; give the contact an explicit timezone (``zones_for_contact``) for that.

**DST.** Each (zone, local day, interval ``[a, b)``) becomes exactly one contiguous span of real time, and
every instant in that span has a local wall time inside ``[a, b)``:

* *Spring forward (gap).* A boundary that does not exist that day is taken at the instant the clock jumps
  past it: a window starting at 02:30 on a day where 02:00–03:00 is skipped opens at 03:00 (it is not
  skipped), and one ending at 02:30 closes at 03:00 new time, i.e. right after 01:59:59 old time.
* *Fall back (fold).* The end is taken at its *first* occurrence, and the start at the *latest* occurrence
  that precedes that end. So the repeated hour never opens a window twice, and never reopens it for the
  second pass of wall times that are "inside" by the clock (never dial at a wall time outside the window);
  a window lying wholly inside the repeated hour opens once, during the first pass.

With the default 08:00–21:00 bounds neither case arises in any zone whose transitions happen at night, but
tenants may pass other bounds, and the rules keep ``is_open`` and ``next_opening`` consistent either way.

Everything here is pure Python (``phonenumbers`` + ``zoneinfo``): no Django, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone

__all__ = [
    "DEFAULT_BOUNDS",
    "DEFAULT_WINDOWS",
    "HARD_END",
    "HARD_START",
    "MIDNIGHT",
    "WEEKDAYS",
    "Bounds",
    "CallingWindows",
    "callee_timezones",
    "is_open",
    "is_valid_timezone",
    "next_opening",
    "parse_windows",
    "window_closes_at",
    "zones_for_contact",
]

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: As the *end* of an interval (or of ``Bounds``), ``MIDNIGHT`` means 24:00 — the end of that day.
MIDNIGHT = time(0)

HARD_START = time(8)
HARD_END = time(21)

_DAY = 86_400
_HHMM = re.compile(r"(?P<h>\d{2}):(?P<m>\d{2})")
_UNKNOWN_ZONE = "Etc/Unknown"

Interval = tuple[time, time]
# Seconds since local midnight: [start, end), end up to 86 400.
_Secs = tuple[int, int]
# A span of real time, both ends aware UTC datetimes: [start, end).
_Span = tuple[datetime, datetime]


# ------------------------------------------------------------------------------------------ time helpers


def _start_secs(t: time) -> int:
    return t.hour * 3600 + t.minute * 60 + t.second


def _end_secs(t: time) -> int:
    """An end of 00:00 can only mean 24:00 (an end must be after its start)."""
    secs = _start_secs(t)
    return _DAY if secs == 0 else secs


def _fmt(secs: int) -> str:
    return f"{secs // 3600:02d}:{secs % 3600 // 60:02d}"


def _check_time(t: object, what: str) -> None:
    if not isinstance(t, time):
        raise ValueError(f"{what}: expected a datetime.time, got {type(t).__name__}")
    if t.tzinfo is not None or t.second or t.microsecond:
        raise ValueError(f"{what}: must be a naive whole-minute time, got {t.isoformat()}")


# ---------------------------------------------------------------------------------------------- bounds


@dataclass(frozen=True)
class Bounds:
    """Hard local-time limits that every calling window is clipped to. ``end=MIDNIGHT`` means 24:00."""

    start: time = HARD_START
    end: time = HARD_END

    def __post_init__(self) -> None:
        _check_time(self.start, "bounds.start")
        _check_time(self.end, "bounds.end")
        if _end_secs(self.end) <= _start_secs(self.start):
            raise ValueError(
                f"bounds: end {_fmt(_end_secs(self.end))} is not after start {_fmt(_start_secs(self.start))}"
            )

    @property
    def seconds(self) -> _Secs:
        return _start_secs(self.start), _end_secs(self.end)


DEFAULT_BOUNDS = Bounds()


# --------------------------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class CallingWindows:
    """Per-weekday (index 0 = Monday) sorted, non-overlapping ``(start, end)`` local-time intervals.

    An interval end of ``MIDNIGHT`` (``time(0)``) means 24:00. Intervals may touch (``12:00`` end, ``12:00``
    start); they then behave as one opening.
    """

    days: tuple[tuple[Interval, ...], ...] = field(default=((),) * 7)

    def __post_init__(self) -> None:
        if not isinstance(self.days, tuple) or len(self.days) != 7:
            raise ValueError("calling_windows: expected a tuple of 7 weekdays (Monday first)")
        for wd, intervals in enumerate(self.days):
            previous_end = -1
            for i, interval in enumerate(intervals):
                where = f"calling_windows.{WEEKDAYS[wd]}[{i}]"
                start, end = interval
                _check_time(start, where)
                _check_time(end, where)
                s, e = _start_secs(start), _end_secs(end)
                if e <= s:
                    raise ValueError(f"{where}: end {_fmt(e)} is not after start {_fmt(s)}")
                if s < previous_end:
                    raise ValueError(f"{where}: starts at {_fmt(s)}, before the previous interval ends")
                previous_end = e

    def seconds(self, weekday: int) -> tuple[_Secs, ...]:
        return tuple((_start_secs(s), _end_secs(e)) for s, e in self.days[weekday])

    def to_json(self) -> dict[str, list[list[str]]]:
        """The stored form, every weekday present (``[]`` = closed); ``parse_windows`` round-trips it."""
        return {WEEKDAYS[wd]: [[_fmt(s), _fmt(e)] for s, e in self.seconds(wd)] for wd in range(7)}


def _parse_hhmm(value: object, where: str, *, is_end: bool) -> int:
    if not isinstance(value, str):
        raise ValueError(f'{where}: expected a "HH:MM" string, got {value!r}')
    match = _HHMM.fullmatch(value)
    if match is None:
        raise ValueError(f'{where}: {value!r} is not a "HH:MM" time')
    hours, minutes = int(match["h"]), int(match["m"])
    if hours == 24 and minutes == 0:
        if not is_end:
            raise ValueError(f"{where}: 24:00 is only allowed as an end")
        return _DAY
    if hours > 23 or minutes > 59:
        raise ValueError(f'{where}: {value!r} is not a valid "HH:MM" time')
    return hours * 3600 + minutes * 60


def _secs_to_time(secs: int) -> time:
    return MIDNIGHT if secs == _DAY else time(secs // 3600, secs % 3600 // 60)


def parse_windows(data: object, *, name: str = "calling_windows") -> CallingWindows:
    """Validate the stored JSON form. ``ValueError`` messages name the offending key and index."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{name}: expected an object of weekday -> intervals, got {type(data).__name__}")
    days: list[tuple[Interval, ...]] = [() for _ in range(7)]
    for key, value in data.items():
        if key not in WEEKDAYS:
            raise ValueError(f"{name}.{key}: unknown day (expected one of {', '.join(WEEKDAYS)})")
        where_day = f"{name}.{key}"
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ValueError(f"{where_day}: expected a list of [start, end] intervals")
        parsed: list[tuple[int, int, int]] = []  # (start, end, original index)
        for i, item in enumerate(value):
            where = f"{where_day}[{i}]"
            if not isinstance(item, Sequence) or isinstance(item, str) or len(item) != 2:
                raise ValueError(f'{where}: expected ["HH:MM", "HH:MM"], got {item!r}')
            start = _parse_hhmm(item[0], f"{where}.start", is_end=False)
            end = _parse_hhmm(item[1], f"{where}.end", is_end=True)
            if end <= start:
                raise ValueError(f"{where}: end {_fmt(end)} is not after start {_fmt(start)}")
            parsed.append((start, end, i))
        parsed.sort()
        for (s1, e1, i1), (s2, e2, i2) in zip(parsed, parsed[1:], strict=False):
            if s2 < e1:
                a, b = sorted((i1, i2))
                raise ValueError(
                    f"{where_day}[{b}]: overlaps {where_day}[{a}] "
                    f"({_fmt(s1)}-{_fmt(e1)} and {_fmt(s2)}-{_fmt(e2)})"
                )
        days[WEEKDAYS.index(key)] = tuple((_secs_to_time(s), _secs_to_time(e)) for s, e, _ in parsed)
    return CallingWindows(tuple(days))


DEFAULT_WINDOWS = CallingWindows(tuple(((time(9), time(17)),) if wd < 5 else () for wd in range(7)))


# ------------------------------------------------------------------------------------------ time zones


def is_valid_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA zone this system knows (validate explicit contact timezones with it)."""
    if not name or name == _UNKNOWN_ZONE:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def callee_timezones(e164: str, *, fallback: str) -> tuple[str, ...]:
    """Candidate zones of a number (several when its range spans zones); ``(fallback,)`` when unknown."""
    if not is_valid_timezone(fallback):
        raise ValueError(f"fallback timezone {fallback!r} is not a known IANA zone")
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return (fallback,)
    zones = tuple(sorted({z for z in phone_timezone.time_zones_for_number(number) if is_valid_timezone(z)}))
    return zones or (fallback,)


def zones_for_contact(e164: str, explicit_tz: str, fallback: str) -> tuple[str, ...]:
    """A contact's explicit timezone wins; otherwise the number's zones (or the fallback).

    An explicit timezone that is not a known zone is ignored (it should have been rejected on input with
    ``is_valid_timezone``): the lead falls back to the number's zones instead of failing the dispatcher.
    """
    if explicit_tz and is_valid_timezone(explicit_tz):
        return (explicit_tz,)
    return callee_timezones(e164, fallback=fallback)


def _resolve_zones(zones: Iterable[str]) -> list[ZoneInfo]:
    if isinstance(zones, str):
        raise ValueError("zones: expected a sequence of zone names, not a single string")
    names = list(zones)
    if not names:
        raise ValueError("zones: at least one time zone is required")
    resolved: list[ZoneInfo] = []
    for name in names:
        if not is_valid_timezone(name):
            raise ValueError(f"zones: {name!r} is not a known IANA zone")
        resolved.append(ZoneInfo(name))
    return resolved


def _require_aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{what}: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what}: must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(UTC)


# ----------------------------------------------------------------------------------------- span algebra


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _occurrences(zone: ZoneInfo, naive: datetime) -> list[datetime]:
    """The instants (UTC, ascending) at which the local clock reads ``naive``: 0 (gap), 1, or 2 (fold)."""
    found: set[datetime] = set()
    for fold in (0, 1):
        instant = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if _wall(instant, zone) == naive:
            found.add(instant)
    return sorted(found)


def _gap_crossing(zone: ZoneInfo, naive: datetime) -> datetime:
    """For a wall time skipped by a gap: the instant the clock jumps past it (exact to the second)."""
    a = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    b = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = int(min(a, b).timestamp()), int(max(a, b).timestamp()) + 1
    # Invariant: wall(lo) < naive <= wall(hi); the wall clock is monotonic here (one transition).
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), zone) >= naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _day_span(zone: ZoneInfo, day: date, start: int, end: int) -> _Span | None:
    """The real-time span of local ``day``'s interval ``[start, end)`` seconds; None if it never opens."""
    midnight = datetime.combine(day, MIDNIGHT)
    naive_start = midnight + timedelta(seconds=start)
    naive_end = midnight + timedelta(seconds=end)
    end_occ = _occurrences(zone, naive_end)
    span_end = end_occ[0] if end_occ else _gap_crossing(zone, naive_end)
    start_occ = _occurrences(zone, naive_start)
    if start_occ:
        before_end = [t for t in start_occ if t < span_end]
        if not before_end:
            return None
        span_start = before_end[-1]
    else:
        span_start = _gap_crossing(zone, naive_start)
    return (span_start, span_end) if span_start < span_end else None


def _effective(windows: CallingWindows, bounds: Bounds, weekday: int) -> list[_Secs]:
    lo, hi = bounds.seconds
    out = []
    for s, e in windows.seconds(weekday):
        s, e = max(s, lo), min(e, hi)
        if s < e:
            out.append((s, e))
    return out


def _merge(spans: Iterable[_Span]) -> list[_Span]:
    merged: list[_Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _zone_spans(
    windows: CallingWindows, zone: ZoneInfo, bounds: Bounds, lo: datetime, hi: datetime
) -> list[_Span]:
    """Merged open spans of one zone that intersect ``[lo, hi]`` (spans may extend beyond it)."""
    first = lo.astimezone(zone).date() - timedelta(days=1)
    last = hi.astimezone(zone).date() + timedelta(days=1)
    spans: list[_Span] = []
    day = first
    while day <= last:
        for start, end in _effective(windows, bounds, day.weekday()):
            span = _day_span(zone, day, start, end)
            if span is not None and span[1] > lo and span[0] <= hi:
                spans.append(span)
        day += timedelta(days=1)
    return _merge(spans)


def _intersect(a: list[_Span], b: list[_Span]) -> list[_Span]:
    out: list[_Span] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i][0], b[j][0])
        end = min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] <= b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _open_spans(
    windows: CallingWindows, zones: Iterable[str], bounds: Bounds, lo: datetime, hi: datetime
) -> list[_Span]:
    result: list[_Span] | None = None
    for zone in _resolve_zones(zones):
        spans = _zone_spans(windows, zone, bounds, lo, hi)
        result = spans if result is None else _intersect(result, spans)
        if not result:
            return []
    return result or []


# ------------------------------------------------------------------------------------------ public API


def is_open(
    windows: CallingWindows, zones: Sequence[str], at: datetime, bounds: Bounds = DEFAULT_BOUNDS
) -> bool:
    """Whether ``at`` (timezone-aware) is inside the windows and the bounds in every one of ``zones``."""
    instant = _require_aware(at, "at")
    return any(s <= instant < e for s, e in _open_spans(windows, zones, bounds, instant, instant))


def next_opening(
    windows: CallingWindows,
    zones: Sequence[str],
    after: datetime,
    bounds: Bounds = DEFAULT_BOUNDS,
    horizon_days: int = 14,
) -> datetime | None:
    """The earliest instant ``>= after`` at which ``is_open`` holds, in UTC; ``after`` itself when open.

    None when there is none within ``horizon_days`` (inclusive of ``after + horizon_days``).
    """
    instant = _require_aware(after, "after")
    if horizon_days < 0:
        raise ValueError(f"horizon_days: must be >= 0, got {horizon_days}")
    limit = instant + timedelta(days=horizon_days)
    for start, end in _open_spans(windows, zones, bounds, instant, limit):
        if end > instant:
            candidate = max(start, instant)
            return candidate if candidate <= limit else None
    return None


def window_closes_at(
    windows: CallingWindows,
    zones: Sequence[str],
    at: datetime,
    bounds: Bounds = DEFAULT_BOUNDS,
    horizon_days: int = 14,
) -> datetime | None:
    """When the opening that contains ``at`` ends (UTC, exclusive); None if closed at ``at``.

    With bounds narrower than a whole day this is always within a day. If the opening lasts beyond
    ``at + horizon_days`` (bounds of 00:00–24:00 and windows covering every day), that limit is returned:
    the opening lasts at least until then.
    """
    instant = _require_aware(at, "at")
    if horizon_days <= 0:
        raise ValueError(f"horizon_days: must be > 0, got {horizon_days}")
    limit = instant + timedelta(days=horizon_days)
    for start, end in _open_spans(windows, zones, bounds, instant, limit):
        if start <= instant < end:
            return min(end, limit)
    return None
