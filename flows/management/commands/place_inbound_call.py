"""``manage.py place_inbound_call --did +15550170000 --from +15550179999 [--say "..."]``: ask the PBX
simulator to place an inbound call to a DID, as a caller on a trunk would (its ``POST /sim/inbound``), so the
whole after-hours race can be watched in the logs and the API.

The simulator is the PBX row's (``--pbx``, the demo's ``demo-sim`` by default): its ARI URL, user, password
and Stasis app. ``--say`` gives the caller a line to say once the agent answers (otherwise the simulator's
plan decides what the caller number does; the demo plan, deploy/sim-plan.yaml, scripts +15550179999).
This talks HTTP to the simulator only: a real Asterisk has no such endpoint (call the DID from a phone).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urljoin

import httpx
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaigns.models import Pbx
from campaigns.phone import normalize_phone_number
from campaigns.services.pbx import pbx_password
from flows.selectors import phone_number_for_did
from orchestrator.errors import InvalidInput
from orchestrator.management.commands.runlocal import DEMO_PBX, SIM_ARI_PASSWORD, SIM_ARI_PASSWORD_ENV

DEMO_PBX_NAME = "demo-sim"
HTTP_TIMEOUT_S = 10.0
SAY_MAX = 500


def inbound_request(
    *,
    did: str,
    caller: str,
    app: str,
    name: str = "",
    say: str = "",
    say_at: float = 2.0,
    hangup_after: float = 90,
) -> dict[str, Any]:
    """The body of the simulator's ``POST /sim/inbound``."""
    # Unanswered, as the shipped dialplan hands a DID to the Stasis app (the flow decides whether to answer).
    body: dict[str, Any] = {
        "did": did, "caller_number": caller, "caller_name": name, "app": app, "answered": False,
    }  # fmt: skip
    if say:
        body["behaviour"] = {
            "behaviour": "answer",
            "after": 0,
            # caption: the words ride in the audio, so the local agent (no speech recognition) hears them.
            "say": [{"at": say_at, "text": say, "caption": True}],
            "hangup_after": hangup_after,
        }
    return body


class Command(BaseCommand):
    help = (
        "Ask the PBX simulator to place an inbound call to a DID (POST /sim/inbound on the PBX row's ARI "
        "URL, the demo's 'demo-sim' by default), e.g. --did +15550170000 --from +15550179999 "
        '--say "My name is Alex, it is an emergency, the basement is flooding". Prints the call id and '
        "where to follow it in the API."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--did", required=True, help="The number called (E.164), e.g. +15550170000.")
        parser.add_argument("--from", dest="caller", required=True, help="The caller's number (E.164).")
        parser.add_argument("--name", default="", help="The caller's name (caller id name).")
        parser.add_argument("--say", default="", help="What the caller says once answered.")
        parser.add_argument("--say-at", type=float, default=2.0, help="Seconds after the answer (default 2).")
        parser.add_argument(
            "--hangup-after", type=float, default=90.0, help="With --say: the caller hangs up after (s)."
        )
        parser.add_argument(
            "--pbx", default=DEMO_PBX_NAME, help="The simulator's PBX row (default demo-sim)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            did = normalize_phone_number(options["did"], field="--did")
            caller = normalize_phone_number(options["caller"], field="--from")
        except InvalidInput as exc:
            raise CommandError(f"{exc}. Fictional +1555 numbers need PHONE_TEST_PREFIXES=+1555.") from exc
        say = " ".join(str(options["say"]).split())[:SAY_MAX]
        pbx = Pbx.objects.filter(name=options["pbx"]).order_by("owner_id", "pk").first()
        if pbx is None:
            raise CommandError(f"no PBX named {options['pbx']!r}: run `manage.py seed_demo` or give --pbx")
        if pbx.name == DEMO_PBX and pbx.password_env == SIM_ARI_PASSWORD_ENV:
            # The demo simulator's local password, as `make run` gives it (another shell lacks the variable).
            os.environ.setdefault(SIM_ARI_PASSWORD_ENV, SIM_ARI_PASSWORD)
        try:
            password = pbx_password(pbx=pbx)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        number = phone_number_for_did(did=did)
        if number is None:
            self.stdout.write(self.style.WARNING(f"{did} is no tenant's number: the call will be refused"))
        elif number.flow is None:
            self.stdout.write(self.style.WARNING(f"{did} has no flow: the call will be refused"))
        body = inbound_request(
            did=did,
            caller=caller,
            app=pbx.app_name,
            name=str(options["name"])[:80],
            say=say,
            say_at=float(options["say_at"]),
            hangup_after=float(options["hangup_after"]),
        )
        url = urljoin(pbx.ari_url.rstrip("/") + "/", "sim/inbound")
        try:
            response = httpx.post(url, json=body, auth=(pbx.ari_user, password), timeout=HTTP_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise CommandError(f"the simulator at {pbx.ari_url} did not answer: {exc}") from exc
        if response.status_code == 404:
            raise CommandError(f"{pbx.ari_url} has no /sim/inbound: is PBX {pbx.name!r} the simulator?")
        if response.status_code != 200:
            raise CommandError(
                f"the simulator refused the call ({response.status_code}): {response.text[:300]}"
            )
        call_id = str(response.json().get("call", ""))
        self.stdout.write(f"inbound call {call_id} placed: {caller} -> {did} on PBX {pbx.name!r}")
        if number is not None:
            self.stdout.write(
                "follow it: GET /api/v1/inbound-calls?number=%2B"
                f"{did.removeprefix('+')}, GET /api/v1/incidents, GET /api/v1/incidents/<id>/timeline"
            )
