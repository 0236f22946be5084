"""Input and output serializers of the SSO API. The OIDC client secret is write-only."""

from __future__ import annotations

from rest_framework import serializers

from inferia.serializers import InputSerializer
from orgs.api.serializers import RoleBriefOutput
from orgs.models import slug_validator
from sso.models import GroupMapping, IdentityProvider, ProviderKind, VerifiedDomain

_PROVIDER_FIELDS: dict[str, serializers.Field] = {
    "display_name": serializers.CharField(max_length=200, required=False, allow_blank=True),
    "is_enabled": serializers.BooleanField(required=False),
    "default_role": serializers.CharField(
        max_length=64, required=False, help_text="Role id or slug for members SSO provisions"
    ),
    # OIDC
    "issuer": serializers.CharField(max_length=500, required=False),
    "client_id": serializers.CharField(max_length=255, required=False),
    "scopes": serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=30
    ),
    "groups_claim": serializers.CharField(max_length=100, required=False),
    # SAML
    "metadata_url": serializers.CharField(max_length=500, required=False, allow_blank=True),
    "metadata_xml": serializers.CharField(max_length=500_000, required=False, allow_blank=True),
    "idp_entity_id": serializers.CharField(max_length=500, required=False),
    "sso_url": serializers.CharField(max_length=500, required=False),
    "signing_certificates": serializers.ListField(
        child=serializers.CharField(max_length=20_000), required=False, max_length=5
    ),
    "groups_attribute": serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text='Default "groups"; "": none'
    ),
    "email_attribute": serializers.CharField(max_length=200, required=False, allow_blank=True),
    "name_attribute": serializers.CharField(max_length=200, required=False, allow_blank=True),
    "subject_attribute": serializers.CharField(max_length=200, required=False, allow_blank=True),
    "emails_verified": serializers.BooleanField(required=False),
}


def _copy(field: serializers.Field) -> serializers.Field:
    import copy

    return copy.deepcopy(field)


class IdentityProviderCreateInput(InputSerializer):
    name = serializers.CharField(max_length=50, validators=[slug_validator])
    kind = serializers.ChoiceField(choices=ProviderKind.choices)
    client_secret = serializers.CharField(max_length=4096, required=False, write_only=True)

    def get_fields(self):
        fields = super().get_fields()
        fields.update({name: _copy(field) for name, field in _PROVIDER_FIELDS.items()})
        return fields


class IdentityProviderUpdateInput(InputSerializer):
    client_secret = serializers.CharField(max_length=4096, required=False, write_only=True)
    otp_code = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        write_only=True,
        help_text="A fresh code to replace the client secret or move the issuer (2FA users).",
    )

    def get_fields(self):
        fields = super().get_fields()
        fields.update({name: _copy(field) for name, field in _PROVIDER_FIELDS.items()})
        return fields


class IdentityProviderOutput(serializers.ModelSerializer):
    default_role = RoleBriefOutput()
    has_client_secret = serializers.BooleanField()
    sp_entity_id = serializers.SerializerMethodField()
    acs_url = serializers.SerializerMethodField()
    redirect_uri = serializers.SerializerMethodField()
    sign_in_url = serializers.SerializerMethodField()

    class Meta:
        model = IdentityProvider
        fields = [
            "id",
            "name",
            "display_name",
            "kind",
            "is_enabled",
            "default_role",
            "issuer",
            "client_id",
            "scopes",
            "groups_claim",
            "has_client_secret",
            "secret_updated_at",
            "metadata_url",
            "idp_entity_id",
            "sso_url",
            "signing_certificates",
            "groups_attribute",
            "email_attribute",
            "name_attribute",
            "subject_attribute",
            "emails_verified",
            "sp_entity_id",
            "acs_url",
            "redirect_uri",
            "sign_in_url",
            "created_at",
            "updated_at",
        ]

    def _base(self) -> str:
        return self.context.get("base_url", "")

    def get_sp_entity_id(self, provider: IdentityProvider) -> str | None:
        from sso import protocols

        if provider.kind != ProviderKind.SAML:
            return None
        return protocols.saml_entity_id(self._base(), provider)

    def get_acs_url(self, provider: IdentityProvider) -> str | None:
        from sso import protocols

        if provider.kind != ProviderKind.SAML:
            return None
        return protocols.saml_acs_url(self._base(), provider)

    def get_redirect_uri(self, provider: IdentityProvider) -> str | None:
        from sso import protocols

        if provider.kind != ProviderKind.OIDC:
            return None
        return protocols.oidc_redirect_uri(self._base(), provider)

    def get_sign_in_url(self, provider: IdentityProvider) -> str:
        from django.urls import reverse

        return self._base() + reverse("sso:start", kwargs={"org": provider.org.slug})


class DomainClaimInput(InputSerializer):
    domain = serializers.CharField(max_length=253)


class DomainConfirmInput(InputSerializer):
    challenge = serializers.CharField(max_length=100)


class DomainOutput(serializers.ModelSerializer):
    # Declared: DRF would derive a unique validator from the (org-scoped) model.
    domain = serializers.CharField(read_only=True)
    challenge = serializers.SerializerMethodField()

    class Meta:
        model = VerifiedDomain
        fields = ["id", "domain", "status", "challenge", "created_at", "verified_at"]

    def get_challenge(self, domain: VerifiedDomain) -> str | None:
        """Shown to Owners while pending: they confirm by entering it back."""
        if domain.status != "pending" or not self.context.get("is_owner"):
            return None
        return domain.challenge


class MappingInput(InputSerializer):
    group = serializers.CharField(max_length=255)
    role = serializers.CharField(max_length=64, required=False, allow_null=True)
    team = serializers.CharField(max_length=50, required=False, allow_null=True)


class MappingOutput(serializers.ModelSerializer):
    role = RoleBriefOutput(allow_null=True)
    team: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )

    class Meta:
        model = GroupMapping
        fields = ["id", "group", "role", "team", "created_at"]


class SsoStartInput(InputSerializer):
    provider = serializers.CharField(max_length=50, required=False)
    redirect_uri = serializers.CharField(max_length=500)
    code_challenge = serializers.RegexField(r"^[A-Za-z0-9_-]{43}$")
    code_challenge_method = serializers.ChoiceField(choices=["S256"])


class SsoStartOutput(serializers.Serializer):
    authorization_url = serializers.CharField()
    expires_in = serializers.IntegerField()


class SsoTokenInput(InputSerializer):
    code = serializers.CharField(max_length=200)
    code_verifier = serializers.RegexField(r"^[A-Za-z0-9._~-]{43,128}$")
