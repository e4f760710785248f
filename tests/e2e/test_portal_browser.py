"""The tenant portal in a real browser (Chromium driven by Playwright) against the whole product: the web
process as production runs it (gunicorn with uvicorn workers, server-sent events), a Celery worker and beat,
the Stasis app, the media worker with the local Realtime stand-in, and the PBX simulator, all on this test's
PostgreSQL database and Redis.

A manager signs in, creates a campaign, imports a CSV with bad rows and reads the row report, starts the
campaign, watches the dashboard's count of live calls go up without reloading the page, opens a finished
call and reads its transcript, pauses the campaign and watches the count go back down to zero. A viewer of
the same tenant sees no write control and a forged write is refused; a member of a second tenant sees none
of it. What the browser shows is checked against the simulator's record of the calls.

Every page the test visits is saved as a screenshot under ``var/portal-screenshots/`` (a test artifact).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from campaigns.models import CallAttempt, Campaign, Pbx
from campaigns.services.pbx import pbx_create, pbx_place
from tenants.models import Tenant
from tenants.services import membership_add
from tests.campaigns.factories import make_agent, make_campaign, make_tenant
from tests.conftest import PROJECT_ROOT, database_url, in_ci
from tests.e2e.stack import PASSWORD_ENV, SIM_APP, SIM_USER, Stack, free_port, zone_where_it_is

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

BROWSER = os.environ.get("PORTAL_BROWSER") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = PROJECT_ROOT / "var" / "portal-screenshots"
PASSWORD = "a-Long-passphrase-42"  # noqa: S105 - the test users' password
CALL_S = 4.0  # how long each answered test call lasts
RING_S = 2.0  # how long each rings first (time to open a call's page before it is answered)
GOOD_ROWS = 24
BAD_ROWS = {"not-a-number": "phone_number", "+1212555": "phone_number"}

if BROWSER is None and not in_ci():
    pytest.skip("no Chromium on this machine (CI installs Debian's chromium)", allow_module_level=True)

playwright_sync = pytest.importorskip("playwright.sync_api")


# ------------------------------------------------------------------------------------------ the product


@pytest.fixture(scope="module")
def product(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)  # this run's screenshots only
    directory = tmp_path_factory.mktemp("portal")
    static_root = directory / "static"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])),
        REDIS_URL=settings.REDIS_URL,
        DATABASE_URL=database_url(),
        DJANGO_LOG_LEVEL="INFO",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        STATIC_ROOT=str(static_root),
        # Plain HTTP on loopback: the cookies may not be Secure-only here (they are in production).
        SESSION_COOKIE_SECURE="0",
        CSRF_COOKIE_SECURE="0",
    )
    stack = Stack(directory=directory / "stack", env=env)
    subprocess.run(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=PROJECT_ROOT, env=stack.env, check=True, timeout=120,
    )  # fmt: skip
    plan = {
        "default": {
            "behaviour": "answer",
            "after": RING_S,
            "hangup_after": CALL_S,
            "say": [{"at": 0.5, "text": "Hello, who is this?", "caption": True}],
        }
    }
    try:
        stack.start_sim(plan)
        stack.start_realtime(mode="agent", extra=["--speech", "tones"])
        stack.start_media_worker()
        with django_db_blocker.unblock():
            pbx = sim_pbx(stack.ari_url)
        stack.start_stasis(pbx.pk)
        stack.start_worker("worker", concurrency=4)
        stack.start_beat()
        stack.start_web(port=free_port())
        stack.wait_stasis_connected(timeout=90)
        yield stack
    finally:
        stack.stop()


def sim_pbx(ari_url: str) -> Pbx:
    return pbx_create(
        name="sim", ari_url=ari_url, ari_user=SIM_USER, password_env=PASSWORD_ENV, app_name=SIM_APP,
        endpoint_template="PJSIP/{number}@trunk", max_channels=20, calls_per_second=20,
    )  # fmt: skip


def member(tenant: Tenant, email: str, role: str) -> User:
    user = User.objects.create_user(username=email, email=email, password=PASSWORD)
    membership_add(tenant=tenant, user=user, role=role)
    return user


# ------------------------------------------------------------------------------------------ the browser


class Browser:
    """One signed-in browser session; every page it visits is saved as a screenshot."""

    def __init__(self, playwright: Any, base_url: str, name: str) -> None:
        self.base_url = base_url
        self.name = name
        self.shots = 0
        self.browser = playwright.chromium.launch(
            executable_path=BROWSER,
            headless=True,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                "--disable-background-networking", "--disable-component-update",
            ],
        )  # fmt: skip
        self.context = self.browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(15_000)
        self.page = self.context.new_page()
        self.console_errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.console_errors.append(str(exc)))

    def shot(self, what: str) -> None:
        self.shots += 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^a-z0-9]+", "-", what.lower()).strip("-")
        self.page.screenshot(
            path=str(SCREENSHOTS / f"{self.name}-{self.shots:02d}-{slug}.png"), full_page=True
        )

    def visit(self, path: str, what: str) -> Any:
        response = self.page.goto(path)
        self.shot(what)
        return response

    def sign_in(self, email: str) -> None:
        self.visit("/signin", "sign in")
        self.page.fill("#id_username", email)
        self.page.fill("#id_password", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(re.compile(r"/$"))
        self.shot("dashboard after sign in")

    def close(self) -> None:
        self.context.close()
        self.browser.close()


@pytest.fixture
def playwright(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls (setting up rows,
    # checking them) are plain synchronous code all the same, so Django is told not to refuse them.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with playwright_sync.sync_playwright() as p:
        yield p


def wait_until(predicate: Any, *, timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# ------------------------------------------------------------------------------------------------ tests


def test_a_manager_runs_a_campaign_from_the_portal(product: Stack, playwright: Any) -> None:
    tenant = make_tenant(name="Acme Plumbing", max_concurrent_calls=3)
    pbx_place(pbx=Pbx.objects.get(name="sim"), tenant=tenant)
    make_agent(tenant, name="Friendly agent", greeting="Hi, this is Acme Plumbing calling.")
    member(tenant, "manager@acme.test", "manager")
    member(tenant, "viewer@acme.test", "viewer")
    other = make_tenant(name="Other Co")
    make_campaign(other, name="Other's secret campaign")
    member(other, "someone@other.test", "owner")

    manager = Browser(playwright, product.web_url, "manager")
    try:
        manager.sign_in("manager@acme.test")
        page = manager.page
        # The dashboard opens its live stream: marked now, the mark survives only if the page never reloads.
        page.evaluate("window.__portalNoReload = 'still here'")

        # --- a campaign, created in the form
        manager.visit("/campaigns/", "campaigns (empty)")
        assert page.locator("[data-empty]").count() >= 1
        manager.visit("/campaigns/new", "new campaign form")
        form = page.locator("form#campaign-form")
        form.locator("[name=name]").fill("Spring promo")
        form.locator("[name=agent]").select_option(label="Friendly agent")
        form.locator("[name=caller_id]").fill("+14155550100")
        form.locator("[name=max_concurrent_calls]").fill("3")
        all_day = (
            '{"mon": [["00:00", "24:00"]], "tue": [["00:00", "24:00"]], "wed": [["00:00", "24:00"]], '
            '"thu": [["00:00", "24:00"]], "fri": [["00:00", "24:00"]], "sat": [["00:00", "24:00"]], '
            '"sun": [["00:00", "24:00"]]}'
        )
        windows = form.locator("[name=calling_windows]")
        if windows.count():
            windows.fill(all_day)
        form.locator("[type=submit]").click()
        page.wait_for_url(re.compile(r"/campaigns/\d+/$"))
        manager.shot("campaign created")
        campaign = Campaign.objects.get(tenant=tenant, name="Spring promo")
        assert page.locator("#campaign-status").inner_text().strip().lower() == "draft"

        # --- contacts from a CSV with bad rows: the row report says which and why
        zone = zone_where_it_is(14)
        rows = ["phone,full name,tz"]
        rows += [f"+1212555{1000 + n:04d},Person {n},{zone}" for n in range(GOOD_ROWS)]
        rows += [f"{bad},Bad {n},{zone}" for n, bad in enumerate(BAD_ROWS)]
        csv_path = Path(manager_dir := SCREENSHOTS.parent / "portal-upload") / "contacts.csv"
        manager_dir.mkdir(parents=True, exist_ok=True)
        csv_path.write_text("\n".join(rows) + "\n")
        manager.visit(f"/imports/new?campaign={campaign.pk}", "import form")
        page.locator("form#import-form input[type=file][name=file]").set_input_files(str(csv_path))
        page.locator("form#import-form [type=submit]").click()
        page.wait_for_selector("form#map-form")
        manager.shot("map columns")
        map_form = page.locator("form#map-form")
        # The file's own headers, mapped by hand (whatever the page guessed).
        for index, target in enumerate(("phone_number", "name", "timezone")):
            map_form.locator(f"select#col-{index}").select_option(target)
        map_form.locator("[type=submit]").click()
        page.wait_for_selector("#import-progress")
        manager.shot("import running")
        page.wait_for_function(
            "document.querySelector('#import-status') && "
            "/done|failed/i.test(document.querySelector('#import-status').textContent)",
            timeout=60_000,
        )
        manager.shot("import report")
        report = page.locator("#import-report").inner_text()
        # The bad rows by their row number in the file (its header is row 1), with the reason.
        for n, bad in enumerate(BAD_ROWS):
            assert re.search(rf"\b{GOOD_ROWS + 2 + n}\s+phone_number\s+'{re.escape(bad)}'", report), report
        assert campaign.leads.count() == GOOD_ROWS

        # --- start it, then watch the dashboard count live calls without reloading
        manager.visit(f"/campaigns/{campaign.pk}/", "campaign detail (draft)")
        page.click("#campaign-start")
        page.wait_for_function("/running/i.test(document.querySelector('#campaign-status').textContent)")
        manager.shot("campaign running")

        # --- a call's page opened while it rings: the conversation scrolls in as it is spoken
        ringing = wait_until(
            lambda: CallAttempt.objects.filter(
                tenant=tenant, state__in=["dialing", "ringing"], answered_at__isnull=True
            ).first(),
            timeout=30,
            what="a call still ringing",
            interval=0.05,
        )
        manager.visit(f"/calls/{ringing.pk}/", "a call while it rings")
        page.evaluate("window.__portalNoReload = 'still here'")
        page.wait_for_function(
            "/local demo agent/.test(document.querySelector('#call-transcript').textContent)", timeout=20_000
        )
        manager.shot("its transcript, live")
        # It ends; the page follows until the media worker's report is in: metrics and the stored transcript.
        page.wait_for_selector("#call-metrics", timeout=CALL_S * 1000 + 15_000)
        assert page.locator("#call-state").get_attribute("data-state") == "ended"
        assert "local demo agent" in page.locator("#call-transcript").inner_text()
        manager.shot("the same call, ended")
        assert page.evaluate("window.__portalNoReload") == "still here"

        manager.visit("/", "dashboard")
        page.evaluate("window.__portalNoReload = 'still here'")
        live = page.locator("#live-calls")
        seen: list[int] = []

        def busy() -> bool:
            seen.append(int(live.get_attribute("data-live-calls") or "0"))
            return seen[-1] > 0

        wait_until(busy, timeout=60, what="the dashboard to show live calls")
        page.wait_for_selector("#chart-last-hour canvas")  # the chart is drawn again in the swapped figures
        manager.shot("dashboard with live calls")
        assert page.evaluate("window.__portalNoReload") == "still here"  # no reload: pushed by the server
        assert max(seen) <= tenant.max_concurrent_calls

        # --- a finished call and its transcript
        answered = wait_until(
            lambda: (
                CallAttempt.objects.filter(tenant=tenant, outcome="answered").exclude(transcript=[]).first()
            ),
            timeout=60,
            what="an answered call with a transcript",
        )
        manager.visit("/calls/", "call log")
        assert page.locator(f"a[href*='{answered.pk}']").count() >= 1
        manager.visit(f"/calls/{answered.pk}/", "a finished call")
        transcript = page.locator("#call-transcript").inner_text()
        # The callee speaks over the agent's opening (its AI disclosure, then the greeting), so the agent's
        # line in the transcript is its reply to the callee.
        assert "local demo agent" in transcript, transcript
        with product.sim() as sim:
            record = sim.get(f"/sim/calls/{answered.pk}").json()
        assert record["state"] == "ended" and record.get("answered_at"), record

        # --- pause it, and the dashboard goes back to zero on its own
        manager.visit(f"/campaigns/{campaign.pk}/", "campaign detail (running)")
        page.click("#campaign-pause")
        page.wait_for_function("/paused/i.test(document.querySelector('#campaign-status').textContent)")
        manager.shot("campaign paused")
        manager.visit("/", "dashboard after pause")
        page.evaluate("window.__portalNoReload = 'still here'")
        wait_until(
            lambda: live.get_attribute("data-live-calls") == "0",
            timeout=CALL_S * 3 + 20,
            what="zero live calls",
        )
        assert page.evaluate("window.__portalNoReload") == "still here"
        manager.shot("dashboard back to zero")
        # At phone width the page still fits: nothing wider than the screen, the menu behind its toggle.
        page.set_viewport_size({"width": 390, "height": 844})
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        manager.shot("dashboard at phone width")
        page.click("label.nav-toggle-label")
        assert page.locator("nav.mainnav a[href='/campaigns/']").is_visible()
        manager.shot("phone menu open")
        page.set_viewport_size({"width": 1280, "height": 900})
        with product.sim() as sim:
            still_live = sim.get("/sim/calls", params={"state": "live"}).json()["calls"]
        assert not [c for c in still_live if c["direction"] == "outbound"], still_live
        assert not manager.console_errors, manager.console_errors
    finally:
        manager.close()

    # --- a viewer sees no write control, and a forged write is refused
    viewer = Browser(playwright, product.web_url, "viewer")
    try:
        viewer.sign_in("viewer@acme.test")
        viewer.visit(f"/campaigns/{campaign.pk}/", "campaign as a viewer")
        page = viewer.page
        for control in ("#campaign-start", "#campaign-pause", "#campaign-resume"):
            assert page.locator(control).count() == 0, control
        viewer.visit("/campaigns/", "campaigns as a viewer")
        assert page.locator("a[href$='/campaigns/new']").count() == 0
        token = next(c["value"] for c in viewer.context.cookies() if c["name"] == "csrftoken")
        forged = page.request.post(
            f"/campaigns/{campaign.pk}/resume", headers={"X-CSRFToken": token}, form={}
        )
        assert forged.status == 403
        campaign.refresh_from_db()
        assert campaign.status == Campaign.Status.PAUSED
    finally:
        viewer.close()

    # --- the other tenant sees none of it
    stranger = Browser(playwright, product.web_url, "other-tenant")
    try:
        stranger.sign_in("someone@other.test")
        stranger.visit("/campaigns/", "the other tenant's campaigns")
        text = stranger.page.inner_text("main")
        assert "Other's secret campaign" in text and "Spring promo" not in text
        assert stranger.visit(f"/campaigns/{campaign.pk}/", "another tenant's campaign").status == 404
        assert stranger.visit(f"/calls/{answered.pk}/", "another tenant's call").status == 404
        stranger.visit("/calls/", "the other tenant's calls")
        assert "+1212555" not in stranger.page.inner_text("main")
    finally:
        stranger.close()
