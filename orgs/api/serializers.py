"""Input and output serializers of the orgs API (inputs and outputs kept apart)."""

from __future__ import annotations

import copy

from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from inferia.serializers import InputSerializer
from orgs import access as acl
from orgs.models import (
    Invitation,
    Membership,
    Organization,
    Role,
    Team,
    TeamMember,
    User,
    slug_from_name,
    slug_validator,
)
from orgs.policy import (
    CACHE_BYTES_MAX,
    CACHE_BYTES_MIN,
    CACHE_ENTRY_MAX,
    CACHE_ENTRY_MIN,
    CACHE_TTL_MAX,
    CACHE_TTL_MIN,
)

# --- auth -----------------------------------------------------------------------


class LoginInput(InputSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False)
    otp_code = serializers.CharField(max_length=64, required=False, allow_blank=True)


class RefreshInput(InputSerializer):
    refresh_token = serializers.CharField(max_length=4096)


class PasswordChangeInput(InputSerializer):
    current_password = serializers.CharField(max_length=4096, trim_whitespace=False)
    new_password = serializers.CharField(max_length=4096, trim_whitespace=False)


class OtpCodeInput(InputSerializer):
    otp_code = serializers.CharField(max_length=64)


class UserOutput(serializers.ModelSerializer):
    two_factor_enabled = serializers.SerializerMethodField()

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "two_factor_enabled",
            "date_joined",
        ]

    def get_two_factor_enabled(self, user: User) -> bool:
        return user.has_confirmed_totp


class TokenPairOutput(serializers.Serializer):
    access_token = serializers.CharField()
    refresh_token = serializers.CharField()
    token_type = serializers.CharField(default="Bearer")
    expires_at = serializers.DateTimeField()
    user = UserOutput()


# --- the device authorization grant (RFC 8628): OAuth's own form fields and answers ---


class DeviceCodeInput(serializers.Serializer):
    """Documentation of ``POST /auth/device/code`` (form-encoded or JSON; unknown
    parameters are ignored, as RFC 6749 section 3.1 requires)."""

    client_id = serializers.CharField(help_text="A registered public client, e.g. inferia-cli.")
    org = serializers.CharField(
        required=False, help_text="Slug of the organization the client is for (optional)."
    )
    scope = serializers.CharField(
        required=False, help_text="Ignored: the tokens carry the approving user's own access."
    )


class DeviceCodeOutput(serializers.Serializer):
    device_code = serializers.CharField()
    user_code = serializers.CharField()
    verification_uri = serializers.CharField()
    verification_uri_complete = serializers.CharField()
    expires_in = serializers.IntegerField()
    interval = serializers.IntegerField()


class DeviceTokenInput(serializers.Serializer):
    grant_type = serializers.ChoiceField(choices=["urn:ietf:params:oauth:grant-type:device_code"])
    device_code = serializers.CharField()
    client_id = serializers.CharField()


class DeviceTokenOutput(TokenPairOutput):
    expires_in = serializers.IntegerField(help_text="Seconds the access token lives.")


class OAuthErrorOutput(serializers.Serializer):
    """RFC 6749 section 5.2 / RFC 8628 section 3.5 error answer."""

    error = serializers.ChoiceField(
        choices=[
            "authorization_pending",
            "slow_down",
            "access_denied",
            "expired_token",
            "invalid_grant",
            "invalid_client",
            "invalid_request",
            "unsupported_grant_type",
        ]
    )
    error_description = serializers.CharField()
    interval = serializers.IntegerField(
        required=False, help_text="With slow_down: the polling interval from now on."
    )


class TotpSetupOutput(serializers.Serializer):
    otpauth_uri = serializers.CharField()
    qr_svg = serializers.CharField()


class RecoveryCodesOutput(serializers.Serializer):
    recovery_codes = serializers.ListField(child=serializers.CharField())


# --- orgs ---------------------------------------------------------------------------


class OrgSettingsInput(InputSerializer):
    """Policy knobs kept in ``Organization.settings`` (read by later parts)."""

    max_key_lifetime_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
    allowed_private_hosts = serializers.ListField(
        child=serializers.CharField(max_length=255), required=False, max_length=100
    )
    audit_retention_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
    # Needs sso:manage too, and turning it on an enabled identity provider and an Owner
    # with 2FA (``tenancy.enforce_sso_change_check``).
    enforce_sso = serializers.BooleanField(required=False)
    # Gateway limits (null: unlimited). Org-wide, per principal and per key defaults.
    requests_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    tokens_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    principal_requests_per_minute = serializers.IntegerField(
        min_value=1, required=False, allow_null=True
    )
    principal_tokens_per_minute = serializers.IntegerField(
        min_value=1, required=False, allow_null=True
    )
    key_requests_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    key_tokens_per_minute = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    monthly_token_quota = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    monthly_cost_quota = serializers.DecimalField(
        max_digits=14,
        decimal_places=4,
        min_value=0,
        required=False,
        allow_null=True,
        coerce_to_string=False,
    )
    rate_limit_on_backend_error = serializers.ChoiceField(choices=["allow", "deny"], required=False)
    quota_on_backend_error = serializers.ChoiceField(choices=["allow", "deny"], required=False)
    default_max_tokens = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False)
    max_prompt_chars = serializers.IntegerField(min_value=1, max_value=10_000_000, required=False)
    max_body_bytes = serializers.IntegerField(min_value=1024, required=False)
    # Prompts and answers are stored (encrypted) only when this is on.
    payload_logging = serializers.BooleanField(required=False)
    payload_retention_days = serializers.IntegerField(min_value=1, max_value=365, required=False)
    # The response cache: needs cache:manage too (``orgs.services.cache.settings_check``).
    cache_enabled = serializers.BooleanField(required=False)
    cache_ttl_seconds = serializers.IntegerField(
        min_value=CACHE_TTL_MIN, max_value=CACHE_TTL_MAX, required=False
    )
    cache_max_bytes = serializers.IntegerField(
        min_value=CACHE_BYTES_MIN, max_value=CACHE_BYTES_MAX, required=False
    )
    cache_max_entry_bytes = serializers.IntegerField(
        min_value=CACHE_ENTRY_MIN, max_value=CACHE_ENTRY_MAX, required=False
    )
    # Background jobs and alerts.
    unused_key_days = serializers.IntegerField(min_value=1, max_value=3650, required=False)
    alert_failed_logins = serializers.IntegerField(min_value=1, required=False)
    alert_denials = serializers.IntegerField(min_value=1, required=False)
    alert_token_spike_factor = serializers.FloatField(min_value=1.0, required=False)
    alert_token_spike_min = serializers.IntegerField(min_value=1, required=False)

    def to_internal_value(self, data):
        # A misspelt knob (say ``alowed_private_hosts``) must not be accepted and dropped.
        if isinstance(data, dict):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: ["Unknown setting."] for key in unknown})
        value = super().to_internal_value(data)
        if value.get("monthly_cost_quota") is not None:
            value["monthly_cost_quota"] = float(value["monthly_cost_quota"])
        return value


class OrganizationCreateInput(InputSerializer):
    slug = serializers.CharField(max_length=50, validators=[slug_validator])
    name = serializers.CharField(max_length=200)


class OrganizationUpdateInput(InputSerializer):
    name = serializers.CharField(max_length=200, required=False)
    require_2fa = serializers.BooleanField(required=False)
    settings = OrgSettingsInput(required=False)


def _cache_knob(knob: str) -> serializers.Field:
    """A fresh copy of ``OrgSettingsInput``'s field for ``knob``: one set of bounds."""
    return copy.deepcopy(OrgSettingsInput._declared_fields[knob])


class CacheSettingsInput(InputSerializer):
    """The response cache's settings (``/orgs/{org}/cache``); PUT resets omitted ones."""

    enabled = _cache_knob("cache_enabled")
    ttl_seconds = _cache_knob("cache_ttl_seconds")
    max_bytes = _cache_knob("cache_max_bytes")
    max_entry_bytes = _cache_knob("cache_max_entry_bytes")


class CacheOutput(serializers.Serializer):
    enabled = serializers.BooleanField()
    ttl_seconds = serializers.IntegerField()
    max_bytes = serializers.IntegerField(help_text="The org's cap on stored answers, in bytes.")
    max_entry_bytes = serializers.IntegerField(help_text="Larger answers are not stored.")
    available = serializers.BooleanField(
        help_text="False when the server runs without Redis: the cache cannot be turned on."
    )
    entries = serializers.IntegerField(help_text="Answers stored and not expired.")
    bytes = serializers.IntegerField(help_text="Bytes the org's entries hold now.")
    hits = serializers.IntegerField()
    misses = serializers.IntegerField()


class CachePurgeOutput(serializers.Serializer):
    model = serializers.CharField(allow_null=True, help_text="The model purged; null: all.")
    purged = serializers.IntegerField(help_text="Entries dropped.")


class SensitiveActionInput(InputSerializer):
    otp_code = serializers.CharField(max_length=64, required=False, allow_blank=True)
    password = serializers.CharField(
        max_length=4096, required=False, allow_blank=True, trim_whitespace=False
    )


class TransferOwnershipInput(SensitiveActionInput):
    member_id = serializers.UUIDField()


class OrganizationOutput(serializers.ModelSerializer):
    class Meta:
        model = Organization
        fields = ["id", "slug", "name", "require_2fa", "settings", "created_at", "updated_at"]


class RoleBriefOutput(serializers.ModelSerializer):
    class Meta:
        model = Role
        fields = ["id", "slug", "name"]


class MembershipOutput(serializers.ModelSerializer):
    user = serializers.SerializerMethodField()
    role = RoleBriefOutput()

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "created_at", "updated_at"]

    def get_user(self, membership: Membership) -> dict:
        user = membership.user
        return {"id": str(user.pk), "username": user.username, "email": user.email}


class MyMembershipOutput(serializers.Serializer):
    org = OrganizationOutput(source="membership.org")
    role = RoleBriefOutput(source="membership.role")
    permissions = serializers.ListField(child=serializers.CharField())


class MeOutput(serializers.Serializer):
    user = UserOutput()
    memberships = MyMembershipOutput(many=True)


class MemberUpdateInput(InputSerializer):
    role = serializers.CharField(
        help_text="Role id, slug or displayed name (member, Member)", max_length=64
    )


class SlugFromNameInput(InputSerializer):
    """A create input whose ``slug`` is optional: when omitted it is derived from
    ``name`` (``orgs.models.slug_from_name``). A derived slug is held to the same rules
    as a given one: taken in the org (or reserved) is a 409 CONFLICT, never a silent suffix."""

    slug = serializers.CharField(
        max_length=50,
        validators=[slug_validator],
        required=False,
        help_text="Omitted: derived from the name (Django's slugify).",
    )

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if not attrs.get("slug"):
            derived = slug_from_name(attrs.get("name", ""))
            if not derived:
                raise serializers.ValidationError(
                    {"slug": ["The name has no letter or digit to derive a slug from; give one."]}
                )
            attrs["slug"] = derived
        return attrs


# --- roles ---------------------------------------------------------------------------


class PermissionListField(serializers.ListField):
    child = serializers.CharField(max_length=64)

    def to_internal_value(self, data):
        names = super().to_internal_value(data)
        return sorted(acl.normalize_permissions(names))


class RoleCreateInput(SlugFromNameInput):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default=""
    )
    permissions = PermissionListField(allow_empty=True)


class RoleUpdateInput(InputSerializer):
    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    permissions = PermissionListField(required=False, allow_empty=True)


class RoleOutput(serializers.ModelSerializer):
    is_builtin = serializers.BooleanField(read_only=True)
    # Counted in lists and reads; null in the answer to a create or change (the schema
    # said integer while the server sent null: found by schemathesis).
    member_count = serializers.IntegerField(read_only=True, default=None, allow_null=True)

    class Meta:
        model = Role
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "permissions",
            "is_builtin",
            "member_count",
            "created_at",
        ]


# --- teams ---------------------------------------------------------------------------


class TeamCreateInput(SlugFromNameInput):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default=""
    )


class TeamUpdateInput(InputSerializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class TeamOutput(serializers.ModelSerializer):
    # Counted in lists and reads; null in the answer to a create or change (the schema
    # said integer while the server sent null: found by schemathesis).
    member_count = serializers.IntegerField(read_only=True, default=None, allow_null=True)

    class Meta:
        model = Team
        fields = ["id", "slug", "name", "description", "member_count", "created_at"]


class TeamMemberInput(InputSerializer):
    user_id = serializers.UUIDField()


class TeamMemberOutput(serializers.ModelSerializer):
    user_id = serializers.UUIDField(source="user.pk")
    username = serializers.CharField(source="user.username")

    class Meta:
        model = TeamMember
        fields = ["user_id", "username", "created_at"]


# --- invitations ---------------------------------------------------------------------


class InvitationCreateInput(InputSerializer):
    email = serializers.EmailField()
    role = serializers.CharField(
        max_length=64, help_text="Role id, slug or displayed name (member, Member)"
    )


class InvitationOutput(serializers.ModelSerializer):
    role = RoleBriefOutput()
    status = serializers.CharField()
    invited_by = serializers.SerializerMethodField()

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "status",
            "invited_by",
            "created_at",
            "expires_at",
            "sent_at",
            "send_count",
            "accepted_at",
            "revoked_at",
        ]

    def get_invited_by(self, invitation: Invitation) -> str | None:
        inviter = invitation.invited_by
        return inviter.user.username if inviter else None


class InvitationAcceptInput(InputSerializer):
    # The account is created without full_clean(): validate the name like Django's User does.
    username = serializers.CharField(
        max_length=150, required=False, validators=[UnicodeUsernameValidator()]
    )
    password = serializers.CharField(max_length=4096, required=False, trim_whitespace=False)
