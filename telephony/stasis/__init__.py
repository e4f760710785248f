"""The Stasis app of one PBX (see :mod:`telephony.stasis.app`); the names other modules import."""

from telephony.stasis.app import (
    HANDLED_EVENTS,
    MEDIA_SHORT_LIFE_S,
    StasisApp,
    StasisConfig,
    _ignorable,
    command_key,
    media_owner,
    reply_channel,
    run_until_signalled,
)

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
