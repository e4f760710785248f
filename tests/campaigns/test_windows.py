"""Calling windows (DESIGN §5 rule 4): parsing, zones from numbers, hard bounds, DST, and properties.

Pure functions: no database.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.windows import (
    DEFAULT_BOUNDS,
    DEFAULT_WINDOWS,
    HARD_END,
    HARD_START,
    MIDNIGHT,
    Bounds,
    CallingWindows,
    callee_timezones,
    is_open,
    next_opening,
    parse_windows,
    window_closes_at,
    zones_for_contact,
)

NY = ("America/New_York",)
BERLIN = ("Europe/Berlin",)
ALL_DAY = Bounds(time(0), MIDNIGHT)  # lets DST tests put windows in the small hours


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(zone: str, *parts: int) -> datetime:
    """``local(zone, year, month, day[, hour[, minute[, second]]])`` as an aware datetime."""
    year, month, day, hour, minute, second = (*parts, 0, 0, 0)[:6]
    return datetime(year, month, day, hour, minute, second, tzinfo=ZoneInfo(zone))


def every_day(*intervals: tuple[str, str]) -> CallingWindows:
    return parse_windows(
        {day: [list(i) for i in intervals] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    )


# --------------------------------------------------------------------------------------------- parsing


def test_parse_round_trips_and_sorts():
    data = {"mon": [["09:00", "17:00"]], "tue": [["13:00", "17:00"], ["09:00", "12:00"]], "sat": []}
    windows = parse_windows(data)
    assert windows.days[1] == ((time(9), time(12)), (time(13), time(17)))
    assert windows.days[5] == () and windows.days[6] == ()
    assert windows.to_json()["tue"] == [["09:00", "12:00"], ["13:00", "17:00"]]
    assert windows.to_json()["sun"] == []
    assert parse_windows(windows.to_json()) == windows


def test_24_00_is_an_end_meaning_midnight():
    windows = parse_windows({"fri": [["18:00", "24:00"]]})
    assert windows.days[4] == ((time(18), MIDNIGHT),)
    assert windows.to_json()["fri"] == [["18:00", "24:00"]]
    assert parse_windows(windows.to_json()) == windows


def test_touching_intervals_are_allowed():
    windows = parse_windows({"mon": [["09:00", "12:00"], ["12:00", "17:00"]]})
    monday_10 = local("America/New_York", 2024, 6, 3, 10)
    # Touching intervals form one opening.
    closes = window_closes_at(windows, NY, monday_10)
    assert closes == local("America/New_York", 2024, 6, 3, 17).astimezone(UTC)


def test_default_windows_are_weekdays_nine_to_five():
    assert DEFAULT_WINDOWS.to_json() == {
        **{day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
        "sat": [],
        "sun": [],
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"tue": [["09:00", "12:00"], ["13:00", "12:00"]]},
            "calling_windows.tue[1]: end 12:00 is not after start 13:00",
        ),
        ({"tue": [["09:00", "09:00"]]}, "calling_windows.tue[0]: end 09:00 is not after start 09:00"),
        ({"funday": [["09:00", "17:00"]]}, "calling_windows.funday: unknown day"),
        ({"Mon": [["09:00", "17:00"]]}, "calling_windows.Mon: unknown day"),
        ({"wed": [["9:00", "17:00"]]}, "calling_windows.wed[0].start: '9:00' is not a \"HH:MM\" time"),
        ({"wed": [["09:00", "25:00"]]}, "calling_windows.wed[0].end: '25:00' is not a valid \"HH:MM\" time"),
        ({"wed": [["09:60", "17:00"]]}, "calling_windows.wed[0].start: '09:60' is not a valid"),
        ({"wed": [["09:00", "17:00"], ["noon", "18:00"]]}, "calling_windows.wed[1].start: 'noon'"),
        ({"wed": [["09:00", 17]]}, 'calling_windows.wed[0].end: expected a "HH:MM" string'),
        ({"thu": [["24:00", "24:00"]]}, "calling_windows.thu[0].start: 24:00 is only allowed as an end"),
        ({"thu": [["09:00", "24:30"]]}, "calling_windows.thu[0].end: '24:30' is not a valid"),
        ({"fri": [["09:00"]]}, 'calling_windows.fri[0]: expected ["HH:MM", "HH:MM"]'),
        ({"fri": "09:00-17:00"}, "calling_windows.fri: expected a list of [start, end] intervals"),
        (
            {"sat": [["09:00", "12:00"], ["13:00", "17:00"], ["11:00", "13:30"]]},
            "calling_windows.sat[2]: overlaps calling_windows.sat[0]",
        ),
        (
            {"sun": [["10:00", "11:00"], ["09:00", "17:00"]]},
            "calling_windows.sun[1]: overlaps calling_windows.sun[0]",
        ),
        ([["09:00", "17:00"]], "calling_windows: expected an object"),
    ],
)
def test_parse_errors_name_the_offending_key(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_windows(data)


def test_dataclass_rejects_overlaps_built_in_code():
    with pytest.raises(ValueError, match=re.escape("calling_windows.mon[1]")):
        CallingWindows((((time(9), time(12)), (time(11), time(13))), (), (), (), (), (), ()))
    with pytest.raises(ValueError, match="7 weekdays"):
        CallingWindows(((),))


def test_bounds_validate():
    assert (DEFAULT_BOUNDS.start, DEFAULT_BOUNDS.end) == (HARD_START, HARD_END) == (time(8), time(21))
    with pytest.raises(ValueError, match="bounds: end 08:00 is not after start 21:00"):
        Bounds(time(21), time(8))


# ------------------------------------------------------------------------------------------ time zones


def test_new_york_number_is_new_york():
    assert callee_timezones("+12125551234", fallback="UTC") == NY


def test_unknown_or_invalid_numbers_use_the_fallback():
    assert callee_timezones("+1306", fallback="Europe/Paris") == ("Europe/Paris",)  # too short: Etc/Unknown
    assert callee_timezones("not a number", fallback="Europe/Paris") == ("Europe/Paris",)
    assert callee_timezones("2125551234", fallback="Europe/Paris") == ("Europe/Paris",)  # no country code
    with pytest.raises(ValueError, match="fallback"):
        callee_timezones("+12125551234", fallback="Mars/Olympus")


def test_multi_zone_numbers():
    # Idaho's 208 area code spans Mountain and Pacific time.
    assert callee_timezones("+12085551234", fallback="UTC") == ("America/Boise", "America/Los_Angeles")
    # Australian mobiles can be anywhere in the country.
    aus = callee_timezones("+61412345678", fallback="UTC")
    assert {"Australia/Perth", "Australia/Sydney", "Australia/Lord_Howe"} <= set(aus)


def test_explicit_contact_timezone_overrides_the_number():
    assert zones_for_contact("+12085551234", "America/Boise", "UTC") == ("America/Boise",)
    assert zones_for_contact("+12085551234", "", "UTC") == ("America/Boise", "America/Los_Angeles")
    # A bad explicit zone is ignored: the answer can only get more restrictive.
    assert zones_for_contact("+12125551234", "Nowhere/Special", "UTC") == NY


def test_several_zones_get_the_intersection():
    zones = callee_timezones("+12085551234", fallback="UTC")
    monday_6_pacific = local("America/Los_Angeles", 2024, 6, 3, 6)
    opening = next_opening(DEFAULT_WINDOWS, zones, monday_6_pacific)
    # 09:00 in Boise is only 08:00 in Los Angeles; both are open from 09:00 Pacific (10:00 Mountain) ...
    assert opening == local("America/Los_Angeles", 2024, 6, 3, 9).astimezone(UTC)
    assert not is_open(DEFAULT_WINDOWS, zones, local("America/Boise", 2024, 6, 3, 9, 30))
    assert is_open(DEFAULT_WINDOWS, ("America/Boise",), local("America/Boise", 2024, 6, 3, 9, 30))
    # ... until 17:00 Mountain (16:00 Pacific).
    closes = window_closes_at(DEFAULT_WINDOWS, zones, opening)
    assert closes == local("America/Boise", 2024, 6, 3, 17).astimezone(UTC)
    assert not is_open(DEFAULT_WINDOWS, zones, local("America/Los_Angeles", 2024, 6, 3, 16, 30))


def test_zones_too_far_apart_never_open():
    # Perth (UTC+8) and Lord Howe (UTC+10:30/+11): a 1-hour window cannot be open in both at once.
    windows = every_day(("09:00", "10:00"))
    assert next_opening(windows, ("Australia/Perth", "Australia/Lord_Howe"), utc(2024, 6, 3)) is None


# ---------------------------------------------------------------------------------------- hard bounds


def test_hard_bounds_clip_a_wide_window():
    windows = every_day(("07:00", "22:00"))
    day = (2024, 6, 4)
    assert not is_open(windows, NY, local("America/New_York", *day, 7, 59, 59))
    assert is_open(windows, NY, local("America/New_York", *day, 8))
    assert is_open(windows, NY, local("America/New_York", *day, 20, 59, 59))
    assert not is_open(windows, NY, local("America/New_York", *day, 21))
    assert next_opening(windows, NY, local("America/New_York", *day, 6)) == local(
        "America/New_York", *day, 8
    ).astimezone(UTC)
    assert window_closes_at(windows, NY, local("America/New_York", *day, 12)) == local(
        "America/New_York", *day, 21
    ).astimezone(UTC)
    # A tenant whose jurisdiction allows it may widen the bounds.
    wide = Bounds(time(7), time(22))
    assert is_open(windows, NY, local("America/New_York", *day, 7, 30), wide)


def test_bounds_apply_even_when_windows_cover_the_whole_day():
    windows = every_day(("00:00", "24:00"))
    assert not is_open(windows, BERLIN, local("Europe/Berlin", 2024, 6, 4, 23))
    assert window_closes_at(windows, BERLIN, local("Europe/Berlin", 2024, 6, 4, 9)) == local(
        "Europe/Berlin", 2024, 6, 4, 21
    ).astimezone(UTC)


def test_always_open_reports_the_horizon_as_a_lower_bound():
    windows = every_day(("00:00", "24:00"))
    at = utc(2024, 6, 4, 12)
    assert window_closes_at(windows, NY, at, ALL_DAY, horizon_days=3) == at + timedelta(days=3)


# ------------------------------------------------------------------------------------- next opening


def test_friday_evening_opens_monday_morning():
    friday_evening = local("America/New_York", 2024, 6, 7, 18)
    assert not is_open(DEFAULT_WINDOWS, NY, friday_evening)
    opening = next_opening(DEFAULT_WINDOWS, NY, friday_evening)
    assert opening == local("America/New_York", 2024, 6, 10, 9).astimezone(UTC)
    assert opening is not None and opening.tzinfo is UTC


def test_friday_evening_across_spring_forward_weekend_new_york():
    # The clocks change on Sunday 2024-03-10: Monday 09:00 is EDT (UTC-4), not EST.
    opening = next_opening(DEFAULT_WINDOWS, NY, local("America/New_York", 2024, 3, 8, 18))
    assert opening == utc(2024, 3, 11, 13)


def test_friday_evening_across_fall_back_weekend_berlin():
    # The clocks change on Sunday 2024-10-27: Monday 09:00 is CET (UTC+1), not CEST.
    opening = next_opening(DEFAULT_WINDOWS, BERLIN, local("Europe/Berlin", 2024, 10, 25, 18))
    assert opening == utc(2024, 10, 28, 8)


def test_open_now_means_next_opening_is_now():
    at = local("America/New_York", 2024, 6, 5, 10, 15, 30).replace(microsecond=123)
    assert next_opening(DEFAULT_WINDOWS, NY, at) == at
    assert next_opening(DEFAULT_WINDOWS, NY, at).tzinfo is UTC  # type: ignore[union-attr]


def test_end_is_exclusive():
    five_pm = local("America/New_York", 2024, 6, 5, 17)
    assert is_open(DEFAULT_WINDOWS, NY, five_pm - timedelta(microseconds=1))
    assert not is_open(DEFAULT_WINDOWS, NY, five_pm)
    assert window_closes_at(DEFAULT_WINDOWS, NY, five_pm) is None


def test_no_opening_within_the_horizon():
    closed = parse_windows({})
    assert next_opening(closed, NY, utc(2024, 6, 5)) is None
    sundays_only = parse_windows({"sun": [["10:00", "11:00"]]})
    monday = local("America/New_York", 2024, 6, 3, 12)
    assert next_opening(sundays_only, NY, monday, horizon_days=5) is None
    assert next_opening(sundays_only, NY, monday, horizon_days=6) == local(
        "America/New_York", 2024, 6, 9, 10
    ).astimezone(UTC)


def test_naive_datetimes_are_rejected():
    naive = datetime(2024, 6, 5, 10)  # noqa: DTZ001
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(DEFAULT_WINDOWS, NY, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_opening(DEFAULT_WINDOWS, NY, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        window_closes_at(DEFAULT_WINDOWS, NY, naive)


def test_bad_zone_lists_are_rejected():
    at = utc(2024, 6, 5, 14)
    with pytest.raises(ValueError, match="at least one"):
        is_open(DEFAULT_WINDOWS, (), at)
    with pytest.raises(ValueError, match="Mars/Olympus"):
        is_open(DEFAULT_WINDOWS, ("Mars/Olympus",), at)
    with pytest.raises(ValueError, match="single string"):
        is_open(DEFAULT_WINDOWS, "America/New_York", at)


# ------------------------------------------------------------------------------------------------- DST
# New York: 2024-03-10 02:00 EST -> 03:00 EDT (07:00Z); 2024-11-03 02:00 EDT -> 01:00 EST (06:00Z).
# Berlin:   2024-03-31 02:00 CET -> 03:00 CEST (01:00Z); 2024-10-27 03:00 CEST -> 02:00 CET (01:00Z).


@pytest.mark.parametrize(
    ("zone", "day", "transition"),
    [
        ("America/New_York", (2024, 3, 10), utc(2024, 3, 10, 7)),
        ("Europe/Berlin", (2024, 3, 31), utc(2024, 3, 31, 1)),
    ],
)
def test_spring_forward_window_starting_in_the_gap_opens_when_the_clock_jumps(zone, day, transition):
    windows = parse_windows({"sun": [["02:30", "05:00"]]})
    midnight = local(zone, *day, 0)
    assert next_opening(windows, (zone,), midnight, ALL_DAY) == transition
    assert local(zone, *day, 3) == transition  # i.e. 03:00 new time
    assert not is_open(windows, (zone,), transition - timedelta(seconds=1), ALL_DAY)
    assert is_open(windows, (zone,), transition, ALL_DAY)
    assert window_closes_at(windows, (zone,), transition, ALL_DAY) == local(zone, *day, 5).astimezone(UTC)


@pytest.mark.parametrize(
    ("zone", "day", "transition"),
    [
        ("America/New_York", (2024, 3, 10), utc(2024, 3, 10, 7)),
        ("Europe/Berlin", (2024, 3, 31), utc(2024, 3, 31, 1)),
    ],
)
def test_spring_forward_window_ending_in_the_gap_closes_when_the_clock_jumps(zone, day, transition):
    windows = parse_windows({"sun": [["01:00", "02:30"], ["04:00", "05:00"]]})
    one_am = local(zone, *day, 1)
    assert next_opening(windows, (zone,), one_am, ALL_DAY) == one_am.astimezone(UTC)
    assert window_closes_at(windows, (zone,), one_am, ALL_DAY) == transition
    assert is_open(windows, (zone,), transition - timedelta(seconds=1), ALL_DAY)  # 01:59:59 old time
    assert not is_open(windows, (zone,), transition, ALL_DAY)
    assert next_opening(windows, (zone,), transition, ALL_DAY) == local(zone, *day, 4).astimezone(UTC)


def test_spring_forward_window_wholly_inside_the_gap_never_opens():
    windows = parse_windows({"sun": [["02:10", "02:50"]], "mon": [["02:10", "02:50"]]})
    opening = next_opening(windows, NY, local("America/New_York", 2024, 3, 10, 0), ALL_DAY)
    assert opening == local("America/New_York", 2024, 3, 11, 2, 10).astimezone(UTC)


# Fall back. New York 2024-11-03: 01:00-02:00 happens twice, 05:00Z-06:00Z (EDT) then 06:00Z-07:00Z (EST).
# Berlin 2024-10-27: 02:00-03:00 happens twice, 00:00Z-01:00Z (CEST) then 01:00Z-02:00Z (CET).
FALL = [
    ("America/New_York", (2024, 11, 3), 1, utc(2024, 11, 3, 5), utc(2024, 11, 3, 6)),
    ("Europe/Berlin", (2024, 10, 27), 2, utc(2024, 10, 27, 0), utc(2024, 10, 27, 1)),
]


def week_later(zone: str, day: tuple[int, int, int], hour: int, minute: int) -> datetime:
    """UTC instant of ``hour:minute`` local, seven days after ``day`` (no transition then)."""
    later = date(*day) + timedelta(days=7)
    return local(zone, later.year, later.month, later.day, hour, minute).astimezone(UTC)


def hhmm(hour: int, minute: int) -> str:
    return f"{hour:02d}:{minute:02d}"


@pytest.mark.parametrize(("zone", "day", "hour", "first_pass", "second_pass"), FALL)
def test_fall_back_window_starting_in_the_fold_opens_once(zone, day, hour, first_pass, second_pass):
    # [h:30, h+2:00): the start happens twice; the window opens once, at its second occurrence, and stays
    # open until the end, so no wall time outside the window is ever open.
    windows = parse_windows({"sun": [[hhmm(hour, 30), hhmm(hour + 2, 0)]]})
    zones = (zone,)
    opening = next_opening(windows, zones, local(zone, *day, 0), ALL_DAY)
    assert opening == second_pass + timedelta(minutes=30)
    assert not is_open(windows, zones, first_pass + timedelta(minutes=45), ALL_DAY)
    assert opening is not None
    closes = window_closes_at(windows, zones, opening, ALL_DAY)
    assert closes == local(zone, *day, hour + 2).astimezone(UTC)
    assert next_opening(windows, zones, closes, ALL_DAY) == week_later(zone, day, hour, 30)


@pytest.mark.parametrize(("zone", "day", "hour", "first_pass", "second_pass"), FALL)
def test_fall_back_window_ending_in_the_fold_does_not_reopen(zone, day, hour, first_pass, second_pass):
    # [h-1:30, h:30): the end happens twice; the window closes at the first, and the second pass of
    # h:00-h:30 (inside by the clock) does not open it again.
    windows = parse_windows({"sun": [[hhmm(hour - 1, 30), hhmm(hour, 30)]]})
    zones = (zone,)
    start = local(zone, *day, hour - 1, 30).astimezone(UTC)
    assert next_opening(windows, zones, local(zone, *day, 0), ALL_DAY) == start
    assert window_closes_at(windows, zones, start, ALL_DAY) == first_pass + timedelta(minutes=30)
    assert not is_open(windows, zones, second_pass + timedelta(minutes=15), ALL_DAY)
    nxt = next_opening(windows, zones, first_pass + timedelta(minutes=30), ALL_DAY)
    assert nxt == week_later(zone, day, hour - 1, 30)


@pytest.mark.parametrize(("zone", "day", "hour", "first_pass", "second_pass"), FALL)
def test_fall_back_window_inside_the_fold_opens_once_on_the_first_pass(
    zone, day, hour, first_pass, second_pass
):
    windows = parse_windows({"sun": [[hhmm(hour, 15), hhmm(hour, 45)]]})
    zones = (zone,)
    assert next_opening(windows, zones, local(zone, *day, 0), ALL_DAY) == first_pass + timedelta(minutes=15)
    assert window_closes_at(
        windows, zones, first_pass + timedelta(minutes=20), ALL_DAY
    ) == first_pass + timedelta(minutes=45)
    assert not is_open(windows, zones, second_pass + timedelta(minutes=20), ALL_DAY)


@pytest.mark.parametrize(("zone", "day", "hour", "first_pass", "second_pass"), FALL)
def test_fall_back_window_spanning_the_fold_is_one_longer_opening(zone, day, hour, first_pass, second_pass):
    windows = parse_windows({"sun": [[hhmm(hour - 1, 0), hhmm(hour + 2, 0)]]})
    zones = (zone,)
    start = local(zone, *day, hour - 1).astimezone(UTC)
    closes = window_closes_at(windows, zones, start, ALL_DAY)
    assert closes is not None and closes - start == timedelta(hours=4)  # three wall hours, four real ones
    assert is_open(windows, zones, second_pass + timedelta(minutes=1), ALL_DAY)


# ------------------------------------------------------------------------------------------ properties

ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "America/Los_Angeles",
    "America/Boise",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",  # changes at 24:00
    "America/Havana",  # changes at 00:00 / 01:00
    "Asia/Kolkata",  # +05:30, no DST
    "Pacific/Chatham",  # +12:45 / +13:45
]
# Instants near DST transitions of the zones above, so the properties exercise gaps and folds.
ANCHORS = [
    utc(2024, 3, 10, 7),
    utc(2024, 11, 3, 6),
    utc(2024, 3, 31, 1),
    utc(2024, 10, 27, 1),
    utc(2024, 4, 6, 15),
    utc(2024, 10, 5, 15, 30),
    utc(2024, 4, 7, 3),
    utc(2024, 9, 8, 4),
    utc(2024, 3, 10, 5),
    utc(2024, 11, 3, 5),
    utc(2024, 4, 6, 14),
    utc(2024, 9, 28, 14),
    utc(2025, 6, 15, 12),
]
BOUNDS = [DEFAULT_BOUNDS, ALL_DAY, ALL_DAY, Bounds(time(1), time(4)), Bounds(time(7), time(22))]


@st.composite
def day_intervals(draw: st.DrawFn) -> list[list[str]]:
    # Boundaries on a 15-minute grid (0..96 quarters); sorted distinct points, paired up.
    points = sorted(draw(st.sets(st.integers(0, 96), max_size=6)))
    if len(points) % 2:
        points = points[:-1]
    intervals = []
    for start, end in zip(points[::2], points[1::2], strict=True):
        intervals.append([hhmm(start // 4, start % 4 * 15), hhmm(end // 4, end % 4 * 15)])
    return intervals


windows_strategy = st.dictionaries(
    st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]), day_intervals(), max_size=7
).map(parse_windows)
zones_strategy = st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True).map(tuple)
instants = st.one_of(
    st.builds(
        lambda anchor, seconds, micro: anchor + timedelta(seconds=seconds, microseconds=micro),
        st.sampled_from(ANCHORS),
        st.integers(-3 * 86_400, 3 * 86_400),
        st.sampled_from([0, 0, 1, 999_999]),
    ),
    st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001
)


def wall_inside(windows: CallingWindows, zone: str, bounds: Bounds, at: datetime) -> bool:
    """Independent oracle: the local clock reading is inside that weekday's windows and the bounds."""
    wall = at.astimezone(ZoneInfo(zone))
    secs = wall.hour * 3600 + wall.minute * 60 + wall.second + wall.microsecond / 1e6

    def end(t: time) -> int:
        return 86_400 if t == MIDNIGHT else t.hour * 3600 + t.minute * 60

    lo, hi = bounds.start.hour * 3600 + bounds.start.minute * 60, end(bounds.end)
    return lo <= secs < hi and any(
        s.hour * 3600 + s.minute * 60 <= secs < end(e) for s, e in windows.days[wall.weekday()]
    )


def no_transition_near(zone: str, at: datetime) -> bool:
    tz = ZoneInfo(zone)
    offsets = {(at + timedelta(hours=h)).astimezone(tz).utcoffset() for h in range(-27, 28)}
    return len(offsets) == 1


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(windows=windows_strategy, zones=zones_strategy, after=instants, bounds=st.sampled_from(BOUNDS))
def test_next_opening_is_the_earliest_open_instant(windows, zones, after, bounds):
    t = next_opening(windows, zones, after, bounds)
    if t is None:
        horizon = timedelta(days=14)
        for i in range(51):
            assert not is_open(windows, zones, after + horizon * i / 50, bounds)
        return
    assert t.tzinfo is UTC
    assert t >= after
    assert t <= after + timedelta(days=14)
    assert is_open(windows, zones, t, bounds)
    if t > after:
        for i in range(50):
            assert not is_open(windows, zones, after + (t - after) * i / 50, bounds)
        for before in (t - timedelta(seconds=1), t - timedelta(microseconds=1)):
            if before >= after:
                assert not is_open(windows, zones, before, bounds)
    # Compliance: when open, every candidate zone's clock is inside its window and the bounds.
    assert all(wall_inside(windows, zone, bounds, t) for zone in zones)
    closes = window_closes_at(windows, zones, t, bounds)
    assert closes is not None and closes > t
    assert is_open(windows, zones, closes - timedelta(microseconds=1), bounds)
    if closes < t + timedelta(days=14):
        assert not is_open(windows, zones, closes, bounds)


@PROPERTY_SETTINGS
@given(windows=windows_strategy, zones=zones_strategy, at=instants, bounds=st.sampled_from(BOUNDS))
def test_is_open_agrees_with_next_opening_and_the_clock(windows, zones, at, bounds):
    open_now = is_open(windows, zones, at, bounds)
    if open_now:
        assert next_opening(windows, zones, at, bounds) == at
        assert all(wall_inside(windows, zone, bounds, at) for zone in zones)
        assert window_closes_at(windows, zones, at, bounds) is not None
    else:
        assert next_opening(windows, zones, at, bounds) != at
        assert window_closes_at(windows, zones, at, bounds) is None
    # Away from DST transitions, open means exactly "the clock is inside the window in every zone".
    if all(no_transition_near(zone, at) for zone in zones):
        assert open_now == all(wall_inside(windows, zone, bounds, at) for zone in zones)
