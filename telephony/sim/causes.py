"""Hangup causes and dial statuses as Asterisk 22.10.1 reports them.

The texts are Asterisk's own (`cause_txt` in `ChannelDestroyed`); the mapping from a hangup cause to the
`Dial.dialstatus` a failed call reports follows main/dial.c: 17 → BUSY, 34 → CONGESTION, 3 and 20 →
CHANUNAVAIL, and every other cause (21 "Call Rejected" included) → NOANSWER.
"""

from __future__ import annotations

CAUSE_TEXT: dict[int, str] = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    2: "No route to specified transmit network",
    3: "No route to destination",
    6: "Channel unacceptable",
    7: "Call awarded and being delivered in an established channel",
    16: "Normal Clearing",
    17: "User busy",
    18: "No user responding",
    19: "User alerting, no answer",
    20: "Subscriber absent",
    21: "Call Rejected",
    22: "Number changed",
    26: "Answered elsewhere",
    27: "Destination out of order",
    28: "Invalid number format",
    29: "Facility rejected",
    30: "Response to STATus ENQuiry",
    31: "Normal, unspecified",
    34: "Circuit/channel congestion",
    38: "Network out of order",
    41: "Temporary failure",
    42: "Switching equipment congestion",
    58: "Bearer capability not available",
    88: "Incompatible destination",
    102: "Recover on timer expiry",
    127: "Interworking, unspecified",
}

# DELETE /channels/{id}?reason=... (res/ari/resource_channels.c)
HANGUP_REASONS: dict[str, int] = {
    "normal": 16,
    "busy": 17,
    "congestion": 34,
    "no_answer": 19,
    "timeout": 18,
    "rejected": 21,
    "unallocated": 1,
    "normal_unspecified": 31,
    "number_incomplete": 28,
    "codec_mismatch": 58,
    "interworking": 127,
    "failure": 38,
    "answered_elsewhere": 26,
}

# The SIP status a PJSIP trunk would have answered with (ChannelDestroyed.tech_cause, 22.7.0+).
SIP_STATUS_FOR_CAUSE: dict[int, int] = {
    1: 404,
    3: 420,
    17: 486,
    18: 408,
    19: 480,
    21: 603,
    27: 502,
    28: 484,
    34: 503,
    38: 500,
    58: 488,
    102: 504,
}

NORMAL_CLEARING = 16
SOFT_HANGUP_FLAG = 32  # ChannelHangupRequest.cause on DELETE /channels: a flag, not a Q.850 code


def cause_text(cause: int) -> str:
    return CAUSE_TEXT.get(cause, "Unknown")


def dialstatus_for_cause(cause: int) -> str:
    if cause == 17:
        return "BUSY"
    if cause == 34:
        return "CONGESTION"
    if cause in (3, 20):
        return "CHANUNAVAIL"
    return "NOANSWER"
