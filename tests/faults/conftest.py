"""Fixtures of the fault suite: a PostgreSQL and a Redis server of its own for the whole session (the tests
restart them), a migrated template database each test copies, and the summary lines shown at the end of
the run (``fault=... calls=... wrong_outcomes=...``), so that they are in CI's log whatever the outcome."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import in_ci
from tests.faults.harness import migrate, product_env
from tests.faults.servers import PostgresServer, RedisServer, ServerUnavailable

TEMPLATE_DATABASE = "faults_template"
SUMMARY_LINES: list[str] = []


@dataclass
class FaultServers:
    postgres: PostgresServer
    redis: RedisServer
    template: str


@pytest.fixture(scope="session")
def fault_servers() -> Iterator[FaultServers]:
    try:
        postgres, redis_server = PostgresServer(), RedisServer()
    except ServerUnavailable as exc:
        if in_ci():
            pytest.fail(f"the fault suite cannot run its own servers here: {exc}")
        pytest.skip(f"the fault suite cannot run its own servers here: {exc}")
    try:
        postgres.start()
        redis_server.start()
        postgres.create_database(TEMPLATE_DATABASE)
        migrate({**os.environ, **product_env(postgres, redis_server, TEMPLATE_DATABASE)})
        yield FaultServers(postgres, redis_server, TEMPLATE_DATABASE)
    finally:
        redis_server.remove()
        postgres.remove()


@pytest.fixture
def record_summary() -> Callable[[str], None]:
    return SUMMARY_LINES.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if SUMMARY_LINES:
        terminalreporter.section("fault suite")
        for line in SUMMARY_LINES:
            terminalreporter.write_line(line)
