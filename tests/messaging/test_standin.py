"""The SMS stand-in's own pieces: its HMAC-SHA1 signature is the one Twilio's SDK validates, and it mounts
in another aiohttp app (the PBX simulator's), whose /sim credentials then guard /sim/sms."""

from __future__ import annotations

import base64

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from twilio.request_validator import RequestValidator

from telephony.sim.sms import SmsStandIn, add_sms_routes, twilio_signature


def test_its_signature_is_the_one_the_sdk_validates():
    validator = RequestValidator("tok")
    cases = [
        ("https://example.com/webhooks/sms/twilio/x/inbound", {"Body": "1", "From": "+1555", "To": "+1666"}),
        ("http://127.0.0.1:8000/status?m=7", {"MessageStatus": "delivered", "Body": "é ünïcode 😀"}),
        ("http://h/p", {}),
    ]
    for url, params in cases:
        signature = twilio_signature("tok", url, params)
        assert signature == validator.compute_signature(url, params)
        assert validator.validate(url, params, signature)
        assert not validator.validate(url, {**params, "Extra": "x"}, signature)


async def test_it_mounts_in_another_app_and_answers_like_twilio():
    app = web.Application()
    add_sms_routes(app, SmsStandIn(auth_token="tok", status_delay_s=0))
    async with TestClient(TestServer(app)) as client:
        auth = {"Authorization": "Basic " + base64.b64encode(b"AC1:tok").decode()}
        form = {"To": "+15550001", "From": "+15550002", "Body": "hi"}
        created = await client.post("/2010-04-01/Accounts/AC1/Messages.json", data=form, headers=auth)
        assert created.status == 201
        body = await created.json()
        assert body["sid"].startswith("SM") and body["status"] == "queued" and body["num_segments"] == "1"
        fetched = await client.get(f"/2010-04-01/Accounts/AC1/Messages/{body['sid']}.json", headers=auth)
        assert (await fetched.json())["sid"] == body["sid"]
        wrong = await client.post(
            "/2010-04-01/Accounts/AC1/Messages.json", data={"To": "+1", "Body": "x"},
            headers={"Authorization": "Basic " + base64.b64encode(b"AC1:nope").decode()},
        )  # fmt: skip
        assert wrong.status == 401 and (await wrong.json())["code"] == 20003
        listed = await (await client.get("/sim/sms/messages")).json()
        assert [(m["to"], m["body"]) for m in listed] == [("+15550001", "hi")]
