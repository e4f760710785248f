"""``manage.py portal_link``: where the portal is, and with DEBUG on (``make run``) a link that signs
straight in as the demo tenant's owner (a signed token, valid for a day; see portal/views/auth.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError

from campaigns.management.commands.seed_demo import DEMO_OWNER_EMAIL
from portal.views.auth import DEMO_SIGNIN_MAX_AGE_S, demo_signin_token


class Command(BaseCommand):
    help = "Print the portal's address (and, with DEBUG on, the demo owner's sign-in link)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default=settings.PUBLIC_BASE_URL, help="the web process's address")
        parser.add_argument("--user", default=DEMO_OWNER_EMAIL, help="who the DEBUG link signs in")

    def handle(self, *args: Any, **options: Any) -> None:
        base = options["base_url"].rstrip("/")
        owner = None
        try:
            if settings.DEBUG:
                owner = get_user_model().objects.filter(username=options["user"]).first()
        except DatabaseError:  # not migrated yet: the address alone
            pass
        if owner is None:
            self.stdout.write(f"portal: {base}/ (sign in with a tenant member's e-mail and password)")
            return
        hours = DEMO_SIGNIN_MAX_AGE_S // 3600
        self.stdout.write(
            f"portal: {base}/signin/demo/{demo_signin_token(owner.pk)} "
            f"(signs you in as {options['user']}; valid for {hours} hours)"
        )
