"""Export benchmark: a campaign of 100,000 call attempts exported through the real view, in bounded memory.

Run (PostgreSQL required: the export streams from a server-side cursor there)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/anything python bench/export.py
    python bench/export.py --attempts 20000          # a quick look

What it does (see bench/README.md):

1. drops and creates its own PostgreSQL database (``--db-name``, on the server of ``DATABASE_URL``) and
   migrates it;
2. seeds one tenant, a campaign with three result fields, ``--attempts / 5`` contacts and leads, and
   ``--attempts`` ended attempts (5 per lead) with a summary and results, by ``bulk_create`` in batches;
3. for each export (attempts as CSV, attempts as JSON lines, leads as CSV, leads as JSON), starts a **fresh
   child process** (so the seeding's memory does not count) that sets Django up, makes an API key, reads its
   resident memory, then ``GET /api/v1/campaigns/{id}/export?of=...&format=...`` through Django's test
   client (the real URL routing, authentication, view and ``StreamingHttpResponse``) and consumes the
   stream, counting rows and bytes; it reports rows/s and its peak RSS (``resource.getrusage``
   ``ru_maxrss``) and how much that grew over the resident memory before the export.

Progress goes to stderr; the last stdout line is ONE JSON object. Exit 0 when every export's growth of the
peak RSS stays under ``--max-growth-mib`` (bounded memory: it does not grow with the number of rows).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STARTED = time.monotonic()
EXPORTS = (("attempts", "csv"), ("attempts", "jsonl"), ("leads", "csv"), ("leads", "json"))
BATCH = 5_000


def log(message: str) -> None:
    print(f"[export +{time.monotonic() - STARTED:7.2f}s] {message}", file=sys.stderr, flush=True)


def status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def rss_kib() -> int:
    return status_kib("VmRSS")


def django_setup(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()


def seed(attempts: int) -> int:
    """The bench tenant's campaign with ``attempts`` ended attempts; returns the campaign id."""
    from campaigns.models import AgentProfile, CallAttempt, Campaign, Contact, Lead
    from tenants.models import Tenant

    tenant = Tenant.objects.create(name="Export bench", slug="export-bench", max_concurrent_calls=10)
    agent = AgentProfile.objects.create(tenant=tenant, name="Agent", instructions="Sell.")
    campaign = Campaign.objects.create(
        tenant=tenant,
        agent=agent,
        name="Export bench",
        caller_id="+15550100000",
        status="completed",
        result_fields=[
            {"name": "interested", "type": "boolean", "choices": [], "required": False, "description": ""},
            {"name": "budget", "type": "number", "choices": [], "required": False, "description": ""},
            {"name": "notes", "type": "text", "choices": [], "required": False, "description": ""},
        ],
    )
    leads_count = max(1, attempts // 5)
    start = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)
    lead_ids: list[int] = []
    for first in range(0, leads_count, BATCH):
        numbers = [f"+1555{2000000 + n:07d}" for n in range(first, min(first + BATCH, leads_count))]
        contacts = Contact.objects.bulk_create(
            Contact(tenant=tenant, phone_number=number, name=f"=Name {number[-4:]}") for number in numbers
        )
        leads = Lead.objects.bulk_create(
            Lead(campaign=campaign, contact=contact, status="done", attempts=5, last_outcome="answered")
            for contact in contacts
        )
        lead_ids.extend(lead.pk for lead in leads)
    log(f"seeded {leads_count} contacts and leads")
    for first in range(0, attempts, BATCH):
        rows = []
        for n in range(first, min(first + BATCH, attempts)):
            at = start + timedelta(seconds=n)
            answered = n % 3 == 0
            rows.append(
                CallAttempt(
                    tenant=tenant,
                    campaign=campaign,
                    lead_id=lead_ids[n % leads_count],
                    number=f"+1555{2000000 + n % leads_count:07d}",
                    state="ended",
                    outcome="answered" if answered else "no_answer",
                    queued_at=at,
                    originated_at=at,
                    answered_at=at + timedelta(seconds=8) if answered else None,
                    ended_at=at + timedelta(seconds=95),
                    duration_s=87.0 if answered else None,
                    cause=16,
                    cause_txt="Normal Clearing",
                    dialstatus="ANSWER" if answered else "NOANSWER",
                    summary="The callee is interested and wants a demo next Tuesday." if answered else "",
                    results={"interested": True, "budget": 5000 + n, "notes": "=call back"}
                    if answered
                    else {},
                )
            )
        CallAttempt.objects.bulk_create(rows)
        if (first // BATCH) % 4 == 0:
            log(f"seeded {min(first + BATCH, attempts)} attempts")
    return campaign.pk


def measure(campaign_id: int, of: str, fmt: str) -> dict[str, Any]:
    """In a fresh process: one export through the real view; rows, bytes, time and peak RSS."""
    from django.test import Client

    from campaigns.models import Campaign
    from tenants.services import api_key_create

    campaign = Campaign.objects.select_related("tenant").get(pk=campaign_id)
    _, key = api_key_create(tenant=campaign.tenant, name=f"bench {of} {fmt}")
    client = Client()
    client.get("/healthz")  # the first request's imports and set-up, before the baseline
    baseline_kib = rss_kib()
    # Reset the kernel's peak-RSS mark (VmHWM) so it measures the export alone; ru_maxrss (the whole
    # process's life) is reported too.
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    response = client.get(
        f"/api/v1/campaigns/{campaign_id}/export?of={of}&format={fmt}", HTTP_AUTHORIZATION=f"Bearer {key}"
    )
    if response.status_code != 200 or not response.streaming:
        raise RuntimeError(f"the export answered {response.status_code}, streaming={response.streaming}")
    size = lines = 0
    for chunk in response.streaming_content:  # type: ignore[attr-defined]
        size += len(chunk)
        lines += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    rows = lines - 1 if fmt == "csv" else lines if fmt == "jsonl" else lines - 2  # header / brackets
    peak_kib = status_kib("VmHWM")
    maxrss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "export": f"{of}.{fmt}",
        "rows": rows,
        "mib": round(size / 2**20, 1),
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "rss_before_mib": round(baseline_kib / 1024, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "peak_growth_mib": round((peak_kib - baseline_kib) / 1024, 1),
        "ru_maxrss_mib": round(maxrss_kib / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--attempts", type=int, default=100_000)
    parser.add_argument("--db-name", default="bench_export")
    parser.add_argument("--max-growth-mib", type=float, default=64.0)
    parser.add_argument("--measure", nargs=3, metavar=("CAMPAIGN", "OF", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        django_setup({})
        print(json.dumps(measure(int(args.measure[0]), args.measure[1], args.measure[2])))
        return 0

    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        print("DATABASE_URL must name a PostgreSQL server (the export streams from a server-side cursor)")
        return 2
    parts = urlsplit(base)
    admin_url = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    database_url = urlunsplit((parts.scheme, parts.netloc, f"/{args.db_name}", parts.query, ""))
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "DJANGO_SETTINGS_MODULE": "orchestrator.settings",
        "DEBUG": "0",  # no query log kept in memory
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-export-only-secret-key"),
        "FIELD_ENCRYPTION_KEY": os.environ.get(
            "FIELD_ENCRYPTION_KEY", "YmVuY2gtZXhwb3J0LW9ubHktZmllbGQta2V5ISEhISE="
        ),
        "ALLOWED_HOSTS": "testserver",
        "SECURE_SSL_REDIRECT": "0",
        "API_THROTTLE_RATE": "1000000/min",
        "PYTHONPATH": str(REPO),
    }
    from bench.dispatch import migrate, recreate_database

    recreate_database(admin_url, args.db_name)
    migrate(env)
    log(f"database {args.db_name} migrated")
    django_setup({k: v for k, v in env.items() if k not in os.environ or os.environ[k] != v})
    campaign_id = seed(args.attempts)
    results = []
    for of, fmt in EXPORTS:
        done = subprocess.run(  # noqa: S603 - our own interpreter and script
            [sys.executable, __file__, "--measure", str(campaign_id), of, fmt],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            print(done.stdout, done.stderr, file=sys.stderr)
            return 1
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        log(json.dumps(figures))
        results.append(figures)
    ok = all(r["peak_growth_mib"] <= args.max_growth_mib for r in results)
    print(json.dumps({"attempts": args.attempts, "exports": results, "bounded": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
