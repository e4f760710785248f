"""The settings module reads the environment: each case loads it in a subprocess with a clean environment."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from orchestrator.redis_client import celery_url_for
from tests.conftest import PROJECT_ROOT, run_python

pytestmark = pytest.mark.slow  # a Python process per case, importing Django

_LOAD_SETTINGS = """
import json, os
os.environ["DJANGO_SETTINGS_MODULE"] = "orchestrator.settings"
from django.core.exceptions import ImproperlyConfigured
from django.conf import settings
try:
    db = settings.DATABASES["default"]
except ImproperlyConfigured as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
else:
    print(json.dumps({
        "DEBUG": settings.DEBUG,
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
        "ENGINE": db["ENGINE"], "NAME": str(db["NAME"]), "HOST": db.get("HOST"), "PORT": db.get("PORT"),
        "USER": db.get("USER"),
        "REDIS_EMBEDDED": settings.REDIS_EMBEDDED, "REDIS_URL": settings.REDIS_URL,
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_RESULT_BACKEND": settings.CELERY_RESULT_BACKEND,
        "TIME_ZONE": settings.TIME_ZONE, "USE_TZ": settings.USE_TZ,
    }))
"""


A_FERNET_KEY = "dGVzdC1vbmx5LWZpZWxkLWVuY3J5cHRpb24ta2V5ISE="


def load_settings(*, without_field_key: bool = False, **environment: str) -> dict[str, Any]:
    """The settings as the product would see them with exactly ``environment`` (plus PATH) set; a valid
    FIELD_ENCRYPTION_KEY is added unless ``without_field_key`` (or the test gives its own)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment}
    if not without_field_key:
        env.setdefault("FIELD_ENCRYPTION_KEY", A_FERNET_KEY)
    completed = run_python(_LOAD_SETTINGS, env=env)
    assert completed.returncode == 0, completed.stderr
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def test_sqlite_file_in_var_is_the_default_database():
    loaded = load_settings(SECRET_KEY="k")
    assert loaded["ENGINE"] == "django.db.backends.sqlite3"
    assert loaded["NAME"] == str(PROJECT_ROOT / "var" / "db.sqlite3")


def test_database_url_selects_postgresql():
    loaded = load_settings(SECRET_KEY="k", DATABASE_URL="postgres://app:pw@db.internal:5433/orchestrator")
    assert loaded["ENGINE"] == "django.db.backends.postgresql"
    assert (loaded["NAME"], loaded["HOST"], loaded["PORT"], loaded["USER"]) == (
        "orchestrator",
        "db.internal",
        5433,
        "app",
    )


def test_missing_secret_key_without_debug_is_improperly_configured():
    loaded = load_settings()
    assert loaded.get("error") == "ImproperlyConfigured"
    assert "SECRET_KEY" in loaded["message"]


def test_missing_field_encryption_key_without_debug_is_refused_at_start_up():
    """Not a 500 at the first write of a secret: every Django process refuses to start."""
    loaded = load_settings(SECRET_KEY="k", without_field_key=True)
    assert loaded.get("error") == "ImproperlyConfigured"
    assert "FIELD_ENCRYPTION_KEY" in loaded["message"]


def test_a_malformed_field_encryption_key_is_refused_at_start_up():
    loaded = load_settings(SECRET_KEY="k", FIELD_ENCRYPTION_KEY="not-a-fernet-key")
    assert loaded.get("error") == "ImproperlyConfigured" and "key #1" in loaded["message"]


def test_debug_mode_may_run_without_a_field_encryption_key():
    assert load_settings(DEBUG="1", without_field_key=True)["DEBUG"] is True


def test_debug_off_is_the_default():
    assert load_settings(SECRET_KEY="k")["DEBUG"] is False


def test_debug_mode_may_run_without_secret_key_on_a_fixed_dev_key():
    loaded = load_settings(DEBUG="1")
    assert loaded["DEBUG"] is True
    assert loaded["SECRET_KEY"].startswith("django-insecure-")


def test_secret_key_comes_from_the_environment():
    assert load_settings(SECRET_KEY="from-env", DEBUG="1")["SECRET_KEY"] == "from-env"


def test_allowed_hosts_from_the_environment():
    loaded = load_settings(SECRET_KEY="k", ALLOWED_HOSTS="calls.example.com,api.example.com")
    assert loaded["ALLOWED_HOSTS"] == ["calls.example.com", "api.example.com"]


def test_unset_redis_url_means_the_embedded_server_for_redis_and_celery():
    loaded = load_settings(SECRET_KEY="k")
    socket_path = PROJECT_ROOT / "var" / "redis" / "redis.sock"
    assert loaded["REDIS_EMBEDDED"] is True
    assert loaded["REDIS_URL"] == f"unix://{socket_path}?db=0"
    assert loaded["CELERY_BROKER_URL"] == f"redis+socket://{socket_path}?virtual_host=0"
    assert loaded["CELERY_RESULT_BACKEND"] == loaded["CELERY_BROKER_URL"]


def test_redis_url_is_used_as_is_for_redis_and_celery():
    loaded = load_settings(SECRET_KEY="k", REDIS_URL="redis://cache.internal:6380/2")
    assert loaded["REDIS_EMBEDDED"] is False
    assert loaded["REDIS_URL"] == loaded["CELERY_BROKER_URL"] == "redis://cache.internal:6380/2"


def test_time_is_utc_and_aware():
    loaded = load_settings(SECRET_KEY="k")
    assert (loaded["TIME_ZONE"], loaded["USE_TZ"]) == ("UTC", True)


def test_celery_url_for_unix_sockets_keeps_path_and_db():
    assert (
        celery_url_for("unix:///run/redis/r.sock?db=3") == "redis+socket:///run/redis/r.sock?virtual_host=3"
    )
    assert celery_url_for("unix:///run/redis/r.sock") == "redis+socket:///run/redis/r.sock?virtual_host=0"
    assert celery_url_for("rediss://h:6379/1") == "rediss://h:6379/1"
