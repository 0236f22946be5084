"""Operator console for orgs/: every model, with org filters and search.

Org-owned models are listed across organizations through ``all_orgs``.
Secrets (TOTP seeds, token digests) are never shown.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from orgs.models import (
    Invitation,
    Membership,
    Organization,
    RecoveryCode,
    RefreshTokenRecord,
    Role,
    Team,
    TeamMember,
    TOTPDevice,
    User,
)


class AllOrgsAdmin(admin.ModelAdmin):
    """Admin for OrgOwnedModel rows: operators see every organization.

    Admin runs with no organization scope. A form field for a foreign key to
    another org-owned row would list its choices through the org-scoped
    manager (and fail), and changing such a link here would bypass the
    services' rules; so those links are shown read-only.
    """

    list_filter: tuple = ("org",)

    def get_queryset(self, request):
        return self.model.all_orgs.get_queryset()

    def get_readonly_fields(self, request, obj=None):
        org_owned_links = [
            field.name
            for field in self.model._meta.get_fields()
            if field.many_to_one and field.concrete and hasattr(field.related_model, "all_orgs")
        ]
        return (*super().get_readonly_fields(request, obj), *org_owned_links)


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "is_active", "is_staff", "date_joined", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser")
    readonly_fields = ("auth_version",)


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "require_2fa", "created_at")
    list_filter = ("require_2fa",)
    search_fields = ("slug", "name")


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "org")
    list_filter = ("org",)
    search_fields = ("slug", "name")


@admin.register(Membership)
class MembershipAdmin(AllOrgsAdmin):
    list_display = ("user", "org", "role", "created_at")
    list_filter = ("org", "role")
    search_fields = ("user__username", "user__email", "org__slug")
    raw_id_fields = ("user",)


@admin.register(Team)
class TeamAdmin(AllOrgsAdmin):
    list_display = ("slug", "name", "org", "created_at")
    search_fields = ("slug", "name", "org__slug")


@admin.register(TeamMember)
class TeamMemberAdmin(AllOrgsAdmin):
    list_display = ("team", "user", "org", "created_at")
    search_fields = ("team__slug", "user__username")

    def has_add_permission(self, request) -> bool:
        return False  # through the API: the team and the user must share the org


@admin.register(Invitation)
class InvitationAdmin(AllOrgsAdmin):
    list_display = ("email", "org", "role", "status", "created_at", "expires_at", "send_count")
    search_fields = ("email", "org__slug")
    exclude = ("token_digest",)
    readonly_fields = ("sent_at", "send_count", "accepted_at", "accepted_by", "revoked_at")

    def has_add_permission(self, request) -> bool:
        return False  # through the API: it mints the token and sends the e-mail


@admin.register(TOTPDevice)
class TOTPDeviceAdmin(admin.ModelAdmin):
    list_display = ("user", "name", "confirmed", "throttling_failure_count", "created_at")
    list_filter = ("confirmed",)
    search_fields = ("user__username",)
    exclude = ("encrypted_seed",)
    readonly_fields = ("last_t", "throttling_failure_timestamp", "throttling_failure_count")

    def has_add_permission(self, request) -> bool:
        return False  # enrolment goes through the user's own 2FA setup


@admin.register(RecoveryCode)
class RecoveryCodeAdmin(admin.ModelAdmin):
    list_display = ("user", "used_at", "created_at")
    list_filter = (("used_at", admin.EmptyFieldListFilter),)
    search_fields = ("user__username",)
    exclude = ("code_digest",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RefreshTokenRecord)
class RefreshTokenRecordAdmin(admin.ModelAdmin):
    list_display = ("jti", "user", "family", "created_at", "expires_at", "used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("user__username", "jti")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
