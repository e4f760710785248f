"""The Stasis app of one PBX (:class:`StasisApp`; the package is described in :mod:`telephony.stasis.app`).

These are the names the rest of the project imports from ``telephony.stasis``.
"""

from telephony.stasis.app import StasisApp, run_until_signalled
from telephony.stasis.config import StasisConfig
from telephony.stasis.connection import HANDLED_EVENTS, _ignorable
from telephony.stasis.controller import MEDIA_SHORT_LIFE_S
from telephony.stasis.ids import command_key, media_owner
from wire.brief import reply_channel

__all__ = [
    "HANDLED_EVENTS",
    "MEDIA_SHORT_LIFE_S",
    "StasisApp",
    "StasisConfig",
    "_ignorable",
    "command_key",
    "media_owner",
    "reply_channel",
    "run_until_signalled",
]
