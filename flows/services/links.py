"""Signed acknowledgement links (``/ack/<token>``, django.core.signing): the token names the incident and
the person it was sent to; it cannot be forged or altered, and it expires after
``settings.FLOWS_ACK_LINK_MAX_AGE_S``. Opening the link (GET) only shows a page: link previews and mail
scanners fetch links, so only a POST from that page acts."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core import signing

SALT = "flows.ack-link"


@dataclass(frozen=True, slots=True)
class AckLink:
    incident_id: int
    person_id: int


def ack_token(*, incident_id: int, person_id: int) -> str:
    return signing.dumps({"i": incident_id, "p": person_id}, salt=SALT, compress=False)


def ack_url(*, incident_id: int, person_id: int) -> str:
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return f"{base}/ack/{ack_token(incident_id=incident_id, person_id=person_id)}"


def ack_token_read(token: str) -> AckLink | None:
    """The link's incident and person, or None when the token is forged, altered or expired."""
    try:
        data = signing.loads(token, salt=SALT, max_age=settings.FLOWS_ACK_LINK_MAX_AGE_S)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    incident_id, person_id = data.get("i"), data.get("p")
    if not isinstance(incident_id, int) or not isinstance(person_id, int):
        return None
    return AckLink(incident_id, person_id)
