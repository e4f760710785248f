"""Sentry error reporting for the Django processes (web, Celery worker and beat, Stasis app), called from
settings: nothing at all happens without ``SENTRY_DSN``."""

from __future__ import annotations


def init_sentry(dsn: str, *, environment: str = "", traces_sample_rate: float = 0.0) -> bool:
    """Initialise sentry-sdk with the Django and Celery integrations when ``dsn`` is set; True if it did."""
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment or None,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,  # phone numbers, names and transcripts stay out of error reports
    )
    return True
