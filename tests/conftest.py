"""Session-wide test policy.

* In CI (``CI`` set), the suite must run against PostgreSQL: a DATABASE_URL that is not PostgreSQL fails
  the session before any test runs, so the PostgreSQL-only tests can never be skipped there silently.
* Outside CI, tests marked ``postgres`` are skipped when DATABASE_URL is not PostgreSQL.
* With REDIS_URL unset, the tests use an embedded Redis of their own (see tests/settings.py), started here
  before the first test and stopped, with its directory, at the end. With REDIS_URL set, tests use keys of
  their own and never flush the database.
* Run in parallel (pytest-xdist, ``-n``), each worker is a session of its own, with its own test database
  and Redis (its own embedded server, or its own database number of REDIS_URL's server: tests/parallel.py).
  The controlling process runs no test, so it starts no Redis.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import redis
from django.conf import settings

from orchestrator import embedded_redis
from tests.parallel import BASE_REDIS_URL_ENV

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def database_is_postgres() -> bool:
    return bool(settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql")


def is_xdist_controller(config: pytest.Config) -> bool:
    """True in the process that hands tests to xdist workers (and runs none itself)."""
    return not hasattr(config, "workerinput") and config.getoption("dist", "no") != "no"


# The embedded Redis directory this session started a server in (and so must stop), if any.
_started_embedded_redis: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    if in_ci() and not database_is_postgres():
        raise pytest.UsageError(
            "CI is set but DATABASE_URL is not a PostgreSQL URL "
            f"(engine: {settings.DATABASES['default']['ENGINE']}). "
            "CI must run the PostgreSQL tests: export DATABASE_URL=postgres://..."
        )
    if is_xdist_controller(config):
        return
    # Here rather than in a fixture: this runs before any fixture or test could start the server lazily,
    # so "started" reliably means "this session owns it".
    if settings.REDIS_EMBEDDED:
        server, started = embedded_redis.ensure_running(Path(settings.EMBEDDED_REDIS_DIR))
        if started:
            _started_embedded_redis.append(server.directory)
    elif os.environ.get(BASE_REDIS_URL_ENV):
        _check_worker_redis_db()


def _check_worker_redis_db() -> None:
    """An xdist worker's Redis database (tests/parallel.py) must exist on the server: say so clearly."""
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.ResponseError as exc:  # "DB index is out of range"
        raise pytest.UsageError(
            f"this xdist worker's Redis database ({settings.REDIS_URL}, derived from REDIS_URL="
            f"{os.environ[BASE_REDIS_URL_ENV]}) is not available: {exc}. Run fewer workers (-n) or give "
            "REDIS_URL a lower database number (worker gwN uses that number + N)."
        ) from exc
    except redis.ConnectionError:
        pass  # not this check's business: the tests that need Redis say so
    finally:
        client.close()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # Here rather than only at unconfigure: an xdist worker reports itself finished right after this hook,
    # and the controller then gives it 5 s before interrupting it (SIGINT), which on a loaded machine could
    # leave its Redis running. Every test and session fixture has been torn down by now.
    _stop_embedded_redis()


def pytest_unconfigure(config: pytest.Config) -> None:
    _stop_embedded_redis()  # a session that never finished (e.g. a usage error)


def _stop_embedded_redis() -> None:
    while _started_embedded_redis:
        directory = _started_embedded_redis.pop()
        embedded_redis.stop(directory)
        if directory.name.startswith("orchestrator-test-redis-"):  # the private one of tests/settings.py
            shutil.rmtree(directory, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if database_is_postgres():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL=postgres://... (mandatory in CI)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _pbxs_and_media_workers_up(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests of dispatching are about caps, windows, retries and fairness: there every PBX
    counts as having its Stasis app listening and a media worker up (DESIGN.md §5 rule 9). Tests marked
    ``real_health`` read the real heartbeats from Redis, as every process a test starts does."""
    if "real_health" in request.keywords:
        return
    from telephony.health import Health  # noqa: PLC0415 - after Django's setup

    def all_up(client: object, pbx_ids: Iterable[int], *, now: float | None = None) -> Health:
        return Health(pbx_ids_up=frozenset(pbx_ids), media_workers=1)

    monkeypatch.setattr("campaigns.selectors.read_health", all_up)


@pytest.fixture
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for product processes started by a test: this session's settings and Redis."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env["REDIS_URL"] = settings.REDIS_URL
    return env


def database_url() -> str:
    """The URL of the database this test runs on (the test database), for the processes it starts."""
    db = settings.DATABASES["default"]
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def run_python(code: str, *, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet with this interpreter in the project root."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
