"""Call ids: which domain a call belongs to, read from its id alone.

Every call the Stasis app reports carries an id, and the orchestrator's router hands the call's events to
the domain that owns it by that id, without a database look-up:

* a campaign attempt: a UUID version 4 (the attempt's primary key, also the ARI ``channelId``);
* a flow's outbound leg (a page call to an on-call person, a call back to a caller): a UUID whose version
  nibble is **8** (RFC 9562's "custom" version), made by :func:`new_flow_call_id`, also the ``channelId``;
* an inbound call (entered the Stasis app from the dialplan): Asterisk's own channel id (``1767650400.17``),
  never a UUID.

Version 8 keeps the 122 random bits of a v4 id, so it is as unguessable, and a tenant-visible id still looks
like a UUID; the version nibble alone tells the two apart.
"""

from __future__ import annotations

import os
import uuid

FLOW_CALL_VERSION = 8


def _parse(value: object) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def new_flow_call_id() -> str:
    """A fresh flow call id: 122 random bits, version 8, RFC 4122 variant; canonical string form."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | (FLOW_CALL_VERSION << 4)
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def is_flow_call_id(value: object) -> bool:
    """A flow's outbound leg: a UUID of version 8 (RFC 4122 variant)."""
    parsed = _parse(value)
    return parsed is not None and parsed.variant == uuid.RFC_4122 and parsed.version == FLOW_CALL_VERSION


def is_attempt_call_id(value: object) -> bool:
    """A campaign attempt: a UUID of version 4 (RFC 4122 variant)."""
    parsed = _parse(value)
    return parsed is not None and parsed.variant == uuid.RFC_4122 and parsed.version == 4
