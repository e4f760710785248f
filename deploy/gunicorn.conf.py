"""gunicorn's settings for the web process: uvicorn workers serving the ASGI app.

Used by the systemd unit (deploy/systemd/orchestrator-web.service), the Procfile and the compose file:

    gunicorn --config deploy/gunicorn.conf.py

Environment (besides the product's own settings):

* ``WEB_BIND`` [127.0.0.1:8000]: comma-separated addresses (``unix:/run/orchestrator/web.sock`` too). TLS is
  terminated in front (nginx, caddy), which proxies here.
* ``WEB_CONCURRENCY`` [2]: worker processes (gunicorn's own variable).
* ``FORWARDED_ALLOW_IPS`` [127.0.0.1,::1]: the proxies whose ``X-Forwarded-For`` / ``X-Forwarded-Proto``
  are believed (gunicorn's own variable; the uvicorn workers apply it), so the client address (login
  attempt limiting) and HTTPS (secure cookies, the SSL redirect) are the real ones.
* ``WEB_TIMEOUT`` [60]: seconds a worker may stay silent before it is restarted.
* ``WEB_SHUTDOWN_GRACE_S`` [5]: on a restart, seconds requests in flight get before the rest (the portal's
  live streams, which never end on their own) are closed (orchestrator/web_worker.py).
"""

import os

wsgi_app = "orchestrator.asgi:application"
worker_class = "orchestrator.web_worker.WebWorker"  # uvicorn's, with a bounded graceful shutdown
bind = [address.strip() for address in os.environ.get("WEB_BIND", "127.0.0.1:8000").split(",") if address]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
# SIGTERM: requests in flight get this long to finish.
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then (a leak in a dependency stays bounded), not all at once.
max_requests = 5000
max_requests_jitter = 500
# Logs to stdout/stderr: the journal, the container runtime or the Procfile runner keeps them.
accesslog = "-"
errorlog = "-"
