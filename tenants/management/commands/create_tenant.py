"""``manage.py create_tenant``: a tenant, its owner (created if missing) and a first API key, printed once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import transaction
from django.db.models import Q

from orchestrator.errors import InvalidInput
from tenants.services import api_key_create, tenant_create

# Service field -> the option that supplied it, so errors name what the user typed.
_OPTION_FOR_FIELD = {
    "name": "--name",
    "slug": "--slug",
    "default_timezone": "--timezone",
    "max_concurrent_calls": "--max-concurrent-calls",
}


class Command(BaseCommand):
    help = (
        "Create a tenant with an owner (the user is created if no user has that email) and a first API key. "
        "The API key is printed once and cannot be shown again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="Display name, e.g. 'Acme Sales'.")
        parser.add_argument("--slug", required=True, help="Unique short name: letters, digits, - and _.")
        parser.add_argument("--owner-email", required=True, help="Email of the owner; created if missing.")
        parser.add_argument(
            "--owner-password",
            default=None,
            help="Password for a newly created owner (default: none, the user cannot log in until one is set "
            "with `manage.py changepassword`). Ignored for an existing user.",
        )
        parser.add_argument(
            "--timezone", default="UTC", help="IANA time zone, e.g. Europe/Paris (default UTC)."
        )
        parser.add_argument(
            "--max-concurrent-calls",
            type=int,
            default=5,
            help="Concurrent call cap of the tenant (default 5).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        email: str = options["owner_email"].strip()
        password: str | None = options["owner_password"]
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"--owner-email: {email!r} is not an email address") from exc

        user_model = get_user_model()
        with transaction.atomic():
            owner = (
                user_model._default_manager.filter(
                    Q(email__iexact=email) | Q(**{f"{user_model.USERNAME_FIELD}__iexact": email})
                )
                .order_by("pk")
                .first()
            )
            created_user = owner is None
            if owner is None:
                owner = user_model(**{user_model.USERNAME_FIELD: email, "email": email})
                if password is None:
                    owner.set_unusable_password()
                else:
                    try:
                        validate_password(password, user=owner)
                    except ValidationError as exc:
                        raise CommandError(f"--owner-password: {' '.join(exc.messages)}") from exc
                    owner.set_password(password)
                owner.save()
            try:
                tenant = tenant_create(
                    name=options["name"],
                    slug=options["slug"],
                    owner=owner,
                    default_timezone=options["timezone"],
                    max_concurrent_calls=options["max_concurrent_calls"],
                )
            except InvalidInput as exc:
                option = _OPTION_FOR_FIELD.get(exc.field, exc.field)
                raise CommandError(f"{option}: {exc.message}") from exc
            _, raw_key = api_key_create(tenant=tenant, name="initial key (create_tenant)")

        if created_user:
            how = (
                "with the given password"
                if password is not None
                else f"without a password (set one with `manage.py changepassword {email}`)"
            )
            self.stdout.write(f"Created user {email} {how}.")
        elif password is not None:
            self.stderr.write(f"User {email} already exists: --owner-password was ignored.")
        self.stdout.write(
            self.style.SUCCESS(f"Created tenant {tenant.name!r} (slug {tenant.slug}) owned by {email}.")
        )
        self.stdout.write("API key (shown only this once; it is not stored and cannot be recovered):")
        self.stdout.write("")
        self.stdout.write(f"    {raw_key}")
        self.stdout.write("")
        self.stdout.write("Store it now. If it is lost, revoke it in the admin and create a new one.")
