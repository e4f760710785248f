"""Test settings: the product settings, plus test-only SECRET_KEY and FIELD_ENCRYPTION_KEY, a private
embedded Redis, and in parallel runs a Redis database per xdist worker (tests/parallel.py).

Everything else (DATABASE_URL, REDIS_URL, ...) comes from the environment exactly as in production, so
`make test` exercises the real configuration. How the product settings react to a missing SECRET_KEY is
tested in tests/orchestrator/test_settings.py, in subprocesses with a clean environment.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-not-for-any-deployment")
# A fixed Fernet key for the secrets tests store (PBX passwords); tests of a missing key override it.
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "dGVzdC1vbmx5LWZpZWxkLWVuY3J5cHRpb24ta2V5ISE=")
# No Prometheus endpoints on the default ports from tests (nor from the processes they start): a developer's
# `make run` or another session may hold them. Tests that fetch metrics choose a free port.
for _listen in ("WORKER_METRICS_LISTEN", "STASIS_METRICS_LISTEN", "MEDIA_METRICS_LISTEN"):
    os.environ.setdefault(_listen, "off")
# The test client speaks plain HTTP to a DEBUG-off product: no redirect to HTTPS (tested on its own in
# tests/deploy/test_production_web.py). The API fuzzer sends thousands of requests per tenant in
# minutes: the per-tenant rates are far out of its way (tests/orchestrator/test_throttling.py sets its own).
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
# Pages render their static URLs without a collectstatic manifest (the manifest storage is tested on its own).
os.environ.setdefault("STATIC_MANIFEST", "0")
os.environ.setdefault("API_THROTTLE_RATE", "1000000/min")
os.environ.setdefault("API_IMPORT_THROTTLE_RATE", "1000000/min")

from tests.parallel import use_worker_redis_db  # noqa: E402

# Before the product settings read REDIS_URL: an xdist worker gets a database of its own on that server.
use_worker_redis_db()

from orchestrator.embedded_redis import EmbeddedRedis  # noqa: E402
from orchestrator.redis_client import celery_url_for  # noqa: E402
from orchestrator.settings import *  # noqa: E402, F403
from orchestrator.settings import REDIS_EMBEDDED  # noqa: E402

if REDIS_EMBEDDED:
    # Same mechanism as the product's embedded default, but in a directory of this test session's own:
    # a developer's running `make run` and a concurrent test session (each xdist worker is one) each keep
    # their own server, so a session stopping "its" server at the end can never pull Redis away from anyone
    # else.
    # tests/conftest.py starts it before the first test and removes it at the end. The directory is only
    # named here, not created: mypy's Django plugin loads these settings too.
    EMBEDDED_REDIS_DIR = Path(tempfile.gettempdir()) / f"orchestrator-test-redis-{os.getpid()}"
    REDIS_URL = EmbeddedRedis(EMBEDDED_REDIS_DIR).url
    CELERY_BROKER_URL = CELERY_RESULT_BACKEND = celery_url_for(REDIS_URL)
    CACHES["default"]["LOCATION"] = REDIS_URL  # noqa: F405

# The sign-in limiter announces its configuration once per process at INFO; tests start many processes.
AXES_VERBOSE = False
