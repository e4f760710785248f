"""``manage.py runlocal``: the whole product in the foreground, on embedded defaults (``make run``).

To run another process with the product, add a ProcessSpec to ``process_specs`` below.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from flows.management.commands.seed_after_hours import DEMO_SMS_AUTH_TOKEN, DEMO_SMS_WEBHOOK_ID
from orchestrator import embedded_redis
from orchestrator.supervisor import ProcessSpec, Supervisor

WEB_ADDRESS = "127.0.0.1:8000"
SIM_HOST = "127.0.0.1"
SIM_PORT = 8088
# The simulator's ARI credentials, as in a stock Asterisk ari.conf example; local only.
SIM_ARI_USER = "asterisk"
SIM_ARI_PASSWORD = "asterisk"  # noqa: S105
SIM_PLAN = Path("deploy") / "sim-plan.yaml"
# The demo PBX row (manage.py seed_demo) reads the simulator's password from this variable.
SIM_ARI_PASSWORD_ENV = "SIM_ARI_PASSWORD"  # noqa: S105 - a variable name, not a password
DEMO_PBX = "demo-sim"
# The media worker listens where settings.MEDIA_WORKER_HOSTS points by default; with no OpenAI key and no
# REALTIME_URL, its calls go to the local agent (a Realtime-protocol stand-in) on LOCAL_AGENT_PORT.
MEDIA_LISTEN = "127.0.0.1:9092"
LOCAL_AGENT_PORT = 8765
# The local SMS stand-in (the Twilio API the product's SDK calls; scripted people: deploy/sim-sms.yaml).
SMS_PORT = 8089
SMS_SCRIPT = Path("deploy") / "sim-sms.yaml"
# The media worker's Prometheus endpoint (the worker's and the Stasis app's come from settings).
MEDIA_METRICS_LISTEN = "127.0.0.1:9103"


def process_specs(
    *,
    base_dir: Path,
    web_address: str = WEB_ADDRESS,
    python: str = sys.executable,
    pbx: str = DEMO_PBX,
    environ: dict[str, str] | None = None,
) -> list[ProcessSpec]:
    environ = dict(os.environ) if environ is None else environ
    manage = str(base_dir / "manage.py")
    celery = [python, "-m", "celery", "-A", "orchestrator"]
    sim = [
        python, "-m", "telephony.sim",
        "--host", SIM_HOST, "--port", str(SIM_PORT),
        "--ari-user", SIM_ARI_USER, "--ari-password", SIM_ARI_PASSWORD,
    ]  # fmt: skip
    plan = base_dir / SIM_PLAN
    if plan.exists():
        sim += ["--plan", str(plan)]
    return [
        # The ASGI app under uvicorn, as production serves it (one worker): the portal's live pages hold
        # server-sent-event streams, which Django's development server (WSGI) would buffer forever.
        ProcessSpec("web", web_argv(python=python, web_address=web_address)),
        ProcessSpec("sim", sim),
        sms_spec(base_dir=base_dir, python=python, web_address=web_address),
        # Threads, not prefork: the tasks mostly wait on ARI and Redis, and a thread pool starts fast and
        # stops cleanly with the process group.
        ProcessSpec(
            "worker", [*celery, "worker", "--pool", "threads", "--concurrency", "8", "--loglevel", "INFO"]
        ),
        ProcessSpec("beat", [*celery, "beat", "--loglevel", "INFO"]),
        # The Stasis app reconnects with backoff, so starting it alongside the simulator is fine.
        ProcessSpec("stasis", [python, manage, "run_stasis", "--pbx", pbx]),
        *media_specs(python=python, environ=environ),
    ]


def web_argv(*, python: str, web_address: str) -> list[str]:
    host, _, port = web_address.rpartition(":")
    return [
        python, "-m", "uvicorn", "orchestrator.asgi:application",
        "--host", host or "127.0.0.1", "--port", port, "--no-server-header",
        # Ctrl-C must not wait for the portal's live streams, which never end on their own.
        "--timeout-graceful-shutdown", "3",
    ]  # fmt: skip


def sms_spec(*, base_dir: Path, python: str, web_address: str) -> ProcessSpec:
    """The SMS stand-in, posting the demo people's signed replies to the demo tenant's inbound webhook."""
    inbound = f"http://{web_address}/webhooks/sms/twilio/{DEMO_SMS_WEBHOOK_ID}/inbound"
    argv = [
        python, "-m", "telephony.sim.sms", "--host", SIM_HOST, "--port", str(SMS_PORT),
        "--auth-token", DEMO_SMS_AUTH_TOKEN, "--inbound-url", inbound,
    ]  # fmt: skip
    script = base_dir / SMS_SCRIPT
    if script.exists():
        argv += ["--script", str(script)]
    return ProcessSpec("sms", argv)


def media_specs(*, python: str, environ: dict[str, str]) -> list[ProcessSpec]:
    """The media worker, and the local agent when neither an OpenAI key nor a REALTIME_URL is given."""
    media_env = {
        "MEDIA_LISTEN": environ.get("MEDIA_LISTEN", MEDIA_LISTEN),
        "MEDIA_METRICS_LISTEN": environ.get("MEDIA_METRICS_LISTEN", MEDIA_METRICS_LISTEN),
        # kombu's spelling of the (possibly embedded, unix-socket) Redis; the media worker has no Django.
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        # Ctrl-C should not wait a minute for live demo calls: a few seconds, then the agents say goodbye.
        "MEDIA_DRAIN_S": environ.get("MEDIA_DRAIN_S", "3"),
    }
    specs = []
    if not environ.get("OPENAI_API_KEY") and not environ.get("REALTIME_URL"):
        media_env["REALTIME_URL"] = f"ws://127.0.0.1:{LOCAL_AGENT_PORT}/v1/realtime"
        agent = [python, "-m", "media.localai", "--mode", "agent", "--port", str(LOCAL_AGENT_PORT)]
        specs.append(ProcessSpec("agent", agent))
    specs.append(ProcessSpec("media", [python, "-m", "media"], env=media_env))
    return specs


def metrics_urls(*, web_address: str, environ: dict[str, str]) -> dict[str, str]:
    """Where each process serves its Prometheus metrics (none for a process whose address is off)."""
    listens = {
        "worker": settings.WORKER_METRICS_LISTEN,
        "stasis": settings.STASIS_METRICS_LISTEN,
        "media": environ.get("MEDIA_METRICS_LISTEN", MEDIA_METRICS_LISTEN),
    }
    urls = {"web": f"http://{web_address}/metrics"}
    for name, listen in listens.items():
        if listen.strip() and listen.strip().lower() != "off":
            urls[name] = f"http://{listen.strip()}/metrics"
    return urls


class Command(BaseCommand):
    help = (
        "Run the product locally (web, Celery worker and beat, PBX simulator, Stasis app, media worker and, "
        "without an OpenAI key, the local agent) until Ctrl-C; one process dying stops all."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--only",
            action="append",
            metavar="NAME",
            help="run only the named process (repeatable); default: all",
        )
        parser.add_argument(
            "--pbx",
            default=DEMO_PBX,
            help=f"id or name of the PBX the Stasis app serves (default {DEMO_PBX})",
        )
        parser.add_argument(
            "--web-address", default=WEB_ADDRESS, help=f"host:port for the web app (default {WEB_ADDRESS})"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        specs = process_specs(
            base_dir=Path(settings.BASE_DIR), web_address=options["web_address"], pbx=options["pbx"]
        )
        only: list[str] | None = options["only"]
        if only:
            unknown = sorted(set(only) - {spec.name for spec in specs})
            if unknown:
                raise CommandError(f"unknown process {unknown}; known: {[spec.name for spec in specs]}")
            specs = [spec for spec in specs if spec.name in only]
        if any(spec.name == "sim" for spec in specs) and importlib.util.find_spec("telephony.sim") is None:
            raise CommandError("the PBX simulator (telephony.sim) is not installed")

        env = dict(os.environ)
        # The demo PBX row names this variable; a real PBX row names its own.
        env.setdefault(SIM_ARI_PASSWORD_ENV, SIM_ARI_PASSWORD)
        # SMS through the local stand-in (a real Twilio account needs neither), links and status callbacks to
        # this web address.
        if any(spec.name == "sms" for spec in specs):
            env.setdefault("TWILIO_API_BASE", f"http://{SIM_HOST}:{SMS_PORT}")
        env.setdefault("PUBLIC_BASE_URL", f"http://{options['web_address']}")
        started_redis: Path | None = None
        if settings.REDIS_EMBEDDED:
            server, started = embedded_redis.ensure_running(Path(settings.EMBEDDED_REDIS_DIR))
            verb = "started" if started else "attached to"
            self.stdout.write(f"embedded Redis {verb} at {server.socket_path}")
            # Children see an explicit REDIS_URL: they attach to this server and never start their own.
            env["REDIS_URL"] = server.url
            started_redis = server.directory if started else None

        names = {spec.name for spec in specs}
        for name, url in metrics_urls(web_address=options["web_address"], environ=env).items():
            if name in names:
                self.stdout.write(f"metrics of {name}: {url}")
        if "web" in names:  # the portal app's own command says where it is (and, DEBUG, signs in the demo)
            call_command("portal_link", base_url=f"http://{options['web_address']}", stdout=self.stdout)
        try:
            status = Supervisor(specs, env=env, output=self.stdout).run()
        finally:
            # Only the runlocal that started the embedded server stops it; an attached one leaves it be.
            if started_redis is not None:
                embedded_redis.stop(started_redis)
                self.stdout.write("embedded Redis stopped")
        if status:
            sys.exit(status)
