"""A local SMS stand-in that speaks the Twilio Messages REST API as the official SDK calls it, for the demo
and the tests (the product points the SDK at it with ``TWILIO_API_BASE``).

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (HTTP basic auth: Account SID and Auth Token;
  form body ``To``, ``From``, ``Body``, ``StatusCallback``) answers ``201`` with a Twilio message resource
  (``sid`` "SM...", ``status`` "queued", ``num_segments``, ``price``), then posts the status callbacks
  ``sent`` and ``delivered`` (or the scripted ``undelivered`` / ``failed``) to ``StatusCallback``.
  ``GET .../Messages/{sid}.json`` reads one back.
* Every request it makes to the product is signed like Twilio's (``X-Twilio-Signature``: base64 of
  HMAC-SHA1 over the URL followed by the sorted form parameters, keys and values concatenated; our own
  implementation, not the SDK's), with the Auth Token.
* Scripted "people", by the number texted (JSON or YAML, like the call plan)::

      {"+15550001": {"reply": "1", "after": 40},     # replies "1" 40 s after the message was delivered
       "+15550002": {"never": true},                  # never replies
       "+15550003": {"status": "undelivered"},        # the carrier cannot deliver it (or "failed")
       "+15550004": {"error": 21610},                 # the API refuses it: the recipient opted out
       "+15550005": {"http_status": 503},             # the API is down for this number
       "+15550006": {"delay": 30}}                    # the API answers after 30 s (client timeouts)

* ``GET /sim/sms/messages[?to=N]``: what was sent (sid, to, from, body, status, time);
  ``POST /sim/sms/reply {"from", "to", "body"}``: a person replies now (signed, to the inbound URL);
  ``PUT /sim/sms/script``: replace the script.

Run it alone (``python -m telephony.sim.sms --port 8089 --auth-token T --inbound-url URL --script F``) or
mount it in another aiohttp app (the PBX simulator's) with :func:`add_sms_routes`. It imports nothing of the
project beyond the standard library, aiohttp and PyYAML.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientSession, ClientTimeout, web

logger = logging.getLogger("telephony.sim.sms")

API_VERSION = "2010-04-01"
PRICE_PER_SEGMENT = "-0.00790"
_GSM = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€\f"
)


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str | list[str]]) -> str:
    """X-Twilio-Signature of a request to ``url`` with form ``params``: base64(HMAC-SHA1(token, url +
    key1 + value1 + key2 + value2 ...)), keys sorted, a key's values sorted."""
    data = url
    for key in sorted(params):
        value = params[key]
        for item in sorted(set(value)) if isinstance(value, list) else [value]:
            data += key + item
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def segments_of(text: str) -> int:
    if all(ch in _GSM for ch in text):
        return 1 if len(text) <= 160 else -(-len(text) // 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


def load_script(path: str | None) -> dict[str, dict[str, Any]]:
    if not path:
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    return validate_script(data)


def validate_script(data: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError("the SMS script maps numbers to objects")
    return {str(number): dict(entry) for number, entry in data.items()}


def _sid() -> str:
    return "SM" + secrets.token_hex(16)


@dataclass
class SentMessage:
    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status_callback: str
    status: str = "queued"
    error_code: int | None = None
    created: float = field(default_factory=time.time)

    def resource(self) -> dict[str, Any]:
        segments = segments_of(self.body)
        date = formatdate(self.created, usegmt=True)
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": date,
            "date_updated": formatdate(time.time(), usegmt=True),
            "date_sent": date if self.status in ("sent", "delivered", "undelivered") else None,
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": None,
            "from": self.from_,
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": str(segments),
            "price": f"-{0.0079 * segments:.5f}" if self.status in ("sent", "delivered") else None,
            "price_unit": "USD",
            "status": self.status,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
            "to": self.to,
            "uri": uri,
        }

    def listing(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status": self.status,
            "time": self.created,
        }


class SmsStandIn:
    """The stand-in's state: the Auth Token it checks and signs with, where replies go, the script."""

    def __init__(
        self,
        *,
        auth_token: str,
        inbound_url: str = "",
        account_sid: str = "",
        script: dict[str, dict[str, Any]] | None = None,
        status_delay_s: float = 0.1,
    ) -> None:
        self.auth_token = auth_token
        self.inbound_url = inbound_url
        self.account_sid = account_sid  # empty: any Account SID (with the right token) is accepted
        self.script = script or {}
        self.status_delay_s = status_delay_s
        self.sent: list[SentMessage] = []
        self.by_sid: dict[str, SentMessage] = {}
        self.replies: list[dict[str, Any]] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self._session: ClientSession | None = None

    # ------------------------------------------------------------------------------------------ http
    def session(self) -> ClientSession:
        if self._session is None or self._session.closed:
            self._session = ClientSession(timeout=ClientTimeout(total=10))
        return self._session

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def post_signed(self, url: str, params: dict[str, str]) -> int:
        """POST ``params`` (form) to ``url``, signed like Twilio; the status, or 0 when unreachable."""
        headers = {"X-Twilio-Signature": twilio_signature(self.auth_token, url, params)}
        try:
            async with self.session().post(url, data=params, headers=headers) as response:
                await response.read()
                return response.status
        except (TimeoutError, OSError) as exc:  # aiohttp's client errors are OSErrors
            logger.warning("SMS stand-in: POST %s failed: %s", url, exc)
            return 0

    # ------------------------------------------------------------------------------------ behaviour
    def authorized(self, request: web.Request, account_sid: str) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if self.account_sid and not hmac.compare_digest(user, self.account_sid):
            return False
        return hmac.compare_digest(user, account_sid) and hmac.compare_digest(password, self.auth_token)

    async def lifecycle(self, message: SentMessage) -> None:
        """Status callbacks (sent, then the final status), then the person's scripted reply."""
        entry = self.script.get(message.to, {})
        final = str(entry.get("status") or "delivered")
        await asyncio.sleep(self.status_delay_s)
        if final != "failed":
            await self.set_status(message, "sent")
            await asyncio.sleep(self.status_delay_s)
        await self.set_status(
            message,
            final,
            error_code=30003 if final == "undelivered" else 30008 if final == "failed" else None,
        )
        if final != "delivered" or entry.get("never") or "reply" not in entry:
            return
        await asyncio.sleep(float(entry.get("after", 1)))
        await self.reply(from_=message.to, to=message.from_, body=str(entry["reply"]))

    async def set_status(self, message: SentMessage, status: str, *, error_code: int | None = None) -> None:
        message.status = status
        message.error_code = error_code
        if not message.status_callback:
            return
        params = {
            "AccountSid": message.account_sid,
            "ApiVersion": API_VERSION,
            "From": message.from_,
            "MessageSid": message.sid,
            "MessageStatus": status,
            "SmsSid": message.sid,
            "SmsStatus": status,
            "To": message.to,
        }
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        await self.post_signed(message.status_callback, params)

    async def reply(self, *, from_: str, to: str, body: str) -> dict[str, Any]:
        """A person texts ``body`` from ``from_`` to the product's number ``to`` (the inbound webhook)."""
        sid = _sid()
        params = {
            "AccountSid": self.account_sid or (self.sent[-1].account_sid if self.sent else ""),
            "ApiVersion": API_VERSION,
            "Body": body,
            "From": from_,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": str(segments_of(body)),
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to,
        }
        status = await self.post_signed(self.inbound_url, params) if self.inbound_url else 0
        record = {
            "sid": sid,
            "from": from_,
            "to": to,
            "body": body,
            "time": time.time(),
            "webhook_status": status,
        }
        self.replies.append(record)
        return record


STANDIN_KEY = web.AppKey("sms_standin", SmsStandIn)


def _twilio_error(status: int, code: int, message: str) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
    )


def add_sms_routes(app: web.Application, standin: SmsStandIn) -> None:
    """Mount the stand-in's routes on ``app`` (and close its client session with the app)."""
    app[STANDIN_KEY] = standin

    async def create_message(request: web.Request) -> web.StreamResponse:
        account_sid = request.match_info["account_sid"]
        if not standin.authorized(request, account_sid):
            return _twilio_error(401, 20003, "Authenticate")
        form = await request.post()
        to, from_, body = str(form.get("To", "")), str(form.get("From", "")), str(form.get("Body", ""))
        if not to:
            return _twilio_error(400, 21604, "A 'To' phone number is required.")
        if not body:
            return _twilio_error(400, 21602, "Message body is required.")
        entry = standin.script.get(to, {})
        if entry.get("delay"):
            await asyncio.sleep(float(entry["delay"]))
        if entry.get("http_status"):
            status = int(entry["http_status"])
            return _twilio_error(status, 20500 if status >= 500 else 20429, "Scripted failure")
        if int(entry.get("error") or 0) == 21610:
            return _twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        message = SentMessage(
            sid=_sid(),
            account_sid=account_sid,
            to=to,
            from_=from_,
            body=body,
            status_callback=str(form.get("StatusCallback", "")),
        )
        standin.sent.append(message)
        standin.by_sid[message.sid] = message
        standin.spawn(standin.lifecycle(message))
        logger.info("SMS stand-in: %s to %s: %s", message.sid, to, body)
        return web.json_response(message.resource(), status=201)

    async def get_message(request: web.Request) -> web.StreamResponse:
        account_sid = request.match_info["account_sid"]
        if not standin.authorized(request, account_sid):
            return _twilio_error(401, 20003, "Authenticate")
        message = standin.by_sid.get(request.match_info["sid"])
        if message is None or message.account_sid != account_sid:
            return _twilio_error(404, 20404, "The requested resource was not found")
        return web.json_response(message.resource())

    async def list_messages(request: web.Request) -> web.StreamResponse:
        to = request.query.get("to")
        return web.json_response([m.listing() for m in standin.sent if to is None or m.to == to])

    async def reply_now(request: web.Request) -> web.StreamResponse:
        try:
            data = await request.json()
            sender, to, body = str(data["from"]), str(data["to"]), str(data["body"])
        except (ValueError, KeyError, TypeError):
            return web.json_response({"message": 'give {"from", "to", "body"}'}, status=400)
        return web.json_response(await standin.reply(from_=sender, to=to, body=body))

    async def put_script(request: web.Request) -> web.StreamResponse:
        try:
            standin.script = validate_script(await request.json())
        except ValueError as exc:
            return web.json_response({"message": str(exc)}, status=400)
        return web.json_response(standin.script)

    async def on_cleanup(_app: web.Application) -> None:
        await standin.close()

    base = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages"
    app.router.add_post(f"{base}.json", create_message)
    app.router.add_get(f"{base}/{{sid}}.json", get_message)
    app.router.add_get("/sim/sms/messages", list_messages)
    app.router.add_post("/sim/sms/reply", reply_now)
    app.router.add_put("/sim/sms/script", put_script)
    app.on_cleanup.append(on_cleanup)


def make_app(standin: SmsStandIn) -> web.Application:
    app = web.Application()
    add_sms_routes(app, standin)
    return app


# ---------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m telephony.sim.sms", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8089)
    p.add_argument("--auth-token", required=True, help="the Auth Token it checks and signs webhooks with")
    p.add_argument("--account-sid", default="", help="accept only this Account SID (default: any)")
    p.add_argument("--inbound-url", default="", help="the product's inbound SMS webhook (replies go there)")
    p.add_argument("--script", default=None, help="per-number behaviour, JSON or YAML (see the module doc)")
    p.add_argument("--status-delay", type=float, default=0.1, help="seconds between status callbacks")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    standin = SmsStandIn(
        auth_token=args.auth_token,
        inbound_url=args.inbound_url,
        account_sid=args.account_sid,
        script=load_script(args.script),
        status_delay_s=args.status_delay,
    )
    runner = web.AppRunner(make_app(standin))
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port).start()
    logger.info("SMS stand-in listening on http://%s:%s", args.host, args.port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()


__all__ = ["SmsStandIn", "add_sms_routes", "make_app", "twilio_signature"]
