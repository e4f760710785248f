"""Admin for tenancy. API keys are never shown after creation: the admin lists them by name and prefix,
never displays the hash, and creates them only through the tenant action "Create an API key", which
shows the new raw key once on a page of its own (not in a flash message, which would be stored in the
session or a cookie until displayed)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers

from tenants.models import ApiKey, Membership, Tenant
from tenants.services import api_key_create, api_key_revoke


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
