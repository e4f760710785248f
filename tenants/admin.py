"""Admin for tenancy. API keys are never shown after creation: the admin lists them by name and prefix,
never displays the hash, and creates them only through the tenant action "Create an API key", which
shows the new raw key once on a page of its own (not in a flash message, which would be stored in the
session or a cookie until displayed).

Invitations are made by a tenant's owners and admins in the portal (the link is mailed, only its hash is
kept): the admin lists them and can revoke them, never shows a hash and adds none. The audit log is
read-only here: entries are written by the services only, and nobody edits history."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from orchestrator.admin_forms import ReadOnlyAdmin
from tenants.models import ApiKey, AuditEntry, Invitation, Membership, Tenant
from tenants.selectors import invitation_state
from tenants.services import api_key_create, api_key_revoke, invitation_revoke


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["created_at"]


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "status",
        "max_concurrent_calls",
        "inbound_reserve",
        "calls_per_second",
        "created_at",
    ]
    list_filter = ["status"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at"]
    inlines = [MembershipInline]
    actions = ["create_api_key"]

    @admin.action(description="Create an API key (shown once)")
    def create_api_key(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one tenant to create an API key for.", messages.ERROR)
            return None
        tenant = queryset.get()
        user = request.user if request.user.is_authenticated else None
        api_key, raw_key = api_key_create(tenant=tenant, name=f"admin: {request.user}", created_by=user)
        response = TemplateResponse(
            request,
            "admin/tenants/apikey_created.html",
            {
                **self.admin_site.each_context(request),
                "title": "API key created",
                "tenant": tenant,
                "api_key": api_key,
                "raw_key": raw_key,
                "opts": ApiKey._meta,
            },
        )
        add_never_cache_headers(response)
        return response


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["tenant", "user", "role", "created_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["tenant__name", "tenant__slug", "user__username", "user__email"]
    autocomplete_fields = ["user", "tenant"]
    readonly_fields = ["created_at"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "masked_key", "created_by", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["tenant", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "tenant__name", "tenant__slug"]
    fields = ["tenant", "name", "masked_key", "created_by", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["tenant", "masked_key", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="key")
    def masked_key(self, obj: ApiKey) -> str:
        return f"vco_{obj.prefix}…"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are made by the tenant action, which shows the raw key once

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        keys = list(queryset.filter(revoked_at__isnull=True))
        for api_key in keys:
            api_key_revoke(api_key=api_key)
        self.message_user(request, f"Revoked {len(keys)} API key(s).", messages.SUCCESS)


_INVITATION_FIELDS = (
    "tenant", "email", "role", "state", "invited_by", "created_at", "expires_at", "accepted_at",
    "accepted_by", "revoked_at",
)  # fmt: skip


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ["email", "tenant", "role", "state", "invited_by", "created_at", "expires_at"]
    list_filter = ["role", "tenant"]
    search_fields = ["email", "tenant__name", "tenant__slug"]
    list_select_related = ["tenant", "invited_by"]
    fields = _INVITATION_FIELDS
    readonly_fields = _INVITATION_FIELDS
    actions = ["revoke"]

    @admin.display(description="state")
    def state(self, obj: Invitation) -> str:
        return invitation_state(obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # made in the portal, which mails the link (the raw token exists only there)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Revoke the selected invitations")
    def revoke(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        pending = list(queryset.filter(accepted_at__isnull=True, revoked_at__isnull=True))
        for invitation in pending:
            invitation_revoke(invitation=invitation)
        self.message_user(request, f"Revoked {len(pending)} invitation(s).", messages.SUCCESS)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["at", "tenant", "actor_label", "via", "action", "target"]
    list_filter = ["via", "tenant"]
    search_fields = ["actor_label", "action", "target", "tenant__name", "tenant__slug"]
    list_select_related = ["tenant"]
    date_hierarchy = "at"
