"""Operator console for SCIM: tokens across orgs, read-only (revoked through the API,
audited); the digest never shows."""

from __future__ import annotations

from django.contrib import admin

from orgs.admin import AllOrgsAdmin
from scim.models import ScimToken


@admin.register(ScimToken)
class ScimTokenAdmin(AllOrgsAdmin):
    list_display = (
        "prefix",
        "name",
        "org",
        "role",
        "created_by",
        "created_at",
        "revoked_at",
        "last_used_at",
    )
    list_filter = ("org", "revoked_at")
    search_fields = ("public_id", "name", "org__slug")
    exclude = ("secret_digest",)
    readonly_fields = (
        "public_id",
        "last_four",
        "name",
        "role",
        "granted_by_membership",
        "created_by",
        "created_at",
        "revoked_at",
        "last_used_at",
    )

    def has_add_permission(self, request) -> bool:
        return False  # tokens are minted through the API, where the secret is shown once

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
