"""Operator console for orgs/: every model, with org filters and search.

Org-owned models are listed across organizations through ``all_orgs``.
Secrets (TOTP seeds, token digests) are never shown.
"""

from __future__ import annotations

from typing import ClassVar

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import HttpResponseRedirect
from django.urls import reverse

from inferia.errors import InferiaError
from inferia.request_meta import RequestMeta
from orgs.models import (
    DeviceAuthorization,
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
from orgs.services import auth


class AllOrgsAdmin(admin.ModelAdmin):
    """Admin for OrgOwnedModel rows: operators see every organization.

    Admin runs with no organization scope. A form field for a foreign key to
    another org-owned row would list its choices through the org-scoped
    manager (and fail), and changing such a link here would bypass the
    services' rules; so those links are shown read-only.
    """

    list_filter: ClassVar[tuple[str, ...]] = ("org",)

    def get_queryset(self, request):
        return self.model.all_orgs.get_queryset()

    def get_readonly_fields(self, request, obj=None):
        org_owned_links = [
            field.name
            for field in self.model._meta.get_fields()
            if field.many_to_one and field.concrete and hasattr(field.related_model, "all_orgs")
        ]
        return (*super().get_readonly_fields(request, obj), *org_owned_links)


class ReadOnlyAccessAdmin(admin.ModelAdmin):
    """Rows that decide tenant access (memberships, roles): changed through the API and
    the dashboard only, where the services apply the rules (bounded delegation, last
    owner) and write the audit record. Operators look, they do not edit here."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Users: access flags and passwords change through ``auth.user_admin_save`` and
    ``auth.user_password_set`` (audited; narrowing access ends the user's sessions).
    Django groups and permissions are not used by Inferia: read-only here."""

    list_display = ("username", "email", "is_active", "is_staff", "date_joined", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser")
    readonly_fields = ("auth_version", "groups", "user_permissions", "last_login", "date_joined")

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        if not request.user.is_superuser:
            # The service refuses it too; read-only here so the form says so.
            fields = (*fields, "is_staff", "is_superuser")
        return fields

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deactivate instead: records keep their actor, tokens die audited

    def save_model(self, request, obj, form, change) -> None:
        try:
            auth.user_admin_save(
                operator=request.user,
                user=obj,
                changed_fields=list(form.changed_data),
                created=not change,
                meta=RequestMeta.from_http(request),
            )
        except InferiaError as exc:
            raise DjangoPermissionDenied(exc.message) from exc

    def save_related(self, request, form, formsets, change) -> None:
        pass  # groups and permissions are read-only

    def user_change_password(self, request, id, form_url=""):
        user = self.get_object(request, unquote(id))
        if (
            request.method != "POST"
            or user is None
            or not self.has_change_permission(request, user)
        ):
            return super().user_change_password(request, id, form_url)
        form = self.change_password_form(user, request.POST)
        if not form.is_valid():
            return super().user_change_password(request, id, form_url)
        usable = form.cleaned_data.get("usable_password", "true") not in (False, "false")
        auth.user_password_set(
            operator=request.user,
            user=user,
            new_password=form.cleaned_data.get("password1") if usable else None,
            meta=RequestMeta.from_http(request),
        )
        messages.success(request, "Password changed; every session of the user was ended.")
        return HttpResponseRedirect(
            reverse(f"{self.admin_site.name}:orgs_user_change", args=(user.pk,))
        )


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "require_2fa", "created_at")
    list_filter = ("require_2fa",)
    search_fields = ("slug", "name")
    # Policy (2FA requirement, audit retention, limits) changes through the org's
    # settings API, where the Owner rules and the audit record apply.
    readonly_fields = ("require_2fa", "settings")


@admin.register(Role)
class RoleAdmin(ReadOnlyAccessAdmin):
    list_display = ("slug", "name", "org")
    list_filter: ClassVar[tuple[str, ...]] = ("org",)
    search_fields = ("slug", "name")


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAccessAdmin, AllOrgsAdmin):
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


@admin.register(DeviceAuthorization)
class DeviceAuthorizationAdmin(admin.ModelAdmin):
    """Device sign-in requests, read-only: their digests are never shown; a login one
    started is ended like any other (the user's sessions, deactivation)."""

    list_display = ("id", "client_id", "status", "user", "org_slug", "created_at", "expires_at")
    list_filter = ("status", "client_id")
    search_fields = ("user__username", "client_id", "org_slug")
    exclude = ("device_code_digest", "user_code_digest")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
