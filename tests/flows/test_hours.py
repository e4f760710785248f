"""Business hours and rotations: the flow's timezone, weekdays, holidays, DST, and who is on call when."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from flows.hours import OpenRange, Override, is_open, next_opening, rotation_on_call
from flows.models import RotationOverride
from flows.selectors import flow_is_open, flow_next_opening, rotation_on_call_person

NY = ZoneInfo("America/New_York")
WEEKDAYS_9_TO_5 = [OpenRange(d, time(9), time(17)) for d in range(5)]


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY)


def test_open_in_local_hours_and_closed_outside_weekends_and_holidays() -> None:
    tz = "America/New_York"
    assert is_open(ranges=WEEKDAYS_9_TO_5, holidays=[], tz=tz, at=ny(2026, 1, 5, 9, 0))
    assert is_open(ranges=WEEKDAYS_9_TO_5, holidays=[], tz=tz, at=ny(2026, 1, 5, 16, 59))
    assert not is_open(ranges=WEEKDAYS_9_TO_5, holidays=[], tz=tz, at=ny(2026, 1, 5, 17, 0))
    assert not is_open(ranges=WEEKDAYS_9_TO_5, holidays=[], tz=tz, at=ny(2026, 1, 10, 12, 0))  # Saturday
    assert not is_open(ranges=WEEKDAYS_9_TO_5, holidays=[date(2026, 1, 5)], tz=tz, at=ny(2026, 1, 5, 12, 0))
    # The same UTC instant is 14:00 in New York (open) but 20:00 in Paris (closed).
    instant = datetime(2026, 1, 5, 19, 0, tzinfo=UTC)
    assert is_open(ranges=WEEKDAYS_9_TO_5, holidays=[], tz=tz, at=instant)
    assert not is_open(ranges=WEEKDAYS_9_TO_5, holidays=[], tz="Europe/Paris", at=instant)


def test_several_ranges_a_day_and_midnight_close() -> None:
    ranges = [OpenRange(0, time(8), time(12)), OpenRange(0, time(13), time(0))]
    assert is_open(ranges=ranges, holidays=[], tz="UTC", at=datetime(2026, 1, 5, 23, 59, tzinfo=UTC))
    assert not is_open(ranges=ranges, holidays=[], tz="UTC", at=datetime(2026, 1, 5, 12, 30, tzinfo=UTC))


def test_next_opening_skips_nights_weekends_and_holidays_and_follows_dst() -> None:
    tz = "America/New_York"
    friday_night = ny(2026, 1, 9, 20, 0)
    assert next_opening(ranges=WEEKDAYS_9_TO_5, holidays=[], tz=tz, after=friday_night) == ny(
        2026, 1, 12, 9, 0
    )
    assert next_opening(
        ranges=WEEKDAYS_9_TO_5, holidays=[date(2026, 1, 12)], tz=tz, after=friday_night
    ) == ny(2026, 1, 13, 9, 0)
    # DST starts on Sunday 2026-03-08: Monday's 09:00 is 13:00 UTC, not 14:00.
    opening = next_opening(ranges=WEEKDAYS_9_TO_5, holidays=[], tz=tz, after=ny(2026, 3, 6, 18, 0))
    assert opening is not None and opening.astimezone(UTC) == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    assert next_opening(ranges=[], holidays=[], tz=tz, after=friday_night) is None


def on_call(
    handoff: str, when: datetime, overrides: list[Override] | None = None, members: list[int] | None = None
) -> int | None:
    return rotation_on_call(
        members=[1, 2, 3] if members is None else members,
        handoff=handoff,
        handoff_weekday=0,
        handoff_time=time(9),
        start_date=date(2026, 1, 5),
        tz="America/New_York",
        at=when,
        overrides=overrides or [],
    )


def test_weekly_and_daily_rotations_and_overrides() -> None:
    assert on_call("weekly", ny(2026, 1, 5, 9, 0)) == 1
    assert on_call("weekly", ny(2026, 1, 12, 8, 59)) == 1
    assert on_call("weekly", ny(2026, 1, 12, 9, 0)) == 2
    assert on_call("weekly", ny(2026, 1, 19, 10, 0)) == 3
    assert on_call("weekly", ny(2026, 1, 26, 10, 0)) == 1
    assert on_call("weekly", ny(2026, 1, 5, 8, 0)) == 3  # before the first hand-off: the last turn
    assert on_call("daily", ny(2026, 1, 6, 10, 0)) == 2
    assert on_call("daily", ny(2026, 1, 7, 8, 0)) == 2
    # Across the DST change the hand-off stays at 09:00 local.
    before = on_call("daily", ny(2026, 3, 9, 8, 59))
    assert before is not None and on_call("daily", ny(2026, 3, 9, 9, 0)) == before % 3 + 1
    overrides = [
        Override(7, ny(2026, 1, 13, 0, 0), ny(2026, 1, 14, 0, 0), order=1),
        Override(8, ny(2026, 1, 13, 12, 0), ny(2026, 1, 13, 13, 0), order=2),
    ]
    assert on_call("weekly", ny(2026, 1, 13, 10, 0), overrides) == 7
    assert on_call("weekly", ny(2026, 1, 13, 12, 30), overrides) == 8  # the later override wins
    assert on_call("weekly", ny(2026, 1, 14, 0, 0), overrides) == 2  # half-open: ended
    assert on_call("weekly", ny(2026, 1, 14), members=[]) is None


@pytest.mark.django_db
def test_selectors_read_the_rows(setup) -> None:
    flow = setup.flow
    assert flow_is_open(flow=flow, at=ny(2026, 1, 5, 14, 0))
    assert not flow_is_open(flow=flow, at=ny(2026, 1, 5, 22, 0))
    assert not flow_is_open(flow=flow, at=ny(2026, 12, 25, 11, 0))  # a holiday
    assert flow_next_opening(flow=flow, after=ny(2026, 12, 24, 18, 0)) == ny(2026, 12, 28, 9, 0)
    rotation = setup.rotation
    assert rotation_on_call_person(rotation=rotation, at=ny(2026, 1, 6, 3, 0)) == setup.bob
    assert rotation_on_call_person(rotation=rotation, at=ny(2026, 1, 13, 3, 0)) == setup.carol
    RotationOverride.objects.create(
        rotation=rotation,
        person=setup.alice,
        starts_at=ny(2026, 1, 13),
        ends_at=ny(2026, 1, 13) + timedelta(days=1),
    )
    assert rotation_on_call_person(rotation=rotation, at=ny(2026, 1, 13, 3, 0)) == setup.alice
    assert rotation_on_call_person(rotation=rotation, at=ny(2026, 1, 14, 3, 0)) == setup.carol
