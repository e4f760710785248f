"""The simulated Asterisk: one `Pbx` made of the core state and one part per ARI resource.

=================  =====================================================================================
``core``           shared state (channels, bridges, calls, legs, playbacks...), ids, tasks, lookups
``events``         Stasis applications (websocket registrations) and the event fan-out
``calls``          originate and the callee's side of set-up (Local pairs, trunks), inbound arrivals
``parties``        the scripted party once a call is up: speech, DTMF, hangup
``channels``       entering and leaving Stasis, hangups, variables, snoops; how a channel's life ends
``external_media`` externalMedia AudioSocket legs, answered after the HTTP reply (Asterisk's race)
``bridges``        bridges and the media that starts flowing when a party meets a leg
``playbacks``      playbacks and recordings on channels and bridges
``control``        the simulator's own /sim resources: inspection, making a party act, stats, shutdown
=================  =====================================================================================

Every event sequence reproduces what Asterisk 22.10.1 sent in the recorded traces
(`tests/data/asterisk-22.10.1/traces`). The engine is synchronous except for timed behaviour (callee
scripts, playbacks) and the AudioSocket connect, so an HTTP handler's effects and events happen in one step,
in order.
"""

from __future__ import annotations

from .bridges import BRIDGE_TYPES, Bridges
from .calls import KNOWN_TECHS, TRUNK_TECHS, Calls
from .channels import Channels
from .control import Control
from .core import ASTERISK_VERSION, MAX_ID_LENGTH, MEDIA_START_DELAY_S, PbxCore
from .errors import AriError, allocation_failed, ast_true, int_param
from .events import MAX_APP_NAME, AppState, EventSink
from .external_media import ExternalMedia
from .parties import DTMF_DURATION, DTMF_SPACING, Parties
from .playbacks import MEDIA_SCHEMES, RECORDING_FORMATS, Playbacks
from .sounds import playback_seconds, render_phrase, render_playback, render_tone, render_wav

__all__ = [
    "ASTERISK_VERSION",
    "BRIDGE_TYPES",
    "DTMF_DURATION",
    "DTMF_SPACING",
    "KNOWN_TECHS",
    "MAX_APP_NAME",
    "MAX_ID_LENGTH",
    "MEDIA_SCHEMES",
    "MEDIA_START_DELAY_S",
    "RECORDING_FORMATS",
    "TRUNK_TECHS",
    "AppState",
    "AriError",
    "EventSink",
    "Pbx",
    "allocation_failed",
    "ast_true",
    "int_param",
    "playback_seconds",
    "render_phrase",
    "render_playback",
    "render_tone",
    "render_wav",
]


class Pbx(Control, Calls, Parties, ExternalMedia, Channels, Bridges, Playbacks, PbxCore):
    """The simulated Asterisk that the HTTP server (`server.make_app`) drives."""
