"""The portal's live stream on the web process as production runs it (gunicorn with uvicorn workers): a
signed-in stream passes on what the product publishes, and a restart does not hang on open streams."""

from __future__ import annotations

import json
import re
import signal
import threading
import time

import httpx
import pytest
from django.contrib.auth.models import User

from orchestrator.redis_client import get_redis
from tenants.services import membership_add
from tests.campaigns.factories import make_tenant
from tests.e2e.stack import Stack
from wire.live import live_channel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

PASSWORD = "live-stream-password-1"  # noqa: S105


def signed_in(base_url: str, email: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=10)
    form = client.get("/signin")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token, form.text
    answer = client.post(
        "/signin", data={"username": email, "password": PASSWORD, "csrfmiddlewaretoken": token[1]}
    )
    assert answer.status_code == 302, answer.text
    return client


def test_a_stream_passes_on_hints_and_a_restart_closes_it_promptly(stack: Stack) -> None:
    tenant = make_tenant(name="Live Co")
    user = User.objects.create_user(username="live@example.com", password=PASSWORD)
    membership_add(tenant=tenant, user=user, role="viewer")
    stack.env.update(ALLOWED_HOSTS="127.0.0.1", SESSION_COOKIE_SECURE="0", CSRF_COOKIE_SECURE="0")
    web = stack.start_web(workers=1, env={"WEB_SHUTDOWN_GRACE_S": "2"})
    client = signed_in(stack.web_url, "live@example.com")

    received: list[str] = []
    closed = threading.Event()

    def listen() -> None:
        try:
            with client.stream("GET", "/live", timeout=httpx.Timeout(10, read=None)) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                for line in stream.iter_lines():
                    received.append(line)
        except httpx.HTTPError:
            pass
        finally:
            closed.set()

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while ": connected" not in received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ": connected" in received, stack.logs()
    get_redis().publish(live_channel(tenant.pk), json.dumps({"kind": "call", "call_id": "abc"}))
    while "event: call-abc" not in received and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "event: calls" in received and "event: call-abc" in received

    # A restart (deploy, worker recycling): the open stream is closed within the grace, not waited for.
    started = time.monotonic()
    web.popen.send_signal(signal.SIGTERM)
    web.popen.wait(timeout=20)
    took = time.monotonic() - started
    assert closed.wait(5)
    assert took < 10, f"the web process took {took:.1f} s to stop with a stream open"
