"""The Django processes' logging: plain text or JSON lines (``LOG_FORMAT``), each record with the
``call_id`` and ``tenant_id`` of the call being handled (wire/logctx.py), so one call can be followed
across web, worker, beat, Stasis app and media worker by its id.

Importable from settings: nothing here needs Django to be set up.
"""

from __future__ import annotations

from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d: %(message)s"
# python-json-logger keeps the fields named here, in order; call_id and tenant_id are null outside a call.
JSON_FORMAT = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s %(call_id)s %(tenant_id)s"
JSON_RENAMES = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}
LOG_FORMATS = ("text", "json")
# Extra record attributes not to write as fields. Celery's task lines carry the task's arguments in "data":
# call reports (transcripts), numbers. The text format never showed them; neither does JSON.
JSON_EXCLUDED_EXTRAS = ("data",)


def logging_config(*, level: str, fmt: str) -> dict[str, Any]:
    """``settings.LOGGING`` for ``fmt`` (``text`` or ``json``) at root ``level``."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {LOG_FORMATS}, got {fmt!r}")
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FORMAT,
            "rename_fields": JSON_RENAMES,
            "reserved_attrs": [*RESERVED_ATTRS, *JSON_EXCLUDED_EXTRAS],
        }
        if fmt == "json"
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        # Keep loggers created at import time (Celery's, redis-py's) alive.
        "disable_existing_loggers": False,
        "filters": {"call": {"()": "wire.logctx.CallContextFilter"}},
        "formatters": {"default": formatter},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "default", "filters": ["call"]},
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Every SQL statement is logged at DEBUG: too much even when debugging everything else.
            "django.db.backends": {"level": "INFO"},
            # httpx logs every request URL at INFO: ARI originates carry the dialed number and caller id.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }
