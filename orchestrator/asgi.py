"""ASGI entry point (``orchestrator.asgi:application``): the web process (gunicorn with uvicorn workers).

Under ASGI, Django runs each request's synchronous code in a thread of that request's own
(``ThreadSensitiveContext``), and a database connection belongs to its thread: a persistent connection
(``CONN_MAX_AGE`` > 0) would outlive its thread unclosed, one per request, until PostgreSQL refuses new
clients (a burst of provider webhooks did exactly that). So this process takes its PostgreSQL connections
from a pool (``DB_POOL``, at most ``DB_POOL_MAX_SIZE`` per process), giving each back at the end of its
request, and with SQLite closes them, unless ``DB_POOL`` / ``DB_CONN_MAX_AGE`` are set for it explicitly.
Workers and the Stasis app keep their own persistent connections.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator.settings")
os.environ.setdefault("DB_POOL", "1")
os.environ.setdefault("DB_CONN_MAX_AGE", "0")

application = get_asgi_application()
