"""Stasis applications and the event fan-out.

An app is registered when a websocket connects to ``/ari/events?app=...`` and stays known after the socket
goes (inactive): its channels stay in Stasis and the events meant for it are dropped and counted, as
Asterisk logs "Inactive Stasis app '...' missed message". Every event goes to each active app subscribed to
a channel or bridge it is about, and to apps that subscribed to everything.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .model import Bridge, Channel, ari_timestamp

MAX_APP_NAME = 73


class EventSink(Protocol):
    def push(self, text: str) -> None: ...


@dataclass
class AppState:
    name: str
    connection: EventSink | None = None
    subscribe_all: bool = False
    registered: float = field(default_factory=time.time)


class EventFanout:
    """The registered apps, their websockets, and the one way events leave the simulated Asterisk."""

    def __init__(self, asterisk_id: str) -> None:
        self.asterisk_id = asterisk_id
        self.apps: dict[str, AppState] = {}
        self.events_sent = 0
        self.events_dropped = 0

    def active_app(self, name: str) -> bool:
        state = self.apps.get(name)
        return state is not None and state.connection is not None

    def emit(
        self,
        type_: str,
        *,
        channel: Channel | None = None,
        bridge: Bridge | None = None,
        peer: Channel | None = None,
        fields: dict[str, Any] | None = None,
        apps: Iterable[str] = (),
        only_app: str | None = None,
    ) -> None:
        """Send one event to every active app subscribed to what it is about (and to subscribeAll apps).

        `only_app` is for StasisStart/StasisEnd, which res_stasis sends to the channel's own app alone.
        """
        if only_app is not None:
            targets = {only_app}
        else:
            targets = set(apps)
            for obj in (channel, peer):
                if obj is not None:
                    targets |= obj.apps
            if bridge is not None:
                targets |= bridge.apps
            for state in self.apps.values():
                if state.subscribe_all:
                    targets.add(state.name)
        if not targets:
            return
        event: dict[str, Any] = {"type": type_, "timestamp": ari_timestamp()}
        if fields:
            event.update(fields)
        if peer is not None:
            event["peer"] = peer.json()
        if bridge is not None:
            event["bridge"] = bridge.json()
        if channel is not None:
            event["channel"] = channel.json()
        event["asterisk_id"] = self.asterisk_id
        for app in sorted(targets):
            app_state = self.apps.get(app)
            if app_state is None or app_state.connection is None:
                self.events_dropped += 1  # "Inactive Stasis app '...' missed message"
                continue
            event["application"] = app
            app_state.connection.push(json.dumps(event))
            self.events_sent += 1

    def register(self, conn: EventSink, apps: list[str], subscribe_all: bool) -> None:
        for name in apps:
            state = self.apps.get(name)
            if state is None:
                state = self.apps[name] = AppState(name=name)
            previous = state.connection
            if previous is not None and previous is not conn:
                previous.push(
                    json.dumps(
                        {
                            "type": "ApplicationReplaced",
                            "timestamp": ari_timestamp(),
                            "application": name,
                            "asterisk_id": self.asterisk_id,
                        }
                    )
                )
            state.connection = conn
            state.subscribe_all = subscribe_all

    def unregister(self, conn: EventSink) -> None:
        for state in self.apps.values():
            if state.connection is conn:
                state.connection = None  # inactive: events are dropped, channels stay in Stasis
                state.subscribe_all = False
