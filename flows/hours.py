"""Business hours and on-call rotations as pure functions of plain values (no Django): whether a flow is
open at an instant, when it next opens, and who a rotation puts on call at an instant.

Times are evaluated in the flow's (or rotation's) IANA zone, so a daylight-saving change moves UTC
instants, not local opening hours. A range ``opens``–``closes`` is half-open; ``closes`` = 00:00 means
midnight (the end of that day).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MIDNIGHT = time(0, 0)


@dataclass(frozen=True, slots=True)
class OpenRange:
    weekday: int  # 0 = Monday
    opens: time
    closes: time  # 00:00 = midnight (end of the day)

    def contains(self, local: time) -> bool:
        if local < self.opens:
            return False
        return self.closes == MIDNIGHT or local < self.closes


def is_open(*, ranges: Iterable[OpenRange], holidays: Iterable[date], tz: str, at: datetime) -> bool:
    """Whether ``at`` (aware) falls in one of ``ranges`` of its local weekday, that day not a holiday."""
    local = at.astimezone(ZoneInfo(tz))
    if local.date() in set(holidays):
        return False
    wall = local.time().replace(tzinfo=None)
    return any(r.weekday == local.weekday() and r.contains(wall) for r in ranges)


def next_opening(
    *,
    ranges: Sequence[OpenRange],
    holidays: Iterable[date],
    tz: str,
    after: datetime,
    horizon_days: int = 400,
) -> datetime | None:
    """The first instant at or after ``after`` when the flow is open (``after`` itself when open now);
    None when it never opens within ``horizon_days``."""
    if not ranges:
        return None
    zone = ZoneInfo(tz)
    closed = set(holidays)
    if is_open(ranges=ranges, holidays=closed, tz=tz, at=after):
        return after
    local_after = after.astimezone(zone)
    day = local_after.date()
    for offset in range(horizon_days + 1):
        current = day + timedelta(days=offset)
        if current in closed:
            continue
        starts = sorted(r.opens for r in ranges if r.weekday == current.weekday())
        for opens in starts:
            candidate = datetime.combine(current, opens, tzinfo=zone)
            if candidate >= local_after:
                return candidate
    return None


# ------------------------------------------------------------------------------------------ rotations


@dataclass(frozen=True, slots=True)
class Override:
    person_id: int
    starts_at: datetime
    ends_at: datetime
    order: int = 0  # higher wins (created later)


def rotation_on_call(
    *,
    members: Sequence[int],
    handoff: str,
    handoff_weekday: int,
    handoff_time: time,
    start_date: date,
    tz: str,
    at: datetime,
    overrides: Iterable[Override] = (),
) -> int | None:
    """Who is on call at ``at``: an override covering ``at`` (the latest created wins), else the member
    whose turn it is. Turns change at the hand-off (``handoff_time`` local, each day or each week on
    ``handoff_weekday``); the first member's turn starts at the first hand-off on or after ``start_date``.
    Before that first hand-off the last member is on call (the turn that "ended" then). None without
    members and without a covering override."""
    covering = [o for o in overrides if o.starts_at <= at < o.ends_at]
    if covering:
        return max(covering, key=lambda o: (o.order, o.starts_at)).person_id
    if not members:
        return None
    zone = ZoneInfo(tz)
    first = datetime.combine(start_date, handoff_time, tzinfo=zone)
    if handoff == "weekly":
        while first.weekday() != handoff_weekday:
            first = datetime.combine(first.date() + timedelta(days=1), handoff_time, tzinfo=zone)
    period_days = 7 if handoff == "weekly" else 1
    local = at.astimezone(zone)
    # Count hand-offs by local calendar dates (a DST day is 23 or 25 hours long, the hand-off stays at its
    # wall-clock time).
    days = (local.date() - first.date()).days
    turns = days // period_days
    handoff_of_turn = datetime.combine(
        first.date() + timedelta(days=turns * period_days), handoff_time, tzinfo=zone
    )
    if local < handoff_of_turn:
        turns -= 1
    return members[turns % len(members)]
