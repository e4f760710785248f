"""US state calling hours stricter than the federal 08:00–21:00 (TCPA, 47 CFR 64.1200(c)(1)).

The callee's state comes from the number (its area code, through phonenumbers' offline geocoder: NANP area
codes do not cross state lines), and its rules narrow the campaign's calling windows per weekday in the
callee's local time (:func:`restrict_to_state`), before the windows are evaluated
(``campaigns.selectors.callee_window``): so the claim, the re-check before originating and the "why not
dialed" explainer all see the same, stricter window. A number whose state cannot be told (not a US number,
a non-geographic area code) keeps the federal bounds only.

The table is data, not code: one row per state that is stricter on some day, the local hours allowed on
each weekday (Monday first), None for a day with no calls at all.

Source: the states' statutes as summarised in Drop Cowboy, "State Calling Restrictions Guide" (last
updated 2025-11-01) and ClickPoint Software, "Telemarketing Calling Restrictions & Hours by State"
(reviewed July 2025); table written 2026-12-04. Citations per row are the statutes those guides name.
State legal holidays (Alabama, Louisiana, Mississippi, Rhode Island, Utah ban calls on them) are NOT
modelled here yet; a tenant calling those states should pause its campaigns on their holidays. This is not
legal advice: a tenant's counsel has the last word, and the table is meant to be kept up to date.

Pure Python (phonenumbers), no Django, no I/O.
"""

from __future__ import annotations

from datetime import time
from functools import lru_cache

import phonenumbers
from phonenumbers import geocoder

from campaigns.windows import MIDNIGHT, CallingWindows

__all__ = ["STATE_HOURS", "STATE_NAMES", "restrict_to_state", "state_for_number"]

Hours = tuple[time, time] | None  # the local hours allowed that day; None: no calls that day


def _every_day(start: int, end: int) -> tuple[Hours, ...]:
    return ((time(start), time(end)),) * 7


def _mon_sat(start: int, end: int, sunday: Hours) -> tuple[Hours, ...]:
    return ((time(start), time(end)),) * 6 + (sunday,)


#: State (USPS code) → allowed local hours per weekday (Monday first). Only states stricter than
#: 08:00–21:00 on some day are listed.
STATE_HOURS: dict[str, tuple[Hours, ...]] = {
    "AL": _mon_sat(8, 20, None),  # Ala. Code § 8-19A-4: 8 am–8 pm, never on Sunday
    "CT": _every_day(9, 20),  # Conn. Gen. Stat. § 42-288a (2023): 9 am–8 pm
    "FL": _every_day(8, 20),  # Fla. Stat. § 501.616(6)(a): 8 am–8 pm
    "KY": _every_day(10, 21),  # KRS 367.46955(15): 10 am–9 pm
    "LA": _mon_sat(8, 20, None),  # La. R.S. 45:844.14: 8 am–8 pm, never on Sunday
    "MA": _every_day(8, 20),  # 940 CMR 19.05: 8 am–8 pm
    "MD": _every_day(8, 20),  # Md. Com. Law § 14-4503 (Stop the Spam Calls Act, 2023): 8 am–8 pm
    "MI": _every_day(9, 21),  # MCL 445.111b: 9 am–9 pm
    "MN": _every_day(9, 21),  # Minn. Stat. § 325E.27: 9 am–9 pm
    "MS": _mon_sat(8, 20, None),  # Miss. Code § 77-3-725: 8 am–8 pm, never on Sunday
    "NM": _every_day(9, 21),  # N.M. Stat. § 57-12-22: 9 am–9 pm
    "NV": _every_day(9, 20),  # NRS 228.590 (as summarised): 9 am–8 pm
    "OK": _every_day(8, 20),  # 15 O.S. § 775C.4 (Telephone Solicitation Act 2022): 8 am–8 pm
    # R.I. Gen. Laws § 5-61-3.4: weekdays 9 am–6 pm, Saturday 10 am–5 pm, never on Sunday
    "RI": ((time(9), time(18)),) * 5 + ((time(10), time(17)), None),
    "TX": _mon_sat(9, 21, (time(12), time(21))),  # Tex. Bus. & Com. Code § 301.051: Sunday noon–9 pm
    "UT": _mon_sat(8, 21, None),  # Utah Code § 13-25a-103: never on Sunday
    "WA": _every_day(8, 20),  # RCW 80.36.390: 8 am–8 pm
}

#: The geocoder's English description of a US area code (a state's name, or "City, ST") → USPS code.
STATE_NAMES: dict[str, str] = {
    "Alabama": "AL",
    "Alaska": "AK",
    "Arizona": "AZ",
    "Arkansas": "AR",
    "California": "CA",
    "Colorado": "CO",
    "Connecticut": "CT",
    "Delaware": "DE",
    "Florida": "FL",
    "Georgia": "GA",
    "Hawaii": "HI",
    "Idaho": "ID",
    "Illinois": "IL",
    "Indiana": "IN",
    "Iowa": "IA",
    "Kansas": "KS",
    "Kentucky": "KY",
    "Louisiana": "LA",
    "Maine": "ME",
    "Maryland": "MD",
    "Massachusetts": "MA",
    "Michigan": "MI",
    "Minnesota": "MN",
    "Mississippi": "MS",
    "Missouri": "MO",
    "Montana": "MT",
    "Nebraska": "NE",
    "Nevada": "NV",
    "New Hampshire": "NH",
    "New Jersey": "NJ",
    "New Mexico": "NM",
    "New York": "NY",
    "North Carolina": "NC",
    "North Dakota": "ND",
    "Ohio": "OH",
    "Oklahoma": "OK",
    "Oregon": "OR",
    "Pennsylvania": "PA",
    "Rhode Island": "RI",
    "South Carolina": "SC",
    "South Dakota": "SD",
    "Tennessee": "TN",
    "Texas": "TX",
    "Utah": "UT",
    "Vermont": "VT",
    "Virginia": "VA",
    "Washington": "WA",
    "West Virginia": "WV",
    "Wisconsin": "WI",
    "Wyoming": "WY",
    "Washington D.C.": "DC",
}
_CODES = frozenset(STATE_NAMES.values())


@lru_cache(maxsize=4096)
def _state_for_area(prefix: str) -> str | None:
    """The state of a NANP area code (``prefix`` is ``"+1NPA"``), from any number in it."""
    try:
        number = phonenumbers.parse(prefix + "5550123", None)
    except phonenumbers.NumberParseException:
        return None
    if phonenumbers.region_code_for_number(number) != "US":
        return None  # Canada, the Caribbean...: other rules, not this table's
    description = geocoder.description_for_number(number, "en")
    if description in STATE_NAMES:
        return STATE_NAMES[description]
    # "San Francisco, CA": the state's code after the last comma.
    code = description.rpartition(",")[2].strip()
    return code if code in _CODES else None


def state_for_number(e164: str) -> str | None:
    """The US state (USPS code) of an E.164 number's area code; None when it is not a US geographic number.

    Cached per area code: the dispatch pass asks for every lead it looks at."""
    if not e164.startswith("+1") or len(e164) < 5 or not e164[2:5].isdigit():
        return None
    return _state_for_area(e164[:5])


def _secs(t: time, *, end: bool) -> int:
    secs = t.hour * 3600 + t.minute * 60
    return 86_400 if end and secs == 0 else secs


def restrict_to_state(windows: CallingWindows, state: str | None) -> CallingWindows:
    """``windows`` narrowed to the state's allowed hours on each weekday (unchanged for a state not in
    :data:`STATE_HOURS`). The federal bounds still apply on top (``campaigns.windows``)."""
    rules = STATE_HOURS.get(state or "")
    if rules is None:
        return windows
    days: list[tuple[tuple[time, time], ...]] = []
    for weekday, intervals in enumerate(windows.days):
        allowed = rules[weekday]
        if allowed is None:
            days.append(())
            continue
        lo, hi = _secs(allowed[0], end=False), _secs(allowed[1], end=True)
        kept = []
        for start, stop in intervals:
            s, e = max(_secs(start, end=False), lo), min(_secs(stop, end=True), hi)
            if s < e:
                kept.append(
                    (
                        time(s // 3600, s % 3600 // 60),
                        MIDNIGHT if e == 86_400 else time(e // 3600, e % 3600 // 60),
                    )
                )
        days.append(tuple(kept))
    return CallingWindows(tuple(days))
