"""tests/parallel.py: each xdist worker gets a Redis database of its own when REDIS_URL is set."""

from __future__ import annotations

import os

import pytest
from django.conf import settings

from tests.parallel import (
    BASE_REDIS_URL_ENV,
    redis_db,
    use_worker_redis_db,
    with_redis_db,
    xdist_worker_index,
)


@pytest.mark.parametrize(
    ("url", "db"),
    [
        ("redis://127.0.0.1:6379/0", 0),
        ("redis://127.0.0.1:6379/14", 14),
        ("redis://127.0.0.1:6379", 0),
        ("rediss://user:pw@h:6380/3?ssl_cert_reqs=none", 3),
        ("unix:///tmp/r/redis.sock?db=2", 2),
        ("unix:///tmp/r/redis.sock", 0),
    ],
)
def test_redis_db_reads_the_database_number(url: str, db: int) -> None:
    assert redis_db(url) == db


def test_with_redis_db_changes_only_the_database() -> None:
    assert with_redis_db("redis://127.0.0.1:6379/0", 3) == "redis://127.0.0.1:6379/3"
    assert with_redis_db("redis://127.0.0.1:6379", 1) == "redis://127.0.0.1:6379/1"
    assert (
        with_redis_db("rediss://u:p@h:6380/2?ssl_cert_reqs=none", 5)
        == "rediss://u:p@h:6380/5?ssl_cert_reqs=none"
    )
    assert with_redis_db("unix:///tmp/r/redis.sock?db=0", 4) == "unix:///tmp/r/redis.sock?db=4"


@pytest.mark.parametrize(
    ("worker", "index"), [("gw0", 0), ("gw7", 7), ("", None), ("master", None), ("gwx", None)]
)
def test_xdist_worker_index(worker: str, index: int | None) -> None:
    assert xdist_worker_index({"PYTEST_XDIST_WORKER": worker}) == index
    assert xdist_worker_index({}) is None


def test_a_worker_moves_redis_url_to_base_plus_its_index_once() -> None:
    environ = {"PYTEST_XDIST_WORKER": "gw2", "REDIS_URL": "redis://127.0.0.1:6379/10"}
    use_worker_redis_db(environ)
    assert environ["REDIS_URL"] == "redis://127.0.0.1:6379/12"
    assert environ[BASE_REDIS_URL_ENV] == "redis://127.0.0.1:6379/10"
    use_worker_redis_db(environ)  # the settings loaded again (or by a process the test starts): unchanged
    assert environ["REDIS_URL"] == "redis://127.0.0.1:6379/12"


def test_a_process_started_by_a_worker_keeps_the_redis_it_was_given() -> None:
    # e.g. the fault suite's own Redis, handed to the product processes it starts
    environ = {
        "PYTEST_XDIST_WORKER": "gw1",
        BASE_REDIS_URL_ENV: "redis://127.0.0.1:6379/0",
        "REDIS_URL": "redis://127.0.0.1:41234/0",
    }
    use_worker_redis_db(environ)
    assert environ["REDIS_URL"] == "redis://127.0.0.1:41234/0"


def test_nothing_changes_outside_xdist() -> None:
    environ = {"REDIS_URL": "redis://127.0.0.1:6379/0"}
    use_worker_redis_db(environ)
    assert environ == {"REDIS_URL": "redis://127.0.0.1:6379/0"}


@pytest.mark.parametrize(
    "environ", [{"PYTEST_XDIST_WORKER": "gw3"}, {"PYTEST_XDIST_WORKER": "gw3", "REDIS_URL": ""}]
)
def test_a_worker_without_redis_url_marks_its_processes_to_keep_theirs(environ: dict[str, str]) -> None:
    use_worker_redis_db(environ)  # the worker's own embedded server: nothing to derive
    assert environ.get("REDIS_URL", "") == "" and environ[BASE_REDIS_URL_ENV] == ""
    # A process it starts gets the embedded server's URL and the worker's variables: it keeps that URL.
    child = {**environ, "REDIS_URL": "unix:///tmp/orchestrator-test-redis-1/redis.sock?db=0"}
    use_worker_redis_db(child)
    assert child["REDIS_URL"] == "unix:///tmp/orchestrator-test-redis-1/redis.sock?db=0"


def test_this_session_has_a_redis_of_its_own() -> None:
    index = xdist_worker_index()
    if settings.REDIS_EMBEDDED:  # a private server, named by this process (each xdist worker is one)
        assert str(os.getpid()) in str(settings.EMBEDDED_REDIS_DIR)
        assert not os.environ.get(BASE_REDIS_URL_ENV)
    elif index is None:  # one session: REDIS_URL as given
        assert settings.REDIS_URL == os.environ["REDIS_URL"]
    else:
        assert redis_db(settings.REDIS_URL) == redis_db(os.environ[BASE_REDIS_URL_ENV]) + index
        assert os.environ["REDIS_URL"] == settings.REDIS_URL  # what the processes tests start inherit
