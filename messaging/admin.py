"""The operator's view of messaging. An SMS account's secret is written through a form field (stored
encrypted) or named by environment variable (``secret_env``, the operator-only option); it is never shown."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from messaging.models import Message, OptOut, SmsAccount, WebhookReceipt
from messaging.services.accounts import sms_account_has_secret, webhook_urls
from orchestrator import crypto


class SmsAccountForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Auth Token / API key, stored encrypted. Leave empty to keep the current one.",
    )

    api_base = forms.URLField(
        required=False, assume_scheme="https", help_text=SmsAccount._meta.get_field("api_base").help_text
    )

    class Meta:
        model = SmsAccount
        fields = [
            "tenant", "kind", "username", "secret", "secret_env", "public_key", "messaging_profile_id",
            "api_base", "from_numbers", "enabled",
        ]  # fmt: skip

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("secret") and cleaned.get("secret_env"):
            self.add_error("secret", "Give at most one of secret or secret_env.")
        return cleaned

    def save(self, commit: bool = True) -> SmsAccount:
        account: SmsAccount = super().save(commit=False)
        secret = self.cleaned_data.get("secret")
        if secret:
            account.secret_encrypted = crypto.encrypt(secret)
            account.secret_env = ""
        elif account.secret_env:
            account.secret_encrypted = ""
        if commit:
            account.save()
        return account


@admin.register(SmsAccount)
class SmsAccountAdmin(admin.ModelAdmin):
    form = SmsAccountForm
    list_display = ("tenant", "kind", "username", "enabled", "has_secret", "webhook_id")
    list_filter = ("kind", "enabled")
    search_fields = ("tenant__name", "tenant__slug", "username")
    readonly_fields = ("webhook_id", "webhooks", "created_at", "updated_at")

    @admin.display(boolean=True, description="secret set")
    def has_secret(self, obj: SmsAccount) -> bool:
        return sms_account_has_secret(obj)

    @admin.display(description="webhook URLs to configure at the provider")
    def webhooks(self, obj: SmsAccount) -> str:
        return "; ".join(f"{name}: {url}" for name, url in webhook_urls(obj).items()) if obj.pk else "-"


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    """Messages are written by the services only; the admin shows them."""

    list_display = (
        "created_at",
        "tenant",
        "direction",
        "to_number",
        "from_number",
        "status",
        "provider",
        "purpose",
    )
    list_filter = ("direction", "status", "provider", "purpose")
    search_fields = ("to_number", "from_number", "provider_message_id", "ref", "body")
    raw_id_fields = ("tenant", "account")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False


@admin.register(OptOut)
class OptOutAdmin(admin.ModelAdmin):
    list_display = ("tenant", "phone_number", "source", "keyword", "created_at")
    list_filter = ("source",)
    search_fields = ("phone_number", "tenant__slug")


@admin.register(WebhookReceipt)
class WebhookReceiptAdmin(admin.ModelAdmin):
    list_display = ("received_at", "provider", "kind", "event_key", "processed_at", "tries", "outcome")
    list_filter = ("provider", "kind")
    search_fields = ("event_key",)
    raw_id_fields = ("account", "message")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookReceipt | None = None) -> bool:
        return False
