"""Input and output serializers of the SCIM token API. The token is shown once."""

from __future__ import annotations

from rest_framework import serializers

from inferia.serializers import InputSerializer
from orgs.api.serializers import RoleBriefOutput
from scim.models import ScimToken


class ScimTokenCreateInput(InputSerializer):
    name = serializers.CharField(max_length=200)
    role = serializers.CharField(
        max_length=64,
        required=False,
        default="member",
        help_text="The role provisioned members get: id, slug or name (default member; "
        "never owner)",
    )


class ScimTokenOutput(serializers.ModelSerializer):
    prefix = serializers.CharField()
    role = RoleBriefOutput()
    status = serializers.SerializerMethodField()
    created_by = serializers.SerializerMethodField()

    class Meta:
        model = ScimToken
        fields = [
            "id",
            "prefix",
            "last_four",
            "name",
            "role",
            "status",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def get_status(self, token: ScimToken) -> str:
        return "revoked" if token.is_revoked else "active"

    def get_created_by(self, token: ScimToken) -> str | None:
        return token.created_by.username if token.created_by is not None else None


class ScimTokenCreatedOutput(ScimTokenOutput):
    token = serializers.CharField(help_text="The bearer token: shown only in this answer")
    scim_base_url = serializers.CharField(help_text="The SCIM base URL for the identity provider")

    class Meta(ScimTokenOutput.Meta):
        fields = [*ScimTokenOutput.Meta.fields, "token", "scim_base_url"]
