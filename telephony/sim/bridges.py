"""Bridges (``/bridges``): creation, channels entering and leaving, destruction.

Entering a bridge is also where media starts to flow: a talking party that is bridged with an AudioSocket
leg sends at once, and the party's call record lists every media leg it was bridged with.
"""

from __future__ import annotations

import uuid as uuid_mod
from typing import Any

from .core import MAX_ID_LENGTH, PbxCore
from .errors import AriError
from .model import Bridge, CallerId, Channel

BRIDGE_TYPES = {"mixing", "holding", "dtmf_events", "proxy_media", "video_sfu", "video_single", "sdp_label"}


class Bridges(PbxCore):
    def create_bridge(self, params: dict[str, str], bridge_id: str | None) -> dict[str, Any]:
        types = tuple(t.strip() for t in (params.get("type") or "mixing").split(",") if t.strip())
        if not types or any(t not in BRIDGE_TYPES for t in types) or {"mixing", "holding"} <= set(types):
            raise AriError(400, "Invalid bridge type")
        bid = bridge_id or params.get("bridgeId") or str(uuid_mod.uuid4())
        if bid in self.bridges:
            raise AriError(409, "Bridge with the given unique ID already exists")
        if len(bid) > MAX_ID_LENGTH:
            raise AriError(400, "Bridge ID must be less than 150 characters")
        br = Bridge(id=bid, types=types, name=params.get("name", ""))
        self.bridges[bid] = br
        self.emit("BridgeCreated", bridge=br)
        return br.json()

    def add_to_bridge(self, bridge_id: str, channel_ids: list[str], params: dict[str, str]) -> None:
        br = self.bridge(bridge_id)
        if not channel_ids:
            raise AriError(400, "Missing parameter channel")
        chans = []
        for cid in channel_ids:
            ch = self.channels.get(cid)
            if ch is None:
                raise AriError(400, "Channel not found")
            chans.append(ch)
        for ch in chans:
            if ch.stasis_app is None:
                raise AriError(422, "Channel not in Stasis application")
        added = []
        for ch in chans:
            if ch.bridge is br:
                continue
            if ch.bridge is not None:
                self._leave_bridge(ch)
            ch.bridge = br
            br.channels.append(ch)
            if ch.stasis_app:
                br.apps.add(ch.stasis_app)
            added.append(ch)
            self.emit("ChannelEnteredBridge", channel=ch, bridge=br)
        if not added:
            return
        self._record_members(br)
        if len(br.channels) >= 2:
            for member in br.channels:
                others = [c.name for c in br.channels if c is not member]
                self._varset(member, "BRIDGEPEER", ",".join(others))
            first_pair = len(br.channels) == len(added)
            for ch in br.channels if first_pair else added:
                peer = next(c for c in br.channels if c is not ch)
                ch.connected = CallerId(peer.caller.name, peer.caller.number)
                self.emit("ChannelConnectedLine", channel=ch)
        # a talking party that just joined an AudioSocket leg starts sending at once
        for member in br.channels:
            call = member.call
            if call is not None:
                for speaker in call.speakers:
                    if not speaker.done:
                        self.clock.add(speaker)
        # inspection shows every media leg a party was bridged with, with live counters
        legs = br.legs()
        for member in br.channels:
            call = member.call
            if call is not None and member is call.channel:
                call.legs.extend(leg for leg in legs if leg not in call.legs)
                call.recordings.extend(r.name for r in br.recordings if r.name not in call.recordings)

    def remove_from_bridge(self, bridge_id: str, channel_ids: list[str]) -> None:
        br = self.bridge(bridge_id)
        if not channel_ids:
            raise AriError(400, "Missing parameter channel")
        chans = []
        for cid in channel_ids:
            ch = self.channels.get(cid)
            if ch is None:
                raise AriError(400, "Channel not found")
            if ch.bridge is not br:
                raise AriError(422, "Channel not in this bridge")
            chans.append(ch)
        for ch in chans:
            self._leave_bridge(ch)

    def _leave_bridge(self, ch: Channel) -> None:
        br = ch.bridge
        if br is None:
            return
        self._varset(ch, "BRIDGEPEER", "")
        br.channels.remove(ch)
        ch.bridge = None
        self._record_members(br, left=ch)
        self.emit("ChannelLeftBridge", channel=ch, bridge=br)

    @staticmethod
    def _record_members(br: Bridge, left: Channel | None = None) -> None:
        """Each party's record gets the bridge's members as they are now (who it could hear)."""
        members = sorted(c.id for c in br.channels)
        for ch in [*br.channels, *([left] if left is not None else [])]:
            call = ch.call
            if call is not None and ch is call.channel:
                inside = ch is not left
                call.bridged.append(
                    {
                        "at": call.since_answer(),
                        "bridge": br.id if inside else None,
                        "members": members if inside else [],
                    }
                )

    def destroy_bridge(self, bridge_id: str) -> None:
        br = self.bridge(bridge_id)
        for ch in list(br.channels):
            self._leave_bridge(ch)
        # (its recordings finish first: RecordingFinished still reaches the bridge's apps)
        self._end_media_operations(f"bridge:{br.id}")
        br.destroyed = True
        self.bridges.pop(br.id, None)
        self.emit("BridgeDestroyed", bridge=br)
