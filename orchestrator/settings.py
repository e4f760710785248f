"""Django settings, read from the environment (twelve-factor, via django-environ).

Every variable has a working local default except SECRET_KEY, which is only defaulted in debug mode:
a production deployment that forgets it must fail loudly, not run with a key from the repository.

| variable        | default                                   |
|-----------------|-------------------------------------------|
| DEBUG           | false                                     |
| SECRET_KEY      | required unless DEBUG                     |
| ALLOWED_HOSTS   | empty (Django then allows only localhost in DEBUG) |
| DATABASE_URL    | SQLite in var/db.sqlite3                  |
| DB_CONN_MAX_AGE | 60 (seconds a database connection is kept; 0 closes it after each request/task) |
| REDIS_URL       | an embedded Redis on var/redis/redis.sock |
| LOG_LEVEL       | INFO                                      |
| LOG_FORMAT      | json, or text when DEBUG (see "logs, metrics, Sentry" below) |
| SENTRY_DSN      | unset: no Sentry                          |
| FIELD_ENCRYPTION_KEY | required unless DEBUG: checked at start-up (see orchestrator/crypto.py) |
| PHONE_TEST_PREFIXES  | empty: only numbers valid for their country are accepted |
| MEDIA_SILENCE_PROMPT_S, MEDIA_SILENCE_END_S, TRANSFER_TIMEOUT_S | 10, 25, 30 (the call brief's limits) |
| PUBLIC_BASE_URL | http://127.0.0.1:8000 (links and provider webhook URLs)         |
| SMS_*, TWILIO_API_BASE, TELNYX_API_BASE, MESSAGING_* | see "messaging" below    |
| IMPORT_INLINE_MAX_ROWS, IMPORT_BATCH_ROWS | 1000, 1000 (a larger CSV import runs on a worker) |
| CACHE_KEY_PREFIX | orchestrator:cache (Django's cache, on REDIS_URL) |
| API_THROTTLE_RATE, API_IMPORT_THROTTLE_RATE | 1200/min, 20/min per tenant (the CSV import: both) |
| AXES_FAILURE_LIMIT, AXES_COOLOFF_MINUTES | 5 failed sign-ins of a name from one address: locked 15 min |
| STATIC_ROOT     | var/static (collectstatic's target, served by whitenoise) |
| STATIC_MANIFEST | on unless DEBUG: hashed, compressed static file names |
| SESSION_COOKIE_SECURE, CSRF_COOKIE_SECURE, SECURE_SSL_REDIRECT | on unless DEBUG |
| SECURE_HSTS_SECONDS, SECURE_HSTS_INCLUDE_SUBDOMAINS, SECURE_HSTS_PRELOAD | 1 year, on, off (unless DEBUG) |
| SECURE_PROXY_SSL_HEADER | empty; e.g. X-Forwarded-Proto behind a proxy that always sets it |
| SESSION_HOURS | 12 (a portal session ends this long after sign-in) |
| EMAIL_URL, DEFAULT_FROM_EMAIL | consolemail:// (printed), no-reply@localhost: resets, invitations |
| RECORDINGS_DIR, RECORDINGS_S3_* | var/recordings; S3-compatible storage when RECORDINGS_S3_BUCKET is set |
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from orchestrator.crypto import check_keys as check_field_encryption_keys
from orchestrator.embedded_redis import EmbeddedRedis
from orchestrator.logconfig import logging_config
from orchestrator.redis_client import celery_url_for
from orchestrator.sentry import init_sentry
from recordings.storage import storage_settings as recordings_storage_settings

BASE_DIR = Path(__file__).resolve().parent.parent
# Local state of the product on embedded defaults: SQLite file, embedded Redis, beat schedule.
VAR_DIR = BASE_DIR / "var"

env = environ.Env()

DEBUG: bool = env.bool("DEBUG", default=False)

# Only ever used with DEBUG on; see the module docstring.
_DEBUG_ONLY_SECRET_KEY = "django-insecure-local-development-key-never-use-in-production"  # noqa: S105
SECRET_KEY: str = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set the SECRET_KEY environment variable "
            "(or DEBUG=1 for local development, which uses a fixed insecure key)."
        )
    SECRET_KEY = _DEBUG_ONLY_SECRET_KEY

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",  # login attempt limiting (settings block "login attempts" below)
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally (no CDN)
    # The project package is an app too: it owns the runlocal command and the platform tasks (heartbeat).
    "orchestrator.apps.OrchestratorConfig",
    "tenants.apps.TenantsConfig",
    "campaigns.apps.CampaignsConfig",
    "flows.apps.FlowsConfig",
    "messaging.apps.MessagingConfig",
    "timers.apps.TimersConfig",
    "recordings.apps.RecordingsConfig",
    "integrations.apps.IntegrationsConfig",
    "django_htmx",
    "portal.apps.PortalConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files from STATIC_ROOT (after collectstatic), before anything else reads the request.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",  # request.htmx: the portal answers htmx requests with partials
    # Last, as django-axes requires: turns a locked-out sign-in into its lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "orchestrator.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.portal",
            ],
        },
    },
]

WSGI_APPLICATION = "orchestrator.wsgi.application"
ASGI_APPLICATION = "orchestrator.asgi.application"

# --------------------------------------------------------------------------------------------- database
_DEFAULT_SQLITE = VAR_DIR / "db.sqlite3"
DATABASES: dict[str, dict[str, Any]] = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{_DEFAULT_SQLITE}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3" and DATABASES["default"]["NAME"] == str(
    _DEFAULT_SQLITE
):
    # SQLite creates the file but not its directory.
    VAR_DIR.mkdir(exist_ok=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite is the local default; several processes (web, worker threads, beat, Stasis) write to it at once.
    # IMMEDIATE takes the write lock when a transaction starts, so a read-then-write transaction never fails
    # with "database is locked" on upgrading its lock; WAL lets readers run during a write; the timeout is
    # how long a writer waits for the lock.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
# Keep database connections between requests and Celery tasks (Django closes them at the end of each one
# when this is 0): a new PostgreSQL connection costs more than a dispatch pass or an originate. A connection
# found broken is replaced (health checks), and one older than this is closed at the end of its task.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A connection pool (psycopg's) instead: set for the web process by orchestrator/asgi.py, where each request
# runs in a thread of its own and a per-thread persistent connection would be lost with its thread.
if env.bool("DB_POOL", default=False) and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": env.int("DB_POOL_MAX_SIZE", default=8),
        "timeout": 10,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ------------------------------------------------------------------------------------------------ redis
# Unset REDIS_URL means "embedded": the URL is known up front, the server itself is started lazily (first
# Redis or Celery use in a process, or by runlocal), so importing settings never spawns anything.
EMBEDDED_REDIS_DIR = VAR_DIR / "redis"
REDIS_EMBEDDED: bool = not env.str("REDIS_URL", default="")
REDIS_URL: str = EmbeddedRedis(EMBEDDED_REDIS_DIR).url if REDIS_EMBEDDED else env.str("REDIS_URL")

# ------------------------------------------------------------------------------------------------ cache
# Django's cache (DRF throttling, anything else that caches) on the same Redis, under a prefix of its own.
CACHES: dict[str, dict[str, Any]] = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="orchestrator:cache"),
        # A stuck Redis costs a request seconds, not forever (as orchestrator/redis_client.py's client).
        "OPTIONS": {"socket_timeout": 5.0, "socket_connect_timeout": 5.0},
    }
}

# ----------------------------------------------------------------------------------------------- celery
# Only the locations live here; the reliability defaults are fixed in orchestrator/celery.py.
CELERY_BROKER_URL = celery_url_for(REDIS_URL)
CELERY_RESULT_BACKEND = celery_url_for(REDIS_URL)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# The queue every task goes to. Two deployments sharing one Redis keep apart with a queue (and a beat lock)
# of their own each.
CELERY_TASK_DEFAULT_QUEUE: str = env.str("CELERY_QUEUE", default="celery")
# Held by the one running beat; see orchestrator/beat_lock.py.
BEAT_LOCK_KEY: str = env.str("BEAT_LOCK_KEY", default="orchestrator:beat:lock")

# ------------------------------------------------------------------------------------------------- auth
# Every sign-in (the admin's, and any later login form calling django.contrib.auth.authenticate) goes
# through django-axes first: too many failures for a user name from one address lock that pair out.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT: int = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The lockout answer (HTTP 429) is a page that says what happened and when to try again.
AXES_LOCKOUT_TEMPLATE = "portal/auth/locked.html"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

REST_FRAMEWORK = {
    # API key (Authorization: Bearer vco_...) first, then the Django session (portal, browsable docs).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.api.authentication.ApiKeyAuthentication",
        "tenants.api.authentication.TenantSessionAuthentication",
    ],
    # Closed by default: every endpoint states who may call it.
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "orchestrator.api.CappedPageNumberPagination",
    # JSON bodies only (the CSV import adds its own parsers), with a depth limit: orchestrator/parsers.py.
    "DEFAULT_PARSER_CLASSES": ["orchestrator.parsers.JSONParser"],
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # services raise InvalidInput(field, message): answered as 400 {field: [message]}.
    "EXCEPTION_HANDLER": "orchestrator.api.exception_handler",
    # Per tenant (orchestrator/throttling.py): every request of a tenant counts against "tenant", and a
    # route with a throttle_scope (the CSV import: "import") against that rate too. Over it: a JSON 429
    # with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": [
        "orchestrator.throttling.TenantRateThrottle",
        "orchestrator.throttling.TenantScopedRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "tenant": env.str("API_THROTTLE_RATE", default="1200/min"),
        "import": env.str("API_IMPORT_THROTTLE_RATE", default="20/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Voice campaign orchestrator API",
    "DESCRIPTION": "Tenant-scoped REST API. Authenticate with `Authorization: Bearer vco_...`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Attempt.outcome and Lead.last_outcome share one set of choices: one schema enum.
    # The models' choices (value, label) themselves: the enum's own names would not match their labels, and
    # the override would silently not apply (two enums; `check --deploy` warns drf_spectacular.W001).
    "ENUM_NAME_OVERRIDES": {
        "AttemptOutcomeEnum": "campaigns.models._OUTCOME_CHOICES",
        "IncidentStatusEnum": "flows.models.Incident.Status",
        "InboundCallStatusEnum": "flows.models.InboundCall.Status",
        "WeekdayEnum": "flows.models.WEEKDAY_CHOICES",
        "SmsProviderEnum": "messaging.models.Provider",
        "TimelineEventKindEnum": "flows.models.IncidentEvent.Kind",
        "RecordingStateEnum": "recordings.models.Recording.State",
        "AttemptStateEnum": "orchestrator.schema.attempt_state_choices",
        "TransferKindEnum": "campaigns.models_transfers.TransferKind",
        "ConsentKindEnum": "campaigns.models.ConsentKind",
        "WebhookDeliveryStatusEnum": "integrations.models.WebhookDelivery.Status",
        "TransferModeEnum": "campaigns.models_transfers.TransferMode",
        "TransferStateEnum": "campaigns.models_transfers.TransferState",
    },
    # Every route's error answers (400/401/403/404/413/415) and their schemas: orchestrator/schema.py.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "orchestrator.schema.add_error_responses",
    ],
}

# ---------------------------------------------------------------------------------------------- secrets
# Fernet key(s) for secrets stored in the database (PBX passwords): comma-separated, the first encrypts.
# Required, and checked here, unless DEBUG (where a key derived from SECRET_KEY stands in): a deployment
# without one refuses to start instead of failing at the first write of a secret.
FIELD_ENCRYPTION_KEY: str = env.str("FIELD_ENCRYPTION_KEY", default="")
check_field_encryption_keys(FIELD_ENCRYPTION_KEY, debug=DEBUG)

# Where the platform may connect on a tenant's behalf (tenants/urlpolicy.py): tenant-supplied URLs (the ARI
# URL of a PBX a tenant brings, later SMS and webhook URLs) must resolve to public addresses only, unless
# the operator allows these networks (CIDRs, e.g. 127.0.0.1/32 for the simulator) or host names.
TENANT_URL_ALLOWED_NETWORKS: list[str] = env.list("TENANT_URL_ALLOWED_NETWORKS", default=[])
TENANT_URL_ALLOWED_HOSTS: list[str] = env.list("TENANT_URL_ALLOWED_HOSTS", default=[])

# ------------------------------------------------------------------------------------------------ phone
# E.164 prefixes accepted although not valid numbers of a real numbering plan, e.g. "+1555" for the
# fictional numbers the PBX simulator's demo plan uses. Empty: every number must be valid for its country.
PHONE_TEST_PREFIXES: list[str] = env.list("PHONE_TEST_PREFIXES", default=[])

# --------------------------------------------------------------------------------------- contact import
# A CSV import of more rows than this is stored and run by a Celery worker (202, then poll
# GET /api/v1/imports/{id}); a smaller one is imported within the request and answered with its report.
IMPORT_INLINE_MAX_ROWS: int = env.int("IMPORT_INLINE_MAX_ROWS", default=1_000)
# Rows written per bulk statement; a worker's import commits (and reports progress) after each batch.
IMPORT_BATCH_ROWS: int = env.int("IMPORT_BATCH_ROWS", default=1_000)

# ------------------------------------------------------------------------------------------- telephony
# The Stasis app (`manage.py run_stasis`) hands call events to this sink (telephony knows no campaigns):
# outbound calls to the attempts, inbound ones to the inbound call records (orchestrator/sink.py).
TELEPHONY_EVENT_SINK: str = env.str("TELEPHONY_EVENT_SINK", default="orchestrator.sink.CallEventRouter")
# What an inbound caller hears while no inbound flow routes the call, before the app hangs up (a sound URI
# of the PBX; the default is Asterisk's "the number you have dialed is not in service").
INBOUND_UNROUTED_MESSAGE: str = env.str("INBOUND_UNROUTED_MESSAGE", default="sound:ss-noservice")
# AudioSocket listeners of the media workers (host:port), used round-robin for externalMedia.
MEDIA_WORKER_HOSTS: list[str] = env.list("MEDIA_WORKER_HOSTS", default=["127.0.0.1:9092"])
# Hard maximum duration of one call, enforced by the Stasis app (DESIGN.md §5 rule 5).
MAX_CALL_DURATION_S: int = env.int("MAX_CALL_DURATION_S", default=3600)
# Apps above campaigns that react to an attempt's call events, in the transaction applying each one
# (campaigns/sink.py): dotted paths of hook(*, attempt_id, event).
TELEPHONY_EVENT_HOOKS: list[str] = ["recordings.services.recordings.recording_on_call_event"]

# ------------------------------------------------------------------------------------------ recordings
# Call recordings (recordings/): fetched from the PBX after the call into STORAGES["recordings"], a local
# directory (RECORDINGS_DIR) or, with RECORDINGS_S3_BUCKET, S3-compatible storage (README "Call recordings").
RECORDINGS_DIR: str = env.str("RECORDINGS_DIR", default=str(VAR_DIR / "recordings"))
# The largest recording file fetched from a PBX, and how long one fetch may take.
RECORDINGS_MAX_BYTES: int = env.int("RECORDINGS_MAX_BYTES", default=200 * 1024 * 1024)
RECORDINGS_FETCH_TIMEOUT_S: float = env.float("RECORDINGS_FETCH_TIMEOUT_S", default=120.0)
# A queued attempt with no originate task expected for this long (its worker was killed, its message lost)
# is handed a new originate task by the stalled-attempt sweep (campaigns.tasks.resume_stalled_attempts).
ATTEMPT_STALL_S: int = env.int("ATTEMPT_STALL_S", default=60)

# ------------------------------------------------------------------------------------------ media worker
# Limits the call brief hands the media worker (campaigns/services/briefs.py): after this many seconds of
# caller silence the agent prompts, after this many it ends the call; how long a transfer may ring.
MEDIA_SILENCE_PROMPT_S: int = env.int("MEDIA_SILENCE_PROMPT_S", default=10)
MEDIA_SILENCE_END_S: int = env.int("MEDIA_SILENCE_END_S", default=25)
TRANSFER_TIMEOUT_S: int = env.int("TRANSFER_TIMEOUT_S", default=30)
# The dialplan contexts a "queue" transfer target may dial (as Local/<queue>@<context>): the operator's list.
TRANSFER_QUEUE_CONTEXTS: list[str] = env.list("TRANSFER_QUEUE_CONTEXTS", default=["ai-queues"])

# ------------------------------------------------------------------------------------------- messaging
# Where the product is reached from outside (links in messages, the webhook URLs given to SMS providers).
# Behind a proxy, set it to the public https:// origin: Twilio signs the exact URL it called.
PUBLIC_BASE_URL: str = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
# The SMS providers' APIs (empty: Twilio's own, https://api.twilio.com); point TWILIO_API_BASE at the local
# stand-in (python -m telephony.sim.sms) for the demo and tests. A tenant without an SMS account: console.
TWILIO_API_BASE: str = env.str("TWILIO_API_BASE", default="")
TELNYX_API_BASE: str = env.str("TELNYX_API_BASE", default="https://api.telnyx.com")
# Every provider request's timeout; send tries of one message (retryable errors), and the backoff between.
SMS_PROVIDER_TIMEOUT_S: float = env.float("SMS_PROVIDER_TIMEOUT_S", default=10.0)
SMS_SEND_MAX_TRIES: int = env.int("SMS_SEND_MAX_TRIES", default=5)
SMS_RETRY_BACKOFF_S: float = env.float("SMS_RETRY_BACKOFF_S", default=5.0)
SMS_RETRY_BACKOFF_MAX_S: float = env.float("SMS_RETRY_BACKOFF_MAX_S", default=300.0)
# A Telnyx webhook whose signed timestamp is further than this from now is refused (replay).
TELNYX_WEBHOOK_TOLERANCE_S: int = env.int("TELNYX_WEBHOOK_TOLERANCE_S", default=300)
# The answer to HELP ({tenant}: the tenant's name).
MESSAGING_HELP_TEXT: str = env.str(
    "MESSAGING_HELP_TEXT",
    default="{tenant}: automated notifications. Reply STOP to opt out, START to opt back in.",
)
# The domain's handlers (dotted paths; messaging/hooks.py): status changes, and inbound replies (the
# on-call people's answers to their pages).
MESSAGING_STATUS_HANDLERS: list[str] = env.list(
    "MESSAGING_STATUS_HANDLERS", default=["flows.services.pages.page_sms_status"]
)
MESSAGING_REPLY_HANDLERS: list[str] = env.list(
    "MESSAGING_REPLY_HANDLERS", default=["flows.services.pages.page_sms_reply"]
)

# ---------------------------------------------------------------------------------------- i18n and time
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# ------------------------------------------------------------------------------------------ static files
# Served by whitenoise from STATIC_ROOT after `manage.py collectstatic`; outside DEBUG with compressed,
# content-hashed names (a page then needs the manifest collectstatic writes: STATIC_MANIFEST=0 to do without).
STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
if STATIC_ROOT == VAR_DIR / "static":
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing one at every start
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "recordings": recordings_storage_settings(os.environ, default_dir=RECORDINGS_DIR),
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env.bool("STATIC_MANIFEST", default=not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# -------------------------------------------------------------------------------------------- security
SESSION_COOKIE_HTTPONLY = True
# The portal's session: SameSite=Lax cookies (a cross-site POST carries none), ended SESSION_HOURS after
# sign-in and on sign-out. Not renewed on every request: a page's live stream (portal/live.py) must not
# write the session, which would hold a database connection for as long as the stream stays open.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = int(env.float("SESSION_HOURS", default=12) * 3600)
LOGIN_URL = "portal:signin"
LOGIN_REDIRECT_URL = "portal:dashboard"
LOGOUT_REDIRECT_URL = "portal:signin"
# Password reset and invitation mails: printed on the console unless EMAIL_URL names an SMTP server
# (smtp://user:password@host:587, submission with STARTTLS: smtp+tls://...).
_EMAIL: dict[str, Any] = env.email_url("EMAIL_URL", default="consolemail://")
EMAIL_BACKEND: str = _EMAIL["EMAIL_BACKEND"]
EMAIL_HOST: str = _EMAIL.get("EMAIL_HOST") or "localhost"
EMAIL_PORT: int = int(_EMAIL.get("EMAIL_PORT") or 25)
EMAIL_HOST_USER: str = _EMAIL.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD: str = _EMAIL.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS: bool = bool(_EMAIL.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL: bool = bool(_EMAIL.get("EMAIL_USE_SSL"))
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL: str = env.str("DEFAULT_FROM_EMAIL", default="no-reply@localhost")
PASSWORD_RESET_TIMEOUT = 3600  # a reset link works for an hour
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    # TLS is terminated in front (nginx, caddy): plain HTTP is redirected, except the health probe and the
    # Prometheus scrape (both made over plain HTTP from inside; /metrics guards itself).
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
    if not SECURE_HSTS_PRELOAD:
        # Joining the browsers' preload list is the operator's decision (SECURE_HSTS_PRELOAD=1, then submit
        # the domain), not a default: Django's reminder about it is silenced.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
# The request came in over HTTPS when the proxy says so in this header (e.g. X-Forwarded-Proto). Only for a
# proxy that always sets it: gunicorn's uvicorn workers already take it from FORWARDED_ALLOW_IPS proxies.
_PROXY_SSL_HEADER: str = env.str("SECURE_PROXY_SSL_HEADER", default="")
if _PROXY_SSL_HEADER:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _PROXY_SSL_HEADER.upper().replace("-", "_"), "https")

# ------------------------------------------------------------------------------- logs, metrics, Sentry
# README "Metrics and logs". LOG_FORMAT: text or json (json lines carry call_id and tenant_id); JSON unless
# DEBUG (make run). /metrics on the web app answers METRICS_ALLOWED_NETWORKS or "Bearer METRICS_TOKEN";
# the Celery worker and the Stasis app serve theirs on these host:port (empty or "off": none).
LOG_LEVEL: str = env.str("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT: str = env.str("LOG_FORMAT", default="text" if DEBUG else "json").lower()
LOGGING: dict[str, Any] = logging_config(level=LOG_LEVEL, fmt=LOG_FORMAT)
METRICS_ALLOWED_NETWORKS: list[str] = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/8", "::1/128"])
METRICS_TOKEN: str = env.str("METRICS_TOKEN", default="")
WORKER_METRICS_LISTEN: str = env.str("WORKER_METRICS_LISTEN", default="127.0.0.1:9101")
STASIS_METRICS_LISTEN: str = env.str("STASIS_METRICS_LISTEN", default="127.0.0.1:9102")
SENTRY_DSN: str = env.str("SENTRY_DSN", default="")
init_sentry(SENTRY_DSN, environment=env.str("SENTRY_ENVIRONMENT", default=""))

# ------------------------------------------------------------------------------- timers and inbound flows
# Durable timers (timers/models.py): the beat sweep runs this often: it fires every overdue pending timer
# and sends the fire task of each timer due within TIMERS_LOOKAHEAD_S (more than one period), so no Celery
# countdown is ever longer than that (a worker killed with -9 loses only those).
TIMERS_SWEEP_S: float = env.float("TIMERS_SWEEP_S", default=1.0)

# ------------------------------------------------------------------------------------------- webhooks
# Outgoing webhooks to tenants' systems (integrations/): seconds to wait after the 1st, 2nd, ... failed try
# (the last entry repeats), how many tries before a delivery is failed, each request's timeout, how much of
# an answer is read, and how often the beat sweep re-enqueues due deliveries (same variable in celery.py).
WEBHOOK_BACKOFF_S: list[float] = [
    float(s) for s in env.list("WEBHOOK_BACKOFF_S", default=["30", "120", "600", "3600", "21600"])
]
WEBHOOK_MAX_ATTEMPTS: int = env.int("WEBHOOK_MAX_ATTEMPTS", default=6)
WEBHOOK_TIMEOUT_S: float = env.float("WEBHOOK_TIMEOUT_S", default=10.0)
WEBHOOK_RESPONSE_MAX_BYTES: int = env.int("WEBHOOK_RESPONSE_MAX_BYTES", default=65536)
WEBHOOKS_SWEEP_S: float = env.float("WEBHOOKS_SWEEP_S", default=10.0)
# Delivered and failed deliveries are kept this long in the delivery log, then pruned by the sweep.
WEBHOOK_LOG_RETENTION_DAYS: int = env.int("WEBHOOK_LOG_RETENTION_DAYS", default=30)

# ------------------------------------------------------------------------------------- call summaries
# The summary pass after each campaign call (campaigns/services/results.py): OpenAI's Chat Completions API
# when OPENAI_API_KEY is set (model, base URL, timeout), else a local extractive summary of the transcript.
OPENAI_API_KEY: str = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL: str = env.str("OPENAI_BASE_URL", default="https://api.openai.com/v1")
SUMMARY_MODEL: str = env.str("SUMMARY_MODEL", default="gpt-4o-mini")
SUMMARY_TIMEOUT_S: float = env.float("SUMMARY_TIMEOUT_S", default=20.0)
TIMERS_LOOKAHEAD_S: float = env.float("TIMERS_LOOKAHEAD_S", default=3.0)
# Timer kind -> handler (dotted path), called as fn(timer=Timer) inside the firing's transaction.
TIMER_HANDLERS: dict[str, str] = {
    "flows.escalation_step": "flows.services.escalation.escalation_step_due",
    "flows.caller_callback": "flows.services.escalation.incident_callback_due",
    "campaigns.callback": "campaigns.services.agent_actions.callback_timer_due",
}
# Counters of a tenant's live calls that are not campaign attempts (dotted paths, fn(tenant_id=) -> int): the
# dispatcher adds them to the attempts it counts against the tenant's cap.
TENANT_LIVE_CALLS_ELSEWHERE: list[str] = env.list(
    "TENANT_LIVE_CALLS_ELSEWHERE", default=["flows.selectors.tenant_live_flow_calls"]
)
# The shortest wait an escalation step may have (tests lower it).
FLOWS_MIN_STEP_WAIT_S: int = env.int("FLOWS_MIN_STEP_WAIT_S", default=30)
# How long a signed acknowledgement link stays valid.
FLOWS_ACK_LINK_MAX_AGE_S: int = env.int("FLOWS_ACK_LINK_MAX_AGE_S", default=86400)
# Ring time of a page call.
FLOWS_PAGE_RING_S: int = env.int("FLOWS_PAGE_RING_S", default=30)
