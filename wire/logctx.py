"""Which call a log line is about: ``call_id`` and ``tenant_id`` on every record, from a context variable.

Every process that handles calls (web, Celery worker and beat, the Stasis app, the media worker) sets the
ids where it takes up a call, and :class:`CallContextFilter` on its log handlers copies them onto each
record, so one call can be followed across processes by its id (with ``LOG_FORMAT=json`` they are fields of
every line, ``null`` outside a call). Standard library only: the media worker has no Django.

* ``with call_context(call_id=..., tenant_id=...):`` for a block (a Celery task, a request);
* :func:`bind_call` / :func:`unbind` where a block does not fit (asyncio callbacks, signal pairs).

The ids live in one mutable :class:`CallIds` per call: asyncio tasks and callbacks copy the context when
they are created, so an id learnt later (the tenant, once the call brief is read) is set on the object all
of them share, with :meth:`CallIds.update`, rather than in a context of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

__all__ = [
    "CallContextFilter",
    "CallIds",
    "bind_call",
    "call_context",
    "current",
    "install",
    "unbind",
]


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


class CallIds:
    """The ids of the call being handled; ``None`` where not (yet) known."""

    __slots__ = ("call_id", "tenant_id")

    def __init__(self, call_id: Any = None, tenant_id: Any = None) -> None:
        self.call_id = _text(call_id)
        self.tenant_id = _text(tenant_id)

    def update(self, *, call_id: Any = None, tenant_id: Any = None) -> None:
        """Set the ids given (others are kept): seen by every task and callback of this call."""
        if call_id is not None:
            self.call_id = _text(call_id)
        if tenant_id is not None:
            self.tenant_id = _text(tenant_id)

    def __repr__(self) -> str:
        return f"CallIds(call_id={self.call_id!r}, tenant_id={self.tenant_id!r})"


_current: ContextVar[CallIds | None] = ContextVar("call_ids", default=None)


def current() -> CallIds | None:
    """The ids of the call handled in this context, or None."""
    return _current.get()


def bind_call(*, call_id: Any = None, tenant_id: Any = None) -> Token[CallIds | None]:
    """Make this context handle the call: until :func:`unbind` with the token returned (or for good, in a
    task or callback context of the call's own)."""
    return _current.set(CallIds(call_id, tenant_id))


def unbind(token: Token[CallIds | None]) -> None:
    _current.reset(token)


@contextmanager
def call_context(*, call_id: Any = None, tenant_id: Any = None) -> Iterator[CallIds]:
    """Log lines inside the block carry these ids."""
    token = bind_call(call_id=call_id, tenant_id=tenant_id)
    try:
        yield _current.get() or CallIds()
    finally:
        _current.reset(token)


class CallContextFilter(logging.Filter):
    """Sets ``record.call_id`` and ``record.tenant_id`` from the call context (never drops a record).

    Ids given explicitly (``logger.info(..., extra={"call_id": ...})``) are kept. Put it on handlers, not
    loggers: a logger's filters do not see the records its children propagate to it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _current.get()
        if getattr(record, "call_id", None) is None:
            record.call_id = ids.call_id if ids is not None else None
        if getattr(record, "tenant_id", None) is None:
            record.tenant_id = ids.tenant_id if ids is not None else None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add a :class:`CallContextFilter` to every handler of ``logger`` (default: the root logger) that has
    none yet."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, CallContextFilter) for f in handler.filters):
            handler.addFilter(CallContextFilter())
