"""ARI REST status codes and bodies, as Asterisk 22.10.1 answers them (PROTOCOLS.md A1, §1.2, §2-§5).

Everything goes over real HTTP (and the events websocket) to the simulator on a real port.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from typing import Any

import aiohttp
import pytest

from .conftest import APP, PASSWORD, USER, MediaServer, Sim, wait_until

RINGING = "+15550009001"  # never answers: stays ringing while the test pokes at it
ANSWERS = "+15550009002"  # answers at once, silent


@pytest.fixture
def plan_doc() -> dict[str, Any]:
    return {"numbers": {RINGING: "no_answer", ANSWERS: "human"}}


async def originate(sim: Sim, number: str, channel_id: str | None = None, **extra: Any) -> dict[str, Any]:
    params = {
        "endpoint": f"PJSIP/{number}@trunk",
        "app": APP,
        "appArgs": "outbound",
        "channelId": channel_id or str(uuid.uuid4()),
        "timeout": "-1",
        **extra,
    }
    _, body = await sim.request("POST", "/ari/channels", params=params, expect=200)
    return body


async def raw(method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, str], str]:
    """A request without the fixture session's Basic credentials."""
    async with aiohttp.ClientSession() as session, session.request(method, url, **kwargs) as resp:
        return resp.status, dict(resp.headers), await resp.text()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------- authentication


def assert_auth_required(status: int, headers: dict[str, str], text: str) -> None:
    assert status == 401, text
    assert headers.get("WWW-Authenticate", "").startswith('Basic realm="')
    assert headers.get("Content-Type", "").startswith("application/json")
    assert json.loads(text) == {"message": "Authentication required"}


async def test_401_without_credentials(sim: Sim) -> None:
    assert_auth_required(*await raw("GET", f"{sim.ari}/asterisk/info"))
    assert_auth_required(
        *await raw("POST", f"{sim.ari}/channels", params={"endpoint": "PJSIP/1@t", "app": APP})
    )
    assert_auth_required(*await raw("GET", f"{sim.base}/sim/calls"))


async def test_401_with_a_wrong_basic_password(sim: Sim) -> None:
    headers = {"Authorization": aiohttp.encode_basic_auth(USER, "wrong")}
    assert_auth_required(*await raw("GET", f"{sim.ari}/asterisk/info", headers=headers))
    headers = {"Authorization": aiohttp.encode_basic_auth("someone", PASSWORD)}
    assert_auth_required(*await raw("GET", f"{sim.ari}/asterisk/info", headers=headers))


@pytest.mark.parametrize("api_key", [f"{USER}:", USER, f"{USER}:wrong", f":{PASSWORD}", ""])
async def test_401_with_a_bad_api_key(sim: Sim, api_key: str) -> None:
    assert_auth_required(*await raw("GET", f"{sim.ari}/asterisk/info", params={"api_key": api_key}))


async def test_api_key_is_accepted_on_rest(sim: Sim) -> None:
    status, _, text = await raw("GET", f"{sim.ari}/asterisk/info", params={"api_key": f"{USER}:{PASSWORD}"})
    assert status == 200, text
    assert '"version": "22.10.1"' in text or '"version":"22.10.1"' in text


async def test_api_key_password_may_contain_colons() -> None:
    """The value is split at the *first* ':' (res_ari.c): a password with ':' in it still works."""
    from aiohttp import web

    from telephony.sim.engine import Pbx
    from telephony.sim.server import make_app

    runner = web.AppRunner(make_app(Pbx(), user="u", password="a:b:c"), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/ari/asterisk/ping"
        assert (await raw("GET", url, params={"api_key": "u:a:b:c"}))[0] == 200
        assert (await raw("GET", url, params={"api_key": "u:a:b"}))[0] == 401
    finally:
        await runner.cleanup()


async def test_api_key_with_an_empty_password_is_refused_even_if_it_matches() -> None:
    """res_ari.c: the password part of api_key must not be empty, whatever the configured password is."""
    from aiohttp import web

    from telephony.sim.engine import Pbx
    from telephony.sim.server import make_app

    runner = web.AppRunner(make_app(Pbx(), user="u", password=""), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/ari/asterisk/ping"
        assert_auth_required(*await raw("GET", url, params={"api_key": "u:"}))
    finally:
        await runner.cleanup()


async def test_api_key_is_accepted_on_the_events_websocket(sim: Sim) -> None:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            f"{sim.ari}/events", params={"app": APP, "api_key": f"{USER}:{PASSWORD}"}
        )
        try:
            await wait_until(lambda: sim.pbx.active_app(APP), timeout=2)
            cid = str(uuid.uuid4())
            await originate(sim, RINGING, cid)
            msg = await ws.receive_json(timeout=2)
            assert msg["type"] == "Dial" and msg["peer"]["id"] == cid and msg["application"] == APP
        finally:
            await ws.close()


async def test_401_on_the_websocket_upgrade_without_credentials(sim: Sim) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"{sim.ari}/events", params={"app": APP})
        assert info.value.status == 401
        assert info.value.headers is not None and "WWW-Authenticate" in info.value.headers
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"{sim.ari}/events", params={"app": APP, "api_key": f"{USER}:nope"})
        assert info.value.status == 401
    assert not sim.pbx.active_app(APP)


async def test_basic_wins_over_api_key(sim: Sim) -> None:
    """With an Authorization header present, api_key is not even looked at (res_ari.c L486-503)."""
    headers = {"Authorization": aiohttp.encode_basic_auth(USER, "wrong")}
    params = {"api_key": f"{USER}:{PASSWORD}"}
    assert_auth_required(*await raw("GET", f"{sim.ari}/asterisk/info", headers=headers, params=params))
    async with aiohttp.ClientSession(headers=headers) as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"{sim.ari}/events", params={"app": APP, **params})
        assert info.value.status == 401


async def test_events_without_app_is_400(sim: Sim) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await sim.session.ws_connect(f"{sim.ari}/events")
    assert info.value.status == 400
    status, body = await sim.request("GET", "/ari/events")
    assert status == 400 and body == {"message": "HTTP request is missing param: [app]"}


# ---------------------------------------------------------------------------------------------- originate


async def test_originate_without_endpoint_is_400(sim: Sim) -> None:
    status, body = await sim.request("POST", "/ari/channels", params={"app": APP})
    assert status == 400 and "message" in body


@pytest.mark.parametrize("endpoint", ["PJSIP", "PJSIP/", "/1234"])
async def test_originate_with_an_invalid_endpoint_is_400(sim: Sim, endpoint: str) -> None:
    status, body = await sim.request("POST", "/ari/channels", params={"endpoint": endpoint, "app": APP})
    assert (status, body) == (400, {"message": "Invalid endpoint specified"})


async def test_originate_to_an_unknown_technology_is_500_allocation_failed(sim: Sim) -> None:
    cid = str(uuid.uuid4())
    status, body = await sim.request(
        "POST", "/ari/channels", params={"endpoint": "Foo/123", "app": APP, "channelId": cid}
    )
    assert (status, body) == (500, {"error": "Allocation failed"})
    assert (await sim.request("GET", f"/ari/channels/{cid}"))[0] == 404  # never placed


async def test_originate_with_a_duplicate_channel_id_is_409(sim: Sim) -> None:
    cid = str(uuid.uuid4())
    await originate(sim, RINGING, cid)
    status, body = await sim.request(
        "POST", "/ari/channels", params={"endpoint": f"PJSIP/{RINGING}@trunk", "app": APP, "channelId": cid}
    )
    assert (status, body) == (409, {"message": "Channel with given unique ID already exists"})
    # the path form too
    status, body = await sim.request(
        "POST", f"/ari/channels/{cid}", params={"endpoint": f"PJSIP/{RINGING}@trunk", "app": APP}
    )
    assert (status, body) == (409, {"message": "Channel with given unique ID already exists"})
    # and otherChannelId colliding with a live channel
    status, body = await sim.request(
        "POST", "/ari/channels", params={"endpoint": "Local/human@ctx", "app": APP, "otherChannelId": cid}
    )
    assert status == 409


async def test_originate_returns_200_and_a_down_snapshot(sim: Sim) -> None:
    cid = str(uuid.uuid4())
    body = await originate(sim, RINGING, cid, callerId='"Acme" <+15550001111>')
    assert body["id"] == cid and body["state"] == "Down"
    assert body["name"].startswith("PJSIP/trunk-")
    assert body["dialplan"]["app_name"] == "AppDial2"
    assert body["dialplan"]["app_data"] == "(Outgoing Line)"
    assert body["caller"] == {"name": "Acme", "number": "+15550001111"}
    for key in ("protocol_id", "connected", "accountcode", "creationtime", "language"):
        assert key in body
    assert body["creationtime"].endswith("+0000")
    status, again = await sim.request("GET", f"/ari/channels/{cid}")
    assert status == 200 and again["id"] == cid


async def test_originate_path_form_uses_the_path_id(sim: Sim) -> None:
    cid = str(uuid.uuid4())
    _, body = await sim.request(
        "POST", f"/ari/channels/{cid}", params={"endpoint": f"PJSIP/{RINGING}@trunk", "app": APP}, expect=200
    )
    assert body["id"] == cid


async def test_originate_variables_land_on_the_channel(sim: Sim) -> None:
    cid = str(uuid.uuid4())
    await sim.request(
        "POST",
        "/ari/channels",
        params={"endpoint": f"PJSIP/{RINGING}@trunk", "app": APP, "channelId": cid},
        json={"variables": {"CAMPAIGN_ID": "42", "LEAD": {"value": "7", "report_events": True}}},
        expect=200,
    )
    status, body = await sim.request(
        "GET", f"/ari/channels/{cid}/variable", params={"variable": "CAMPAIGN_ID"}
    )
    assert (status, body) == (200, {"value": "42"})
    status, body = await sim.request("GET", f"/ari/channels/{cid}/variable", params={"variable": "LEAD"})
    assert (status, body) == (200, {"value": "7"})
    status, body = await sim.request("GET", f"/ari/channels/{cid}/variable", params={"variable": "NOPE"})
    assert (status, body) == (404, {"message": "Provided variable was not found"})
    status, _ = await sim.request("GET", f"/ari/channels/{cid}/variable")
    assert status == 400


async def test_originate_parameters_in_the_json_body(sim: Sim) -> None:
    cid = str(uuid.uuid4())
    _, body = await sim.request(
        "POST",
        "/ari/channels",
        json={"endpoint": f"PJSIP/{RINGING}@trunk", "app": APP, "channelId": cid},
        expect=200,
    )
    assert body["id"] == cid


@pytest.mark.parametrize("value", [5, None, ["a"], True])
async def test_originate_with_a_non_string_variable_is_400(sim: Sim, value: Any) -> None:
    cid = str(uuid.uuid4())
    status, body = await sim.request(
        "POST",
        "/ari/channels",
        params={"endpoint": f"PJSIP/{RINGING}@trunk", "app": APP, "channelId": cid},
        json={"variables": {"X": value}},
    )
    assert status == 400 and "message" in body
    assert (await sim.request("GET", f"/ari/channels/{cid}"))[0] == 404


async def test_originate_with_invalid_json_is_400(sim: Sim) -> None:
    status, _ = await sim.request(
        "POST",
        "/ari/channels",
        params={"endpoint": f"PJSIP/{RINGING}@trunk", "app": APP},
        data=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400


async def test_originate_other_400s(sim: Sim) -> None:
    ep = f"PJSIP/{RINGING}@trunk"
    status, _ = await sim.request("POST", "/ari/channels", params={"endpoint": ep})  # no app, no extension
    assert status == 400
    status, body = await sim.request(
        "POST", "/ari/channels", params={"endpoint": ep, "app": APP, "originator": "nope"}
    )
    assert (status, body) == (400, {"message": "Provided originator channel was not found"})
    status, _ = await sim.request(
        "POST", "/ari/channels", params={"endpoint": ep, "app": APP, "channelId": "x" * 150}
    )
    assert status == 400
    status, _ = await sim.request(
        "POST", "/ari/channels", params={"endpoint": ep, "app": APP, "timeout": "soon"}
    )
    assert status == 400


# ---------------------------------------------------------------------------------------------- not found


async def test_404_for_an_unknown_channel(sim: Sim) -> None:
    for method, path in (
        ("GET", "/ari/channels/nope"),
        ("DELETE", "/ari/channels/nope"),
        ("POST", "/ari/channels/nope/answer"),
        ("POST", "/ari/channels/nope/play?media=sound:x"),
        ("GET", "/ari/channels/nope/variable?variable=X"),
    ):
        status, body = await sim.request(method, path)
        assert (status, body) == (404, {"message": "Channel not found"}), (method, path)


async def test_404_for_an_unknown_bridge(sim: Sim) -> None:
    for method, path in (
        ("GET", "/ari/bridges/nope"),
        ("DELETE", "/ari/bridges/nope"),
        ("POST", "/ari/bridges/nope/addChannel?channel=x"),
        ("POST", "/ari/bridges/nope/removeChannel?channel=x"),
        ("POST", "/ari/bridges/nope/play?media=sound:x"),
    ):
        status, body = await sim.request(method, path)
        assert (status, body) == (404, {"message": "Bridge not found"}), (method, path)


async def test_url_ending_in_a_slash_is_404(sim: Sim) -> None:
    for path in ("/ari/channels/", "/ari/asterisk/info/", "/ari/bridges/"):
        status, body = await sim.request("GET", path)
        assert (status, body) == (404, {"message": "ARI URLs do not end with a slash"}), path


async def test_unknown_resource_is_404_json(sim: Sim) -> None:
    status, body = await sim.request("GET", "/ari/nothing/here")
    assert status == 404 and isinstance(body, dict) and "message" in body


# ------------------------------------------------------------------------------- not in Stasis (ringing)


async def test_409_for_a_channel_still_ringing(sim: Sim) -> None:
    cid = (await originate(sim, RINGING))["id"]
    await wait_until(lambda: sim.pbx.channels[cid].state == "Ringing", timeout=2)
    not_in_stasis = {"message": "Channel not in Stasis application"}
    status, body = await sim.request(
        "POST", f"/ari/channels/{cid}/play", params={"media": "sound:hello-world"}
    )
    assert (status, body) == (409, not_in_stasis)
    status, body = await sim.request("POST", f"/ari/channels/{cid}/answer")
    assert (status, body) == (409, not_in_stasis)
    status, body = await sim.request(
        "POST", f"/ari/channels/{cid}/variable", params={"variable": "X", "value": "1"}
    )
    assert (status, body) == (409, not_in_stasis)
    status, body = await sim.request("POST", f"/ari/channels/{cid}/dtmf", params={"dtmf": "1"})
    assert (status, body) == (409, not_in_stasis)
    status, body = await sim.request(
        "POST", f"/ari/channels/{cid}/record", params={"name": "r", "format": "wav"}
    )
    assert (status, body) == (409, not_in_stasis)
    status, body = await sim.request("POST", f"/ari/channels/{cid}/continue")
    assert (status, body) == (409, not_in_stasis)
    # addChannel for a channel that is not in Stasis is 422, not 409
    bid = str(uuid.uuid4())
    await sim.request("POST", "/ari/bridges", params={"bridgeId": bid}, expect=200)
    status, body = await sim.request("POST", f"/ari/bridges/{bid}/addChannel", params={"channel": cid})
    assert (status, body) == (422, not_in_stasis)
    _, bridge = await sim.request("GET", f"/ari/bridges/{bid}", expect=200)
    assert bridge["channels"] == []
    # GET of a variable works outside Stasis (resource_channels.c)
    assert (await sim.request("GET", f"/ari/channels/{cid}/variable", params={"variable": "UNIQUEID"}))[
        1
    ] == {"value": cid}
    # the channel is still ringing and can be hung up
    await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)


async def test_play_on_a_stasis_channel_that_is_not_up_is_412(sim: Sim) -> None:
    """412 needs a channel in Stasis but not Up. The simulator has no /channels/create and answers every
    channel before Stasis, so no such channel can exist: the only check left is that Up channels play."""
    stream = await sim.events(APP)
    try:
        cid = (await originate(sim, ANSWERS))["id"]
        await stream.wait_type("StasisStart", cid, timeout=3)
        assert sim.pbx.channels[cid].state == "Up"
        status, _ = await sim.request("POST", f"/ari/channels/{cid}/play", params={"media": "digits:1"})
        assert status == 201
        sim.pbx.channels[cid].state = "Ringing"  # what a Stasis(app) before Answer() would leave
        status, body = await sim.request("POST", f"/ari/channels/{cid}/play", params={"media": "digits:1"})
        assert (status, body) == (412, {"message": "Channel in invalid state"})
        status, body = await sim.request("POST", f"/ari/channels/{cid}/dtmf", params={"dtmf": "1"})
        assert (status, body) == (412, {"message": "Channel in invalid state"})
    finally:
        await stream.close()


# ----------------------------------------------------------------------------------------------- hangup


async def test_delete_with_reason_busy_gives_cause_17(sim: Sim) -> None:
    stream = await sim.events(APP)
    try:
        cid = (await originate(sim, ANSWERS))["id"]
        await stream.wait_type("StasisStart", cid, timeout=3)
        status, _ = await sim.request("DELETE", f"/ari/channels/{cid}", params={"reason": "busy"})
        assert status == 204
        request = await stream.wait_type("ChannelHangupRequest", cid)
        assert request["cause"] == 32 and request["soft"] is True
        destroyed = await stream.wait_type("ChannelDestroyed", cid)
        assert destroyed["cause"] == 17 and destroyed["cause_txt"] == "User busy"
        types = [e["type"] for e in stream.about(cid)]
        assert types.index("StasisEnd") < types.index("ChannelDestroyed")
        _, call = await sim.request("GET", f"/sim/calls/{cid}", expect=200)
        assert call["cause"] == 17 and call["ended_by"] == "app"
    finally:
        await stream.close()


async def test_delete_with_reason_code(sim: Sim) -> None:
    stream = await sim.events(APP)
    try:
        cid = (await originate(sim, RINGING))["id"]
        await sim.request("DELETE", f"/ari/channels/{cid}", params={"reason_code": "27"}, expect=204)
        destroyed = await stream.wait_type("ChannelDestroyed", cid)
        assert destroyed["cause"] == 27 and destroyed["cause_txt"] == "Destination out of order"
    finally:
        await stream.close()


async def test_delete_with_bad_reasons_is_400_and_keeps_the_channel(sim: Sim) -> None:
    cid = (await originate(sim, RINGING))["id"]
    status, body = await sim.request("DELETE", f"/ari/channels/{cid}", params={"reason": "bogus"})
    assert status == 400 and "message" in body
    status, body = await sim.request(
        "DELETE", f"/ari/channels/{cid}", params={"reason": "busy", "reason_code": "17"}
    )
    assert status == 400 and "message" in body
    status, _ = await sim.request("DELETE", f"/ari/channels/{cid}", params={"reason_code": "x"})
    assert status == 400
    assert (await sim.request("GET", f"/ari/channels/{cid}"))[0] == 200
    await sim.request("DELETE", f"/ari/channels/{cid}", expect=204)
    assert (await sim.request("GET", f"/ari/channels/{cid}"))[0] == 404
    assert (await sim.request("DELETE", f"/ari/channels/{cid}"))[0] == 404


# ---------------------------------------------------------------------------------------------- bridges


async def test_bridge_create_with_a_duplicate_id_is_409(sim: Sim) -> None:
    bid = str(uuid.uuid4())
    _, body = await sim.request(
        "POST", "/ari/bridges", params={"bridgeId": bid, "type": "mixing"}, expect=200
    )
    assert body["id"] == bid and body["bridge_type"] == "mixing"
    status, body = await sim.request("POST", "/ari/bridges", params={"bridgeId": bid})
    assert status == 409 and "message" in body
    status, _ = await sim.request("POST", f"/ari/bridges/{bid}")
    assert status == 409


async def test_bridge_create_with_an_invalid_type_is_400(sim: Sim) -> None:
    for kind in ("mixing,holding", "nonsense"):
        status, _ = await sim.request("POST", "/ari/bridges", params={"type": kind})
        assert status == 400, kind


async def test_remove_a_channel_that_is_not_in_the_bridge_is_422(sim: Sim) -> None:
    stream = await sim.events(APP)
    try:
        cid = (await originate(sim, ANSWERS))["id"]
        await stream.wait_type("StasisStart", cid, timeout=3)
        b1, b2 = str(uuid.uuid4()), str(uuid.uuid4())
        await sim.request("POST", "/ari/bridges", params={"bridgeId": b1}, expect=200)
        await sim.request("POST", "/ari/bridges", params={"bridgeId": b2}, expect=200)
        status, body = await sim.request("POST", f"/ari/bridges/{b1}/removeChannel", params={"channel": cid})
        assert status == 422 and "message" in body
        await sim.request("POST", f"/ari/bridges/{b2}/addChannel", params={"channel": cid}, expect=204)
        status, _ = await sim.request("POST", f"/ari/bridges/{b1}/removeChannel", params={"channel": cid})
        assert status == 422
        # an unknown channel is 400, a missing parameter 400
        status, _ = await sim.request("POST", f"/ari/bridges/{b2}/removeChannel", params={"channel": "nope"})
        assert status == 400
        status, _ = await sim.request("POST", f"/ari/bridges/{b2}/addChannel", params={"channel": "nope"})
        assert status == 400
        status, _ = await sim.request("POST", f"/ari/bridges/{b2}/addChannel")
        assert status == 400
        await sim.request("POST", f"/ari/bridges/{b2}/removeChannel", params={"channel": cid}, expect=204)
        _, bridge = await sim.request("GET", f"/ari/bridges/{b2}", expect=200)
        assert bridge["channels"] == []
    finally:
        await stream.close()


# ----------------------------------------------------------------------------------------- externalMedia


def em_params(media: MediaServer | None, **overrides: str) -> dict[str, str]:
    media_id = str(uuid.uuid4())
    params = {
        "app": APP,
        "external_host": media.address if media else "127.0.0.1:9",
        "encapsulation": "audiosocket",
        "transport": "tcp",
        "format": "slin16",
        "data": media_id,
        "channelId": media_id,
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v != ""}


async def test_external_media_without_data_is_400(sim: Sim, media_server: MediaServer) -> None:
    status, body = await sim.request(
        "POST", "/ari/channels/externalMedia", params=em_params(media_server, data="")
    )
    assert (status, body) == (400, {"message": "data can not be empty"})
    assert media_server.connections == []


async def test_external_media_with_a_non_uuid_data_is_500(sim: Sim, media_server: MediaServer) -> None:
    status, body = await sim.request(
        "POST", "/ari/channels/externalMedia", params=em_params(media_server, data="not-a-uuid")
    )
    assert (status, body) == (500, {"error": "Allocation failed"})


async def test_external_media_without_format_is_400(sim: Sim, media_server: MediaServer) -> None:
    status, body = await sim.request(
        "POST", "/ari/channels/externalMedia", params=em_params(media_server, format="")
    )
    assert status == 400 and "message" in body


async def test_external_media_without_app_is_400(sim: Sim, media_server: MediaServer) -> None:
    status, body = await sim.request(
        "POST", "/ari/channels/externalMedia", params=em_params(media_server, app="")
    )
    assert (status, body) == (400, {"message": "app cannot be empty"})


@pytest.mark.parametrize(
    "host", ["", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", ":9092", "127.0.0.1:0", "127.0.0.1:70000"]
)
async def test_external_media_with_a_bad_external_host_is_400(sim: Sim, host: str) -> None:
    params = em_params(None)
    params["external_host"] = host
    status, body = await sim.request("POST", "/ari/channels/externalMedia", params=params)
    assert status == 400 and "message" in body


async def test_external_media_rtp_udp_is_501(sim: Sim) -> None:
    params = em_params(None, encapsulation="rtp", transport="udp")
    status, body = await sim.request("POST", "/ari/channels/externalMedia", params=params)
    assert status == 501 and "message" in body
    # the default pair is rtp/udp too
    params = em_params(None, encapsulation="", transport="")
    assert (await sim.request("POST", "/ari/channels/externalMedia", params=params))[0] == 501


async def test_external_media_with_a_mismatched_pair_is_400(sim: Sim) -> None:
    params = em_params(None, encapsulation="audiosocket", transport="udp")
    assert (await sim.request("POST", "/ari/channels/externalMedia", params=params))[0] == 400


async def test_external_media_with_a_duplicate_channel_id_is_409(sim: Sim, media_server: MediaServer) -> None:
    stream = await sim.events(APP)
    try:
        caller = (await originate(sim, RINGING))["id"]
        params = em_params(media_server, channelId=caller)
        status, body = await sim.request("POST", "/ari/channels/externalMedia", params=params)
        assert (status, body) == (409, {"message": "Channel with given unique ID already exists"})
        # a channel id used by a live externalMedia channel too
        first = em_params(media_server)
        await sim.request("POST", "/ari/channels/externalMedia", params=first, expect=200)
        await stream.wait_type("StasisStart", first["channelId"], timeout=3)
        status, _ = await sim.request(
            "POST",
            "/ari/channels/externalMedia",
            params=em_params(media_server, channelId=first["channelId"]),
        )
        assert status == 409
        assert len(media_server.connections) == 1  # refused before connecting
    finally:
        await stream.close()


async def test_external_media_into_an_app_with_no_websocket_is_hung_up(
    sim: Sim, media_server: MediaServer
) -> None:
    """Like A11: the channel is created (200, the socket connected) but Stasis fails and it is hung up."""
    params = em_params(media_server)
    await sim.request("POST", "/ari/channels/externalMedia", params=params, expect=200)
    await wait_until(lambda: params["channelId"] not in sim.pbx.channels, timeout=2)
    await wait_until(
        lambda: bool(media_server.connections) and media_server.connections[0].eof_at is not None, timeout=2
    )


async def test_external_media_with_nothing_listening_is_500_within_2_5_s(sim: Sim) -> None:
    port = free_port()
    params = em_params(None, external_host=f"127.0.0.1:{port}")
    started = time.monotonic()
    status, body = await sim.request("POST", "/ari/channels/externalMedia", params=params)
    elapsed = time.monotonic() - started
    assert (status, body) == (500, {"error": "Allocation failed"})
    assert elapsed < 2.5
    assert (await sim.request("GET", f"/ari/channels/{params['channelId']}"))[0] == 404
    assert params["data"] not in sim.pbx.legs


async def test_external_media_connect_timeout_is_500_within_2_5_s(sim: Sim) -> None:
    """A listener that never accepts (backlog full): the 2 s connect timeout of res_audiosocket applies."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        # fill the accept queue so further connects hang in SYN_SENT on Linux
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect(listener.getsockname())
            except BlockingIOError:
                pass
            fillers.append(s)
        await asyncio.sleep(0.05)
        params = em_params(None, external_host=f"127.0.0.1:{listener.getsockname()[1]}")
        started = time.monotonic()
        status, body = await sim.request("POST", "/ari/channels/externalMedia", params=params)
        elapsed = time.monotonic() - started
        if status == 200:
            pytest.skip("the kernel accepted the connection despite a full backlog")
        assert (status, body) == (500, {"error": "Allocation failed"})
        assert elapsed < 2.5
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_external_media_success_body(sim: Sim, media_server: MediaServer) -> None:
    stream = await sim.events(APP)
    try:
        params = em_params(media_server)
        _, body = await sim.request("POST", "/ari/channels/externalMedia", params=params, expect=200)
        assert body["id"] == params["channelId"]
        assert body["name"] == f"AudioSocket/{media_server.address}-{params['data']}"
        assert body["channelvars"] == {
            "AUDIOSOCKET_SERVICE": media_server.address,
            "AUDIOSOCKET_UUID": params["data"],
        }
        start = await stream.wait_type("StasisStart", params["channelId"], timeout=3)
        assert start["args"] == [params["data"]]
        assert start["channel"]["state"] == "Up"
        # the connection was made during the HTTP request; the UUID comes first
        await wait_until(lambda: bool(media_server.connections and media_server.connections[0].frames))
        conn = media_server.by_uuid(params["data"])
        assert conn.frames[0][1] == 0x01
    finally:
        await stream.close()
