"""The Redis pub/sub channels the portal's live pages listen to (standard library only).

* ``live:<tenant id>``: something of the tenant changed: ``{"kind": "call", "call_id": ..., "state": ...}``
  for a call's progress (campaign attempt or inbound call), ``{"kind": "incident", "incident_id": ...}`` for
  an incident's timeline, ``{"kind": "import", "import_id": ...}`` for a contact import's progress. Published
  by the Django side after the change has committed.
* ``transcripts:<tenant id>``: each transcript line as it is spoken, published by the media worker:
  ``{"call_id", "attempt_id", "role", "text", "at"}``.

A message is a hint to look again, not the truth: a page re-reads what it shows from the database.
"""

from __future__ import annotations

LIVE_CHANNEL_PREFIX = "live:"
TRANSCRIPT_CHANNEL_PREFIX = "transcripts:"


def live_channel(tenant_id: int) -> str:
    return f"{LIVE_CHANNEL_PREFIX}{tenant_id}"


def transcript_channel(tenant_id: int) -> str:
    return f"{TRANSCRIPT_CHANNEL_PREFIX}{tenant_id}"
