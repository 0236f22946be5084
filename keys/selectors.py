"""Named tenant-scoped reads of keys/ (run inside the active org scope)."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from keys.models import AccessRule, ApiKey, ProviderAccount, ServiceAccount
from orgs.access import Access


def service_account_list() -> QuerySet[ServiceAccount]:
    return ServiceAccount.objects.select_related("role").order_by("slug")


def service_account_get_by_ref(ref: str) -> ServiceAccount | None:
    import uuid

    try:
        return service_account_list().filter(pk=uuid.UUID(str(ref))).first()
    except ValueError:
        return service_account_list().filter(slug=ref).first()


def api_key_list_for(access: Access) -> QuerySet[ApiKey]:
    """All keys with ``api_key:view``; otherwise only the caller's own."""
    keys = ApiKey.objects.select_related("owner_user", "service_account").order_by("-created_at")
    if access.can("api_key:view"):
        return keys
    if access.service_account is not None:
        return keys.filter(service_account=access.service_account)
    return keys.filter(Q(owner_user=access.user) & Q(service_account__isnull=True))


def provider_account_list() -> QuerySet[ProviderAccount]:
    return ProviderAccount.objects.order_by("name")


def access_rule_list() -> QuerySet[AccessRule]:
    return AccessRule.objects.prefetch_related(
        "users", "teams", "roles", "service_accounts"
    ).order_by("position", "created_at")
