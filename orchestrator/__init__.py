"""The Django project: settings from the environment, URLs, the Celery app, ASGI/WSGI entry points."""

# Load the Celery app whenever Django starts, so `shared_task` binds to it and `.delay()` uses its broker.
from orchestrator.celery import app as celery_app

__all__ = ("celery_app",)
