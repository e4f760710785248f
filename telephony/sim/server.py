"""HTTP side of the simulator: ARI REST under /ari, the events websocket, and /sim for tests and demos.

Requests are authenticated as res_ari.c does: HTTP Basic first, and only when there is no Authorization
header, `?api_key=user:pass`. Parameters come from the query string; in a JSON body, `variables` is the
channel variables and every other key counts as a query parameter. Errors carry Asterisk's JSON bodies.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from . import apidocs
from .core import ASTERISK_VERSION
from .engine import Pbx
from .errors import AriError, ast_true
from .events import MAX_APP_NAME
from .model import Bridge, Recording, ari_timestamp
from .plan import PlanError, parse_plan

#: Content types of stored recording files (Asterisk answers with the format's MIME type).
STORED_MIME = {"wav": "audio/wav", "wav16": "audio/wav", "ulaw": "audio/basic", "alaw": "audio/x-alaw-basic"}

log = logging.getLogger("telephony.sim.server")

PBX_KEY: web.AppKey[Pbx] = web.AppKey("pbx", Pbx)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def ari_json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def no_content() -> web.Response:
    return web.Response(status=204)


class WebsocketSink:
    """One events websocket: a queue and a writer, so emitting an event never waits on the network.

    Like Asterisk (websocket_write_timeout, 100 ms by default), a consumer that does not take a write
    within the timeout is disconnected with 1011.
    """

    def __init__(self, ws: web.WebSocketResponse, write_timeout: float) -> None:
        self.ws = ws
        self.write_timeout = write_timeout
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._writer())

    def push(self, text: str) -> None:
        self.queue.put_nowait(text)

    async def _writer(self) -> None:
        while True:
            text = await self.queue.get()
            try:
                if self.write_timeout > 0:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands as
                    # the send completes, and close() then waited for this task forever.
                    async with asyncio.timeout(self.write_timeout):
                        await self.ws.send_str(text)
                else:
                    await self.ws.send_str(text)
            except TimeoutError:
                log.warning("events websocket too slow: closing it with 1011, as Asterisk does")
                await self.ws.close(code=WSCloseCode.INTERNAL_ERROR)
                return
            except (ConnectionError, RuntimeError):
                return

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


def collect_params(request: web.Request, body: Any) -> tuple[dict[str, str], dict[str, str]]:
    params: dict[str, str] = {}
    for key in request.query:
        values = request.query.getall(key)
        params[key] = ",".join(values) if len(values) > 1 else values[0]
    variables: dict[str, str] = {}
    if isinstance(body, dict):
        raw_vars = body.get("variables")
        if raw_vars is not None:
            if not isinstance(raw_vars, dict):
                raise AriError(400, "variables must be a JSON object")
            for name, value in raw_vars.items():
                if isinstance(value, dict):
                    value = value.get("value")
                if not isinstance(value, str):
                    raise AriError(400, f"Variable '{name}' must be a string")
                variables[str(name)] = value
        for key, value in body.items():
            if key != "variables" and key not in params:
                params[key] = value if isinstance(value, str) else json.dumps(value)
    return params, variables


async def read_body(request: web.Request) -> Any:
    if not request.can_read_body:
        return None
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise AriError(400, "Invalid JSON in request body") from None


def make_app(pbx: Pbx, *, user: str, password: str, ws_write_timeout: float = 0.1) -> web.Application:
    sinks: set[WebsocketSink] = set()
    # POST /sim/events/outage: until this loop time, the events websocket is refused (the network between
    # the Stasis app and Asterisk is down); calls go on, and their events are dropped (no app connected).
    outage_until = [0.0]

    def authorized(request: web.Request) -> bool:
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, encoded = header.partition(" ")
            if scheme.lower() != "basic":
                return False
            try:
                decoded = base64.b64decode(encoded, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            got_user, _, got_password = decoded.partition(":")
        else:
            api_key = request.query.get("api_key", "")
            got_user, sep, got_password = api_key.partition(":")
            if not sep or not got_password:
                return False
        return hmac.compare_digest(got_user, user) and hmac.compare_digest(got_password, password)

    @web.middleware
    async def ari_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path.startswith(("/ari", "/sim")):
            if not authorized(request):
                return web.json_response(
                    {"message": "Authentication required"},
                    status=401,
                    headers={"WWW-Authenticate": 'Basic realm="Asterisk REST Interface"'},
                )
            if path.startswith("/ari") and path.endswith("/") and path != "/ari/":
                return ari_json({"message": "ARI URLs do not end with a slash"}, 404)
        try:
            return await handler(request)
        except AriError as exc:
            return ari_json(exc.body, exc.status)
        except web.HTTPNotFound:
            return ari_json({"message": "Resource not found"}, 404)
        except web.HTTPMethodNotAllowed:
            return ari_json({"message": "Method not allowed"}, 405)

    app = web.Application(middlewares=[ari_middleware])
    app[PBX_KEY] = pbx
    r = app.router

    def route(method: str, path: str) -> Callable[[Handler], Handler]:
        def decorate(fn: Handler) -> Handler:
            r.add_route(method, path, fn)
            return fn

        return decorate

    async def params_of(request: web.Request) -> tuple[dict[str, str], dict[str, str]]:
        return collect_params(request, await read_body(request))

    # ---------------------------------------------------------------------------------------- api-docs
    @route("GET", "/ari/api-docs/{name}.json")
    async def api_docs(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        base = f"{request.scheme}://{request.host}/ari"
        doc = apidocs.load_resource_listing() if name == "resources" else apidocs.load_api_declaration(name)
        if doc is None:
            raise AriError(404, "Resource not found")
        return ari_json(apidocs.with_base_path(doc, base))

    # ---------------------------------------------------------------------------------------- asterisk
    @route("GET", "/ari/asterisk/info")
    async def asterisk_info(request: web.Request) -> web.StreamResponse:
        started = ari_timestamp(pbx.started)
        info = {
            "build": {
                "os": "Linux",
                "kernel": "simulated",
                "machine": "x86_64",
                "options": "",
                "date": started,
                "user": "telephony.sim",
            },
            "system": {"version": ASTERISK_VERSION, "entity_id": pbx.asterisk_id},
            "config": {"name": "telephony.sim", "default_language": "en", "setid": {"user": "", "group": ""}},
            "status": {"startup_time": started, "last_reload_time": started},
        }
        only = request.query.get("only")
        if only:
            info = {k: v for k, v in info.items() if k in only.split(",")}
        return ari_json(info)

    @route("GET", "/ari/asterisk/ping")
    async def asterisk_ping(request: web.Request) -> web.StreamResponse:
        return ari_json({"asterisk_id": pbx.asterisk_id, "ping": "pong", "timestamp": ari_timestamp()})

    # ------------------------------------------------------------------------------------------ events
    @route("GET", "/ari/events")
    async def events(request: web.Request) -> web.StreamResponse:
        if asyncio.get_running_loop().time() < outage_until[0]:
            raise AriError(503, "events websocket unavailable (simulated network outage)")
        apps = [a for v in request.query.getall("app", []) for a in v.split(",") if a]
        if not apps:
            raise AriError(400, "HTTP request is missing param: [app]")
        if any(len(a) > MAX_APP_NAME for a in apps):
            raise AriError(400, "Stasis app names must be at most 73 characters")
        ws = web.WebSocketResponse(protocols=("ari",), autoping=True)
        if not ws.can_prepare(request).ok:
            raise AriError(400, "Websocket upgrade required")
        await ws.prepare(request)
        sink = WebsocketSink(ws, ws_write_timeout)
        sinks.add(sink)
        pbx.register(sink, apps, ast_true(request.query.get("subscribeAll")))
        try:
            async for msg in ws:
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            pbx.unregister(sink)
            sinks.discard(sink)
            await sink.close()
        return ws

    # ---------------------------------------------------------------------------------------- channels
    @route("GET", "/ari/channels")
    async def channel_list(request: web.Request) -> web.StreamResponse:
        return ari_json(pbx.list_channels())

    @route("POST", "/ari/channels")
    async def originate(request: web.Request) -> web.StreamResponse:
        params, variables = await params_of(request)
        return ari_json(pbx.originate(params, variables))

    @route("POST", "/ari/channels/externalMedia")
    async def external_media(request: web.Request) -> web.StreamResponse:
        params, variables = await params_of(request)
        return ari_json(await pbx.external_media(params, variables))

    @route("GET", "/ari/channels/{channelId}")
    async def channel_get(request: web.Request) -> web.StreamResponse:
        return ari_json(pbx.channel(request.match_info["channelId"]).json())

    @route("POST", "/ari/channels/{channelId}")
    async def originate_with_id(request: web.Request) -> web.StreamResponse:
        params, variables = await params_of(request)
        params["channelId"] = request.match_info["channelId"]
        return ari_json(pbx.originate(params, variables))

    @route("DELETE", "/ari/channels/{channelId}")
    async def channel_hangup(request: web.Request) -> web.StreamResponse:
        q = request.query
        pbx.hangup(request.match_info["channelId"], q.get("reason"), q.get("reason_code"))
        return no_content()

    @route("POST", "/ari/channels/{channelId}/continue")
    async def channel_continue(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        pbx.continue_in_dialplan(request.match_info["channelId"], params)
        return no_content()

    @route("POST", "/ari/channels/{channelId}/answer")
    async def channel_answer(request: web.Request) -> web.StreamResponse:
        pbx.answer(request.match_info["channelId"])
        return no_content()

    @route("POST", "/ari/channels/{channelId}/ring")
    async def channel_ring(request: web.Request) -> web.StreamResponse:
        pbx.ring(request.match_info["channelId"], True)
        return no_content()

    @route("DELETE", "/ari/channels/{channelId}/ring")
    async def channel_ring_stop(request: web.Request) -> web.StreamResponse:
        pbx.ring(request.match_info["channelId"], False)
        return no_content()

    @route("POST", "/ari/channels/{channelId}/moh")
    async def channel_moh(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        pbx.start_moh(request.match_info["channelId"], params.get("mohClass"))
        return no_content()

    @route("DELETE", "/ari/channels/{channelId}/moh")
    async def channel_moh_stop(request: web.Request) -> web.StreamResponse:
        pbx.stop_moh(request.match_info["channelId"])
        return no_content()

    @route("POST", "/ari/channels/{channelId}/dtmf")
    async def channel_dtmf(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        pbx.send_dtmf(request.match_info["channelId"], params)
        return no_content()

    async def _channel_play(request: web.Request, playback_id: str | None) -> web.StreamResponse:
        params, _ = await params_of(request)
        ch = pbx.channel(request.match_info["channelId"])
        media = [m for v in request.query.getall("media", []) for m in v.split(",") if m]
        if not media and params.get("media"):
            media = params["media"].split(",")
        pid = playback_id or params.get("playbackId")
        return ari_json(pbx.play(ch, media, pid, params.get("lang")), 201)  # created, like Asterisk

    @route("POST", "/ari/channels/{channelId}/play")
    async def channel_play(request: web.Request) -> web.StreamResponse:
        return await _channel_play(request, None)

    @route("POST", "/ari/channels/{channelId}/play/{playbackId}")
    async def channel_play_with_id(request: web.Request) -> web.StreamResponse:
        return await _channel_play(request, request.match_info["playbackId"])

    @route("POST", "/ari/channels/{channelId}/record")
    async def channel_record(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        return ari_json(pbx.record(pbx.channel(request.match_info["channelId"]), params), 201)

    @route("GET", "/ari/channels/{channelId}/variable")
    async def channel_var_get(request: web.Request) -> web.StreamResponse:
        return ari_json(pbx.get_var(request.match_info["channelId"], request.query.get("variable")))

    @route("POST", "/ari/channels/{channelId}/variable")
    async def channel_var_set(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        pbx.set_var(request.match_info["channelId"], params.get("variable"), params.get("value"))
        return no_content()

    @route("POST", "/ari/channels/{channelId}/snoop")
    async def channel_snoop(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        return ari_json(pbx.snoop(request.match_info["channelId"], params, params.get("snoopId")))

    @route("POST", "/ari/channels/{channelId}/snoop/{snoopId}")
    async def channel_snoop_with_id(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        return ari_json(pbx.snoop(request.match_info["channelId"], params, request.match_info["snoopId"]))

    # ----------------------------------------------------------------------------------------- bridges
    @route("GET", "/ari/bridges")
    async def bridge_list(request: web.Request) -> web.StreamResponse:
        return ari_json([b.json() for b in pbx.bridges.values()])

    @route("POST", "/ari/bridges")
    async def bridge_create(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        return ari_json(pbx.create_bridge(params, None))

    @route("POST", "/ari/bridges/{bridgeId}")
    async def bridge_create_with_id(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        return ari_json(pbx.create_bridge(params, request.match_info["bridgeId"]))

    @route("GET", "/ari/bridges/{bridgeId}")
    async def bridge_get(request: web.Request) -> web.StreamResponse:
        return ari_json(pbx.bridge(request.match_info["bridgeId"]).json())

    @route("DELETE", "/ari/bridges/{bridgeId}")
    async def bridge_destroy(request: web.Request) -> web.StreamResponse:
        pbx.destroy_bridge(request.match_info["bridgeId"])
        return no_content()

    def channel_ids(request: web.Request, params: dict[str, str]) -> list[str]:
        ids = [c for v in request.query.getall("channel", []) for c in v.split(",") if c]
        if not ids and params.get("channel"):
            ids = [c for c in params["channel"].split(",") if c]
        return ids

    @route("POST", "/ari/bridges/{bridgeId}/addChannel")
    async def bridge_add(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        pbx.add_to_bridge(request.match_info["bridgeId"], channel_ids(request, params), params)
        return no_content()

    @route("POST", "/ari/bridges/{bridgeId}/removeChannel")
    async def bridge_remove(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        pbx.remove_from_bridge(request.match_info["bridgeId"], channel_ids(request, params))
        return no_content()

    async def _bridge_play(request: web.Request, playback_id: str | None) -> web.StreamResponse:
        params, _ = await params_of(request)
        br: Bridge = pbx.bridge(request.match_info["bridgeId"])
        media = [m for v in request.query.getall("media", []) for m in v.split(",") if m]
        if not media and params.get("media"):
            media = params["media"].split(",")
        return ari_json(pbx.play(br, media, playback_id or params.get("playbackId"), params.get("lang")), 201)

    @route("POST", "/ari/bridges/{bridgeId}/play")
    async def bridge_play(request: web.Request) -> web.StreamResponse:
        return await _bridge_play(request, None)

    @route("POST", "/ari/bridges/{bridgeId}/play/{playbackId}")
    async def bridge_play_with_id(request: web.Request) -> web.StreamResponse:
        return await _bridge_play(request, request.match_info["playbackId"])

    @route("POST", "/ari/bridges/{bridgeId}/record")
    async def bridge_record(request: web.Request) -> web.StreamResponse:
        params, _ = await params_of(request)
        return ari_json(pbx.record(pbx.bridge(request.match_info["bridgeId"]), params), 201)

    # ---------------------------------------------------------------------- applications, playbacks, ...
    @route("GET", "/ari/applications")
    async def application_list(request: web.Request) -> web.StreamResponse:
        return ari_json([pbx.application_json(s) for s in pbx.apps.values()])

    @route("GET", "/ari/applications/{applicationName}")
    async def application_get(request: web.Request) -> web.StreamResponse:
        state = pbx.apps.get(request.match_info["applicationName"])
        if state is None:
            raise AriError(404, "Application not found")
        return ari_json(pbx.application_json(state))

    @route("GET", "/ari/playbacks/{playbackId}")
    async def playback_get(request: web.Request) -> web.StreamResponse:
        pb = pbx.playbacks.get(request.match_info["playbackId"])
        if pb is None:
            raise AriError(404, "Playback not found")
        return ari_json(pb.json())

    @route("DELETE", "/ari/playbacks/{playbackId}")
    async def playback_stop(request: web.Request) -> web.StreamResponse:
        pbx.stop_playback(request.match_info["playbackId"])
        return no_content()

    @route("GET", "/ari/recordings/live/{recordingName}")
    async def recording_get(request: web.Request) -> web.StreamResponse:
        rec = pbx.live_recordings.get(request.match_info["recordingName"])
        if rec is None:
            raise AriError(404, "Recording not found")
        return ari_json(rec.json())

    @route("POST", "/ari/recordings/live/{recordingName}/stop")
    async def recording_stop(request: web.Request) -> web.StreamResponse:
        pbx.stop_recording(request.match_info["recordingName"])
        return no_content()

    @route("DELETE", "/ari/recordings/live/{recordingName}")
    async def recording_cancel(request: web.Request) -> web.StreamResponse:
        pbx.stop_recording(request.match_info["recordingName"], cancel=True)
        return no_content()

    @route("GET", "/ari/recordings/stored")
    async def recording_list(request: web.Request) -> web.StreamResponse:
        return ari_json([{"name": r.name, "format": r.format} for r in pbx.stored_recordings.values()])

    def stored(request: web.Request) -> Recording:
        rec = pbx.stored_recordings.get(request.match_info["recordingName"])
        if rec is None:
            raise AriError(404, "Recording not found")
        return rec

    @route("GET", "/ari/recordings/stored/{recordingName}")
    async def recording_stored(request: web.Request) -> web.StreamResponse:
        rec = stored(request)
        return ari_json({"name": rec.name, "format": rec.format})

    @route("GET", "/ari/recordings/stored/{recordingName}/file")
    async def recording_stored_file(request: web.Request) -> web.StreamResponse:
        rec = stored(request)
        mime = STORED_MIME.get(rec.format, "application/octet-stream")
        return web.Response(body=rec.data, content_type=mime)

    @route("DELETE", "/ari/recordings/stored/{recordingName}")
    async def recording_stored_delete(request: web.Request) -> web.StreamResponse:
        rec = stored(request)
        pbx.stored_recordings.pop(rec.name, None)
        return no_content()

    # ---------------------------------------------------------------------------------- /sim inspection
    @route("GET", "/sim/calls")
    async def sim_calls(request: web.Request) -> web.StreamResponse:
        q = request.query
        return ari_json({"calls": pbx.list_calls(q.get("state"), q.get("number"))})

    @route("GET", "/sim/calls/{callId}")
    async def sim_call(request: web.Request) -> web.StreamResponse:
        return ari_json(pbx.call_by_id(request.match_info["callId"]).json())

    @route("POST", "/sim/calls/{callId}/{action}")
    async def sim_call_action(request: web.Request) -> web.StreamResponse:
        body = await read_body(request) or {}
        if not isinstance(body, dict):
            raise AriError(400, "expected a JSON object")
        return ari_json(pbx.call_action(request.match_info["callId"], request.match_info["action"], body))

    @route("POST", "/sim/inbound")
    async def sim_inbound(request: web.Request) -> web.StreamResponse:
        body = await read_body(request) or {}
        if not isinstance(body, dict):
            raise AriError(400, "expected a JSON object")
        return ari_json(pbx.inbound(body))

    @route("PUT", "/sim/plan")
    async def sim_plan(request: web.Request) -> web.StreamResponse:
        try:
            pbx.plan = parse_plan(await read_body(request), base_dir=pbx.plan.base_dir)
        except PlanError as exc:
            raise AriError(400, str(exc)) from None
        return no_content()

    @route("POST", "/sim/events/outage")
    async def sim_events_outage(request: web.Request) -> web.StreamResponse:
        body = await read_body(request) or {}
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 <= seconds <= 3600:
            raise AriError(400, "seconds: expected a number from 0 to 3600")
        outage_until[0] = asyncio.get_running_loop().time() + float(seconds)
        dropped = len(sinks)
        for sink in list(sinks):
            # As if the connection vanished: closed at once; its app goes inactive and events are dropped.
            await sink.ws.close(code=WSCloseCode.GOING_AWAY)
        return ari_json({"closed": dropped, "seconds": seconds})

    @route("GET", "/sim/stats")
    async def sim_stats(request: web.Request) -> web.StreamResponse:
        return ari_json(pbx.stats())

    async def on_shutdown(app: web.Application) -> None:
        for sink in list(sinks):
            await sink.ws.close(code=WSCloseCode.GOING_AWAY)
        await pbx.shutdown()

    app.on_shutdown.append(on_shutdown)
    return app
