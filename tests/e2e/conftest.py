"""Fixtures of the end-to-end tests: a :class:`~tests.e2e.stack.Stack` of real processes on this test
session's PostgreSQL database and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import database_url
from tests.e2e.stack import Stack


@pytest.fixture
def stack(subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[Stack]:
    env = dict(subprocess_env, DATABASE_URL=database_url(), DJANGO_LOG_LEVEL="INFO")
    the_stack = Stack(directory=tmp_path / "stack", env=env)
    try:
        yield the_stack
    finally:
        the_stack.stop()
        print(the_stack.logs())  # shown by pytest only when the test failed
