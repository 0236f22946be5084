"""Input and output serializers of the keys API. Secrets are write-only inputs."""

from __future__ import annotations

from rest_framework import serializers

from inferia.serializers import InputSerializer
from keys.models import AccessRule, ApiKey, ProviderAccount, ProviderType, ServiceAccount
from orgs.api.serializers import PermissionListField, RoleBriefOutput, SlugFromNameInput
from orgs.models import slug_validator


class ServiceAccountCreateInput(SlugFromNameInput):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default=""
    )
    role = serializers.CharField(
        max_length=64, help_text="Role id, slug or displayed name (member, Member)"
    )


class ServiceAccountUpdateInput(InputSerializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    role = serializers.CharField(max_length=64, required=False)
    disabled = serializers.BooleanField(required=False)


class ServiceAccountOutput(serializers.ModelSerializer):
    role = RoleBriefOutput()
    is_active = serializers.BooleanField()

    class Meta:
        model = ServiceAccount
        fields = [
            "id",
            "slug",
            "name",
            "description",
            "role",
            "is_active",
            "created_at",
            "disabled_at",
        ]


class ApiKeyCreateInput(InputSerializer):
    name = serializers.CharField(max_length=200)
    permissions = PermissionListField(allow_empty=False)
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=3650, required=False, allow_null=True
    )
    service_account = serializers.CharField(max_length=64, required=False, allow_null=True)
    models = serializers.ListField(
        child=serializers.CharField(max_length=260), required=False, max_length=200
    )


class ApiKeyRotateInput(InputSerializer):
    grace_seconds = serializers.IntegerField(min_value=0, required=False, default=0)


class ApiKeyOutput(serializers.ModelSerializer):
    prefix = serializers.CharField()
    models = serializers.ListField(source="model_patterns")
    owner = serializers.SerializerMethodField()
    status = serializers.CharField()

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "prefix",
            "last_four",
            "name",
            "permissions",
            "models",
            "owner",
            "status",
            "created_at",
            "expires_at",
            "last_used_at",
            "last_used_ip",
            "revoked_at",
        ]

    def get_owner(self, key: ApiKey) -> dict:
        account, user = key.service_account, key.owner_user
        if account is not None:
            return {
                "type": "service_account",
                "id": str(key.service_account_id),
                "name": account.slug,
            }
        # A key has exactly one owner (a check constraint): no account means a user.
        return {
            "type": "user",
            "id": str(key.owner_user_id),
            "name": user.username if user is not None else "",
        }


class ApiKeyCreatedOutput(ApiKeyOutput):
    key = serializers.CharField(help_text="The secret: shown this once, never again.")

    class Meta(ApiKeyOutput.Meta):
        fields = [*ApiKeyOutput.Meta.fields, "key"]


class ModelEntryField(InputSerializer):
    name = serializers.CharField(max_length=200)
    input_price_per_million = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        min_value=0,
        required=False,
        allow_null=True,
        coerce_to_string=False,
    )
    output_price_per_million = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        min_value=0,
        required=False,
        allow_null=True,
        coerce_to_string=False,
    )

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = {"name": data}
        value = super().to_internal_value(data)
        return {k: (float(v) if k != "name" and v is not None else v) for k, v in value.items()}


class ProviderAccountCreateInput(InputSerializer):
    name = serializers.CharField(max_length=50, validators=[slug_validator])
    provider_type = serializers.ChoiceField(choices=ProviderType.choices)
    base_url = serializers.CharField(max_length=500)
    api_version = serializers.CharField(max_length=50, required=False, allow_blank=True, default="")
    deployments = serializers.DictField(child=serializers.CharField(max_length=200), required=False)
    models = ModelEntryField(many=True, required=False)
    tags = serializers.DictField(child=serializers.CharField(max_length=128), required=False)
    secret = serializers.CharField(
        max_length=8192, required=False, write_only=True, trim_whitespace=True
    )
    secret_ref = serializers.CharField(max_length=500, required=False, write_only=True)


class ProviderAccountUpdateInput(InputSerializer):
    base_url = serializers.CharField(max_length=500, required=False)
    api_version = serializers.CharField(max_length=50, required=False, allow_blank=True)
    deployments = serializers.DictField(child=serializers.CharField(max_length=200), required=False)
    models = ModelEntryField(many=True, required=False)
    tags = serializers.DictField(child=serializers.CharField(max_length=128), required=False)
    otp_code = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="A fresh code when changing the base URL of an account with a secret (2FA users).",
    )


class ProviderSecretInput(InputSerializer):
    secret = serializers.CharField(max_length=8192, required=False, write_only=True)
    secret_ref = serializers.CharField(max_length=500, required=False, write_only=True)
    otp_code = serializers.CharField(
        max_length=64, required=False, allow_blank=True, write_only=True
    )


class ProviderAccountOutput(serializers.ModelSerializer):
    models = serializers.ListField(source="enabled_models")
    has_secret = serializers.BooleanField()
    secret_kind = serializers.SerializerMethodField()

    class Meta:
        model = ProviderAccount
        fields = [
            "id",
            "name",
            "provider_type",
            "base_url",
            "api_version",
            "deployments",
            "models",
            "tags",
            "has_secret",
            "secret_kind",
            "secret_updated_at",
            "created_at",
            "updated_at",
        ]

    def get_secret_kind(self, account: ProviderAccount) -> str | None:
        if account.secret_ref:
            return "reference"
        return "encrypted" if account.encrypted_secret else None


class ProviderGrantInput(InputSerializer):
    team = serializers.CharField(max_length=50, required=False)
    user = serializers.CharField(max_length=150, required=False)


class ProviderGrantsOutput(serializers.Serializer):
    teams = serializers.ListField(child=serializers.CharField())
    users = serializers.ListField(child=serializers.CharField())


class AccessRuleInput(InputSerializer):
    models = serializers.ListField(child=serializers.CharField(max_length=260), allow_empty=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)
    users = serializers.ListField(child=serializers.CharField(max_length=150), required=False)
    teams = serializers.ListField(child=serializers.CharField(max_length=50), required=False)
    roles = serializers.ListField(child=serializers.CharField(max_length=50), required=False)
    service_accounts = serializers.ListField(
        child=serializers.CharField(max_length=50), required=False
    )


class AccessRuleOutput(serializers.ModelSerializer):
    models = serializers.ListField(source="model_patterns")
    users = serializers.SerializerMethodField()
    teams = serializers.SerializerMethodField()
    roles = serializers.SerializerMethodField()
    service_accounts = serializers.SerializerMethodField()

    class Meta:
        model = AccessRule
        fields = [
            "id",
            "position",
            "description",
            "models",
            "users",
            "teams",
            "roles",
            "service_accounts",
            "created_at",
        ]

    def get_users(self, rule) -> list[str]:
        return sorted(u.username for u in rule.users.all())

    def get_teams(self, rule) -> list[str]:
        return sorted(t.slug for t in rule.teams.all())

    def get_roles(self, rule) -> list[str]:
        return sorted(r.slug for r in rule.roles.all())

    def get_service_accounts(self, rule) -> list[str]:
        return sorted(s.slug for s in rule.service_accounts.all())


class AccessRulesDocument(serializers.Serializer):
    """The YAML (or JSON) document of ``/access-rules.yaml``."""

    authz_rules = serializers.ListField(child=AccessRuleInput())
    deployments = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="Optional: the organization's deployments (docs/deployments.md), replaced "
        "in the same transaction; left out, deployments are untouched.",
    )


class AccessRulesReplacedOutput(serializers.Serializer):
    count = serializers.IntegerField()
    results = AccessRuleOutput(many=True)
