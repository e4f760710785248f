"""The domain's handlers, by dotted path in settings (messaging imports no domain app):

* ``MESSAGING_STATUS_HANDLERS``: ``fn(message=Message)`` after an outbound message's status changed (in the
  worker, inside the transaction that changed it: a handler's writes commit or roll back with it).
* ``MESSAGING_REPLY_HANDLERS``: ``fn(message=Message) -> bool`` for an inbound message that is not a
  STOP/START/HELP keyword; the first handler returning True consumed it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from messaging.models import Message

logger = logging.getLogger(__name__)


@functools.cache
def _load(path: str) -> Callable[..., Any]:
    try:
        handler = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"messaging handler {path!r} cannot be imported: {exc}") from exc
    if not callable(handler):
        raise ImproperlyConfigured(f"messaging handler {path!r} is not callable")
    return handler


def status_changed(message: Message) -> None:
    for path in getattr(settings, "MESSAGING_STATUS_HANDLERS", []):
        _load(path)(message=message)


def reply_received(message: Message) -> str:
    """The path of the handler that consumed ``message``, or "" when none did."""
    for path in getattr(settings, "MESSAGING_REPLY_HANDLERS", []):
        if _load(path)(message=message):
            return str(path)
    return ""
