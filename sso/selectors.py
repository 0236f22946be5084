"""Tenant-scoped reads of sso/ (the active org scope applies)."""

from __future__ import annotations

from django.db.models import QuerySet

from sso.models import GroupMapping, IdentityProvider, VerifiedDomain


def identity_provider_list() -> QuerySet[IdentityProvider]:
    return IdentityProvider.objects.select_related("default_role")


def identity_provider_enabled_list() -> QuerySet[IdentityProvider]:
    return identity_provider_list().filter(is_enabled=True)


def identity_provider_get(provider_id) -> IdentityProvider | None:
    return identity_provider_list().filter(pk=provider_id).first()


def domain_list() -> QuerySet[VerifiedDomain]:
    return VerifiedDomain.objects.select_related("claimed_by", "verified_by")


def mapping_list(provider: IdentityProvider | None = None) -> QuerySet[GroupMapping]:
    rules = GroupMapping.objects.select_related("provider", "role", "team")
    return rules.filter(provider=provider) if provider is not None else rules
