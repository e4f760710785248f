"""gunicorn's worker for the web process: uvicorn's, with a bounded graceful shutdown.

The portal's live pages hold server-sent-event streams (portal/live.py) that never end on their own. uvicorn
waits for every open connection before a worker exits, so a restart (a deploy, ``max_requests`` recycling)
would hang on them until gunicorn's ``graceful_timeout`` kills the worker. This worker gives requests in
flight ``WEB_SHUTDOWN_GRACE_S`` seconds (5) to finish, then closes what is left; a browser reconnects its
stream by itself (the stream tells it to retry after two seconds).
"""

from __future__ import annotations

import os
from typing import Any

from uvicorn_worker import UvicornWorker

SHUTDOWN_GRACE_S = int(os.environ.get("WEB_SHUTDOWN_GRACE_S", "5"))


class WebWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        **UvicornWorker.CONFIG_KWARGS,
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_S,
    }
