"""Durable timers: deadlines stored in the database, fired exactly once by Celery.

A timer is one row per ``key`` (the owner's name for it, e.g. ``flows.incident:42``). Setting it
again (:func:`timers.services.timer_set`) moves its deadline and gives it a new ``token``; a firing
carries the token it was scheduled with, and only the firing whose token still matches moves the row
from ``pending`` to ``fired`` (one conditional UPDATE), in the same transaction as the handler's
writes. So a stale firing (the timer was moved or cancelled since), a duplicate (a redelivered Celery
message, the sweep racing the countdown task) or a firing whose transaction rolled back does nothing,
and the next one tries again.

Celery countdowns alone are not durable: a worker holds the messages of its countdowns in memory until they
are due, so one killed with ``-9`` takes them along (they come back only after the broker's visibility
timeout), and an ETA beyond that timeout runs twice. So no countdown is ever long: the beat task
``timers.sweep`` (every ``TIMERS_SWEEP_S``) sends the ``timers.fire`` task of each timer only when its
deadline is within ``TIMERS_LOOKAHEAD_S`` (``dispatched_at`` records it, once per token), and fires every
overdue pending timer itself. A lost message therefore costs at most one sweep period, and only the
timers due within the look-ahead at that moment are exposed to it.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class Timer(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        FIRED = "fired", "Fired"
        CANCELLED = "cancelled", "Cancelled"

    kind = models.CharField(max_length=64, help_text="Names the handler (settings.TIMER_HANDLERS).")
    key = models.CharField(max_length=200, unique=True, help_text="The owner's name for this timer.")
    due_at = models.DateTimeField()
    token = models.UUIDField(default=uuid.uuid4)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    payload = models.JSONField(default=dict, blank=True)
    fired_at = models.DateTimeField(null=True, blank=True)
    # When the fire task of the current token was sent (None: not yet; the sweep sends it near the deadline).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    # Handler failures of the sweep (a handler that raises is retried at the next sweep, with a backoff).
    failures = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["due_at", "pk"]
        indexes = [
            # The sweep: overdue pending timers, oldest first; stays as small as the pending timers.
            models.Index(fields=["due_at"], condition=Q(state="pending"), name="timer_pending_due"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pending", "fired", "cancelled"]), name="timer_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.state}, due {self.due_at:%Y-%m-%d %H:%M:%S})"
