"""externalMedia (``POST /channels/externalMedia``): an AudioSocket leg to a media server.

The simulator implements AudioSocket over TCP only, as the TCP client, like chan_audiosocket. It keeps
Asterisk's race: the request returns once the channel exists and the TCP connection is up, and the leg is
dialed, answered and enters the app later, after a random delay (`core.MEDIA_START_DELAY_S`). The leg is
never hung up by Asterisk when the caller goes (A9); it goes when the media server hangs up or breaks the
protocol, or when the app hangs it up.
"""

from __future__ import annotations

import asyncio
import time
import uuid as uuid_mod
from typing import Any

from wire.audiosocket import AUDIO_KIND_RATES

from . import audio
from .causes import NORMAL_CLEARING
from .core import PbxCore
from .errors import AriError, allocation_failed
from .media import AudioSocketLeg, connect_leg, send_uuid
from .model import OUTGOING_APP, Channel, Dialplan


class ExternalMedia(PbxCore):
    async def external_media(self, params: dict[str, str], variables: dict[str, str]) -> dict[str, Any]:
        app = params.get("app", "")
        if not app:
            raise AriError(400, "app cannot be empty")
        encapsulation = params.get("encapsulation", "rtp")
        transport = params.get("transport", "udp")
        connection_type = params.get("connection_type", "client")
        if encapsulation not in ("rtp", "audiosocket", "none"):
            raise AriError(400, "encapsulation must be rtp, audiosocket or none")
        if transport not in ("udp", "tcp", "websocket"):
            raise AriError(400, "transport must be udp, tcp or websocket")
        if connection_type not in ("client", "server"):
            raise AriError(400, "connection_type must be client or server")
        pairs = {("rtp", "udp"), ("audiosocket", "tcp"), ("none", "websocket")}
        if (encapsulation, transport) not in pairs:
            raise AriError(400, "Invalid encapsulation/transport combination")
        if connection_type == "server" and transport != "websocket":
            raise AriError(400, "connection_type server is only valid for websocket")
        fmt_name = params.get("format", "")
        if not fmt_name:
            raise AriError(400, "format cannot be empty")
        if (encapsulation, transport) != ("audiosocket", "tcp"):
            raise AriError(501, "The simulator implements externalMedia with AudioSocket over TCP only")
        external_host = params.get("external_host", "")
        host, sep, port_txt = external_host.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_txt.isdigit() or not 0 < int(port_txt) < 65536:
            raise AriError(400, "external_host must be host:port")
        data = params.get("data", "")
        if not data:
            raise AriError(400, "data can not be empty")
        channel_id = params.get("channelId") or None
        if channel_id and channel_id in self.channels:
            raise AriError(409, "Channel with given unique ID already exists")
        fmt = audio.FORMATS.get(fmt_name)
        if fmt is None:
            raise allocation_failed()  # no such format: the channel request fails
        try:
            media_uuid = uuid_mod.UUID(data)
        except ValueError:
            raise allocation_failed() from None  # chan_audiosocket refuses a non-UUID
        cid = channel_id or self._unique_id()
        leg = AudioSocketLeg(
            channel_id=cid,
            media_uuid=media_uuid,
            fmt=fmt,
            service=external_host,
            on_audio=self._leg_audio,
            on_end=self._leg_ended,
        )
        try:
            await connect_leg(host, int(port_txt), leg)
        except (OSError, TimeoutError):
            leg.close("connect_failed")
            raise allocation_failed() from None
        if cid in self.channels:  # taken while we were connecting
            leg.close("duplicate")
            raise AriError(409, "Channel with given unique ID already exists")
        ch = Channel(
            id=cid,
            name=f"AudioSocket/{external_host}-{data}",
            kind="audiosocket",
            dialplan=Dialplan("default", "s", 1, *OUTGOING_APP),
            leg=leg,
        )
        ch.variables.update(variables)
        ch.variables.update({"AUDIOSOCKET_SERVICE": external_host, "AUDIOSOCKET_UUID": data})
        ch.channelvars = {"AUDIOSOCKET_SERVICE": external_host, "AUDIOSOCKET_UUID": data}
        self.channels[cid] = ch
        self.legs[str(media_uuid)] = leg
        self.emit("ChannelCreated", channel=ch)
        ch.apps.add(app)
        snapshot = ch.json()
        ch.channelvars = None
        self._spawn(self._answer_media_channel(ch, app, data))
        return snapshot

    async def _answer_media_channel(self, ch: Channel, app: str, data: str) -> None:
        # After the HTTP response, as Asterisk's dial thread does, and a little later (MEDIA_START_DELAY_S).
        low, high = self.media_start_delay_s
        await asyncio.sleep(self._rng.uniform(low, high) if high > 0 else 0)
        if ch.destroyed:
            return
        if ch.leg is not None:
            send_uuid(ch.leg)  # audiosocket_call: queue ANSWER, send the UUID
        peer_fields = {"forward": "", "dialstring": f"{ch.leg.service if ch.leg else ''}/{data}"}
        self.emit("Dial", peer=ch, fields={"dialstatus": "", **peer_fields})
        self._set_state(ch, "Up")
        self.emit("Dial", peer=ch, fields={"dialstatus": "ANSWER", **peer_fields})
        if not self.active_app(app):
            self._destroy(ch, NORMAL_CLEARING)
            return
        self._enter_stasis(ch, app, [data])

    def _leg_audio(self, leg: AudioSocketLeg, kind: int, payload: bytes) -> None:
        ch = self.channels.get(leg.channel_id)
        if ch is None or ch.bridge is None:
            return  # not bridged yet: the Stasis loop consumes and drops it (§4.4)
        now = time.time()
        for member in ch.bridge.channels:
            call = member.call
            if call is not None and member is call.channel:
                call.heard.add(kind, payload, now)
        rate = AUDIO_KIND_RATES.get(kind)
        if rate is not None:
            for rec in ch.bridge.recordings:
                if rec.mix is not None:
                    rec.mix.add_stream(leg, payload, rate, now)

    def _leg_ended(self, leg: AudioSocketLeg, reason: str, error: str | None) -> None:
        """The media server hung up (0x00 or close) or broke the protocol: only that leg goes (A9)."""
        ch = self.channels.get(leg.channel_id)
        if ch is None or ch.destroyed:
            return
        self.emit("ChannelHangupRequest", channel=ch, fields={"cause": NORMAL_CLEARING, "soft": True})
        self._leave_stasis(ch)
        self._destroy(ch, NORMAL_CLEARING)
