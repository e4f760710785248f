"""What keeps test processes running side by side (pytest-xdist, ``make test``) apart.

Each xdist worker is a pytest session of its own. pytest-django gives each one its own test database
(``test_<name>_gw0``, ...). Redis is kept apart here:

* REDIS_URL unset: each session starts a private embedded Redis (tests/settings.py, named by its process
  id), so each worker has its own server.
* REDIS_URL set (as in CI): worker ``gwN`` uses database number ``base + N`` of that server, where ``base``
  is the database of REDIS_URL. Keys the product names by row id (heartbeats, per-PBX command lists, rate
  limits) would otherwise collide between workers whose test databases hand out the same ids, and the
  global ones (``media:workers``, ``stasis:apps``) would show one worker's processes as up to another.
  ``REDIS_URL`` itself is rewritten in the worker's environment, so every process a test starts inherits
  the worker's database.

Either way the worker records the original REDIS_URL (maybe empty) in :data:`BASE_REDIS_URL_ENV`. A process
started by a test inherits it and keeps the REDIS_URL it was given (the worker's database, its embedded
server, or e.g. the fault suite's own Redis) instead of deriving one again.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

BASE_REDIS_URL_ENV = "TESTS_BASE_REDIS_URL"


def xdist_worker_index(environ: MutableMapping[str, str] = os.environ) -> int | None:
    """N for the xdist worker ``gwN`` this process is (or was started by); None outside xdist."""
    worker = environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return None
    return int(worker[2:])


def redis_db(url: str) -> int:
    """The database number of a redis-py URL (``redis://h:p/N``, ``rediss://...``, ``unix:///p?db=N``)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return int(parse_qs(parts.query).get("db", ["0"])[0])
    path = parts.path.strip("/")
    return int(path) if path else int(parse_qs(parts.query).get("db", ["0"])[0])


def with_redis_db(url: str, db: int) -> str:
    """``url`` on database ``db`` (the rest of the URL unchanged)."""
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if parts.scheme == "unix":
        query["db"] = str(db)
        # urlunsplit would drop the empty host (``unix:/path``), which redis-py does not read.
        return f"unix://{parts.path}?{urlencode(query)}"
    query.pop("db", None)
    return urlunsplit(parts._replace(path=f"/{db}", query=urlencode(query)))


def use_worker_redis_db(environ: MutableMapping[str, str] = os.environ) -> None:
    """In an xdist worker with REDIS_URL set, move REDIS_URL to the worker's own database (see above).

    Called by tests/settings.py before the product settings read the environment. Idempotent, and a
    no-op outside xdist and in the processes tests start (they inherit the mark)."""
    index = xdist_worker_index(environ)
    if index is None or BASE_REDIS_URL_ENV in environ:
        return
    url = environ.get("REDIS_URL", "")
    # Set even when empty (embedded Redis): it marks the processes this session starts, which inherit
    # PYTEST_XDIST_WORKER too, as given their REDIS_URL (the session's embedded server, on database 0).
    environ[BASE_REDIS_URL_ENV] = url
    if url:
        environ["REDIS_URL"] = with_redis_db(url, redis_db(url) + index)
