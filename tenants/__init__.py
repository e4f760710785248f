"""Tenancy: tenants, membership and roles, API keys, per-tenant limits and secrets."""
