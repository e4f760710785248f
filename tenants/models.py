"""Tenancy models (Tenant, membership, API keys, limits) are added by later issues."""
