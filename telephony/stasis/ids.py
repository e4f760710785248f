"""Names the Stasis app gives things, and how it reads them back from ARI objects.

Ids are deterministic (``bridge-<call id>``, ``media-<call id>~<try>``, ``xfer-<call id>``) so that
reconciliation after a restart of the process can still tell which bridge, AudioSocket leg and human leg
belong to which call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

OUTGOING_APP = "AppDial2"  # the dialplan "app" of a channel created by originate/dial
BRIDGE_PREFIX = "bridge-"
MEDIA_PREFIX = "media-"  # an AudioSocket leg: media-<call id>~<try>
MEDIA_TRY_SEP = "~"  # in neither a UUID nor an Asterisk uniqueid
TRANSFER_PREFIX = "xfer-"  # the human leg of a transfer: xfer-<call id>
INBOUND_PLAYBACK_PREFIX = "inbound-"  # the playback of the message an unrouted inbound caller hears
RECORDING_PREFIX = "rec-"  # a call's bridge recording (its stored name on the PBX): rec-<call id>


def command_key(pbx_id: int | str) -> str:
    """The Redis list the media worker RPUSHes call actions to for the calls of PBX row ``pbx_id``."""
    return f"stasis:commands:{pbx_id}"


def media_owner(channel_id: str) -> str | None:
    """The call id an AudioSocket leg's channel id (``media-<call id>~<try>``) belongs to, else None."""
    if not channel_id.startswith(MEDIA_PREFIX):
        return None
    owner, sep, _ = channel_id.removeprefix(MEDIA_PREFIX).rpartition(MEDIA_TRY_SEP)
    return owner if sep and owner else None


def bridge_id_of(call_id: str) -> str:
    return f"{BRIDGE_PREFIX}{call_id}"


def recording_of(call_id: str) -> str:
    return f"{RECORDING_PREFIX}{call_id}"


def recording_owner(name: str) -> str | None:
    """The call id of a call's recording name, None for a name that is not one of ours."""
    if not name.startswith(RECORDING_PREFIX):
        return None
    return name.removeprefix(RECORDING_PREFIX) or None


def transfer_leg_of(call_id: str) -> str:
    return f"{TRANSFER_PREFIX}{call_id}"


def seg(value: str) -> str:
    """``value`` as one URL path segment."""
    return quote(value, safe="")


def channel_of(event: Mapping[str, Any], key: str = "channel") -> dict[str, Any] | None:
    obj = event.get(key)
    return obj if isinstance(obj, dict) else None


def stasis_args(channel: Mapping[str, Any], app: str) -> list[str] | None:
    """The Stasis args of a channel (from its dialplan snapshot) if it is inside ``app``, else None."""
    dialplan = channel.get("dialplan")
    if not isinstance(dialplan, Mapping) or dialplan.get("app_name") != "Stasis":
        return None
    parts = str(dialplan.get("app_data") or "").split(",")
    if parts[0] != app:
        return None
    return parts[1:]


def is_originated(channel: Mapping[str, Any]) -> bool:
    """A channel created by originate/dial (its dialplan app is ``AppDial2``)."""
    dialplan = channel.get("dialplan")
    return isinstance(dialplan, Mapping) and dialplan.get("app_name") == OUTGOING_APP
