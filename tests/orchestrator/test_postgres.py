"""Behaviour the orchestrator relies on that only PostgreSQL provides (mandatory in CI)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connection, connections, transaction

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_the_database_is_a_supported_postgresql():
    assert connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        (version,) = cursor.fetchone()
    assert int(version) >= 140000  # the oldest PostgreSQL that Django 5.2 supports


def test_skip_locked_claims_hand_each_row_to_one_claimer():
    # The claim pattern of DESIGN.md §4: a second claimer skips rows locked by the first, instead of
    # waiting for them or claiming them twice.
    Group.objects.bulk_create([Group(name="first"), Group(name="second")])
    first_claimed = threading.Event()
    release_first = threading.Event()
    claimed_by_other: list[str] = []

    def hold_one_claim() -> None:
        try:
            with transaction.atomic():
                row = Group.objects.select_for_update(skip_locked=True, no_key=True).order_by("name").first()
                assert row is not None
                claimed_by_other.append(row.name)
                first_claimed.set()
                release_first.wait(timeout=10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_one_claim)
    holder.start()
    try:
        assert first_claimed.wait(timeout=10)
        with transaction.atomic():
            mine = list(
                Group.objects.select_for_update(skip_locked=True, no_key=True).values_list("name", flat=True)
            )
    finally:
        release_first.set()
        holder.join(timeout=10)
    assert claimed_by_other == ["first"]
    assert mine == ["second"]
