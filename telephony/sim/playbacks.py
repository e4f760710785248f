"""Playbacks and recordings on a channel or a bridge.

ARI resources: ``/channels/{id}/play|record``, ``/bridges/{id}/play|record``, ``/playbacks``, ``/recordings``.
A playback on a bridge is heard over the bridge's AudioSocket legs; both end with their channel or bridge.
"""

from __future__ import annotations

import asyncio
import time
import uuid as uuid_mod
from array import array
from functools import partial
from typing import Any

from .core import PbxCore
from .errors import AriError, int_param
from .media import Speaker
from .model import Bridge, Channel, Playback, Recording
from .recorder import Mixdown
from .sounds import playback_seconds, render_playback

RECORDING_FORMATS = {"wav", "gsm", "ulaw", "alaw", "sln", "sln16", "g722", "wav16"}
MEDIA_SCHEMES = ("sound", "recording", "number", "digits", "characters", "tone")


class Playbacks(PbxCore):
    def play(
        self, target: Channel | Bridge, media: list[str], playback_id: str | None, lang: str | None
    ) -> dict[str, Any]:
        if not media:
            raise AriError(400, "media is required")
        if isinstance(target, Channel):
            if target.stasis_app is None:
                raise AriError(409, "Channel not in Stasis application")
            if target.state in ("Down", "Rsrved", "Ringing", "Ring"):
                raise AriError(412, "Channel in invalid state")
            target_uri = f"channel:{target.id}"
        else:
            target_uri = f"bridge:{target.id}"
        pid = playback_id or str(uuid_mod.uuid4())
        if pid in self.playbacks:
            raise AriError(409, "Playback with the given ID already exists")
        pb = Playback(id=pid, media=list(media), target_uri=target_uri, language=lang or "en")
        self.playbacks[pid] = pb
        if isinstance(target, Channel) and target.call is not None:
            target.call.playbacks.extend(media)
        pb.task = self._spawn(self._run_playback(pb, target))
        return pb.json()

    async def _run_playback(self, pb: Playback, target: Channel | Bridge) -> None:
        apps = self._target_apps(target)
        try:
            await asyncio.sleep(0)
            pb.state = "playing"
            self.emit("PlaybackStarted", fields={"playback": pb.json()}, apps=apps)
            for i, uri in enumerate(pb.media):
                pb.index = i
                if i:
                    self.emit("PlaybackContinuing", fields={"playback": pb.json()}, apps=apps)
                scheme, _, what = uri.partition(":")
                if scheme not in MEDIA_SCHEMES or not what:
                    pb.state = "failed"
                    break
                seconds = playback_seconds(scheme, what)
                if isinstance(target, Bridge):
                    key: tuple[Any, ...] = ("playback", uri)
                    pb.speaker = Speaker(
                        key=key,
                        render=partial(render_playback, uri),
                        start=time.time(),
                        bridge=target,
                        repeat=seconds is None,
                    )
                    self.clock.add(pb.speaker)
                if seconds is None:
                    await asyncio.Future()  # tones play until stopped
                await asyncio.sleep(seconds or 0)
                if pb.speaker is not None:
                    self.clock.remove(pb.speaker)
            else:
                pb.state = "done"
        except asyncio.CancelledError:
            pb.state = "done"
            raise
        finally:
            if pb.speaker is not None:
                self.clock.remove(pb.speaker)
            self.playbacks.pop(pb.id, None)
            self.emit("PlaybackFinished", fields={"playback": pb.json()}, apps=apps)

    def _target_apps(self, target: Channel | Bridge) -> set[str]:
        if isinstance(target, Channel):
            return {target.stasis_app} if target.stasis_app else set(target.apps)
        return set(target.apps)

    def stop_playback(self, playback_id: str) -> None:
        pb = self.playbacks.get(playback_id)
        if pb is None:
            raise AriError(404, "Playback not found")
        if pb.task is not None:
            pb.task.cancel()

    def record(self, target: Channel | Bridge, params: dict[str, str]) -> dict[str, Any]:
        name = params.get("name", "")
        fmt = params.get("format", "")
        if not name:
            raise AriError(400, "Recording name is required")
        if not fmt:
            raise AriError(400, "Recording format is required")
        if isinstance(target, Channel) and target.stasis_app is None:
            raise AriError(409, "Channel not in Stasis application")
        if_exists = params.get("ifExists", "fail")
        if if_exists not in ("fail", "overwrite", "append"):
            raise AriError(400, "ifExists must be fail, overwrite or append")
        if fmt not in RECORDING_FORMATS:
            raise AriError(422, f"Recording format {fmt} not found")
        if name in self.live_recordings:
            raise AriError(409, "Recording is already in progress")
        if name in self.stored_recordings and if_exists == "fail":
            raise AriError(409, "Recording already exists")
        target_uri = f"channel:{target.id}" if isinstance(target, Channel) else f"bridge:{target.id}"
        rec = Recording(
            name=name,
            format=fmt,
            target_uri=target_uri,
            max_duration=int_param(params, "maxDurationSeconds", 0),
        )
        self.live_recordings[name] = rec
        if isinstance(target, Bridge):
            # The bridge's mix from now on (recorder.py); the parties bridged now (or later) list it.
            rec.mix = Mixdown(fmt, rec.started)
            target.recordings.append(rec)
            for member in target.channels:
                call = member.call
                if call is not None and member is call.channel and name not in call.recordings:
                    call.recordings.append(name)
        apps = self._target_apps(target)
        self.emit("RecordingStarted", fields={"recording": rec.json()}, apps=apps)
        rec.task = self._spawn(self._run_recording(rec, apps))
        return rec.json()

    async def _run_recording(self, rec: Recording, apps: set[str]) -> None:
        if rec.max_duration > 0:
            await asyncio.sleep(rec.max_duration)
            self.stop_recording(rec.name, apps=apps)
        else:
            await asyncio.Future()

    def stop_recording(self, name: str, *, cancel: bool = False, apps: set[str] | None = None) -> None:
        rec = self.live_recordings.pop(name, None)
        if rec is None:
            raise AriError(404, "Recording not found")
        rec.ended = time.time()
        rec.state = "canceled" if cancel else "done"
        target_id = rec.target_uri.split(":", 1)[1]
        bridge = self.bridges.get(target_id) if rec.target_uri.startswith("bridge:") else None
        if bridge is not None and rec in bridge.recordings:
            bridge.recordings.remove(rec)
        if rec.mix is not None:
            rec.mix.pad_to(rec.ended)
            rec.data = rec.mix.file_bytes()
            rec.mix.samples = array("h")  # the stored file is all that is kept
        if not cancel:
            self.stored_recordings[name] = rec
        if rec.task is not None and rec.task is not asyncio.current_task():
            rec.task.cancel()
        obj: Channel | Bridge | None = self.channels.get(target_id) or self.bridges.get(target_id)
        targets = apps if apps is not None else (self._target_apps(obj) if obj is not None else set())
        self.emit("RecordingFinished", fields={"recording": rec.json()}, apps=targets)

    def _end_media_operations(self, target_uri: str) -> None:
        """Playbacks and recordings end with the channel or bridge they play to or record."""
        for pb in list(self.playbacks.values()):
            if pb.target_uri == target_uri and pb.task is not None:
                pb.task.cancel()
        for rec in list(self.live_recordings.values()):
            if rec.target_uri == target_uri:
                self.stop_recording(rec.name)
