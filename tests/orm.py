"""The ORM from async tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    """Run ORM code from an async test in a thread (as the sinks do), closing its connection after it, so
    the test database can be dropped at the end."""

    def run() -> T:
        try:
            return fn()
        finally:
            connections.close_all()

    return await sync_to_async(run, thread_sensitive=False)()
