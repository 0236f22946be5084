"""Operator console for sso/: read-only across orgs (the org's admins change SSO
through the API and the dashboard, where the services apply the rules and audit);
one audited emergency action stops sign-ins through a provider."""

from __future__ import annotations

from django.contrib import admin, messages

from inferia.request_meta import RequestMeta
from orgs.admin import AllOrgsAdmin, ReadOnlyAccessAdmin
from sso import services
from sso.models import GroupMapping, IdentityProvider, SsoIdentity, VerifiedDomain


class _ReadOnly(ReadOnlyAccessAdmin, AllOrgsAdmin):
    pass


@admin.register(IdentityProvider)
class IdentityProviderAdmin(_ReadOnly):
    list_display = ("name", "kind", "org", "is_enabled", "created_at")
    list_filter = ("org", "kind", "is_enabled")
    search_fields = ("name", "org__slug", "issuer", "idp_entity_id")
    exclude = ("encrypted_client_secret",)
    actions = ["disable_selected"]

    def has_change_permission(self, request, obj=None) -> bool:
        # The list needs it for the action; the form stays read-only (get_readonly_fields).
        return obj is None and request.user.is_superuser

    @admin.action(description="Disable selected identity providers (emergency)")
    def disable_selected(self, request, queryset) -> None:
        meta = RequestMeta.from_http(request)
        for provider in queryset:
            services.identity_provider_disable_by_operator(
                operator=request.user, provider=provider, meta=meta
            )
        messages.success(request, f"{queryset.count()} identity provider(s) disabled.")


@admin.register(VerifiedDomain)
class VerifiedDomainAdmin(_ReadOnly):
    list_display = ("domain", "org", "status", "created_at", "verified_at")
    list_filter = ("org", "status")
    search_fields = ("domain", "org__slug")
    exclude = ("challenge",)


@admin.register(GroupMapping)
class GroupMappingAdmin(_ReadOnly):
    list_display = ("group", "provider", "role", "team", "org")
    search_fields = ("group", "org__slug")


@admin.register(SsoIdentity)
class SsoIdentityAdmin(_ReadOnly):
    list_display = ("user", "provider", "org", "created_at", "last_login_at")
    search_fields = ("user__username", "org__slug")
    exclude = ("subject",)
