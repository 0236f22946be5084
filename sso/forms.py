"""Forms of the SSO pages: they validate input only; services decide and save."""

from __future__ import annotations

from typing import Any

from django import forms

from orgs.models import Role, Team, slug_validator
from orgs.selectors import role_get_by_ref
from sso.models import IdentityProvider, ProviderKind

OIDC_ONLY = ("issuer", "client_id", "client_secret", "scopes", "groups_claim", "otp_code")
SAML_ONLY = (
    "metadata_url",
    "metadata_xml",
    "idp_entity_id",
    "sso_url",
    "signing_certificates",
    "groups_attribute",
    "email_attribute",
    "name_attribute",
    "subject_attribute",
    "emails_verified",
)


class IdentityProviderForm(forms.Form):
    name = forms.CharField(max_length=50, validators=[slug_validator])
    kind = forms.ChoiceField(choices=ProviderKind.choices)
    display_name = forms.CharField(max_length=200, required=False, label="Button label")
    is_enabled = forms.BooleanField(required=False, initial=True, label="Enabled")
    default_role = forms.ChoiceField(
        help_text="The role of members this provider provisions when no rule gives one."
    )
    issuer = forms.CharField(max_length=500, required=False, label="OIDC issuer URL")
    client_id = forms.CharField(max_length=255, required=False, label="OIDC client id")
    client_secret = forms.CharField(
        max_length=4096,
        required=False,
        widget=forms.PasswordInput(render_value=False),
        label="OIDC client secret",
        help_text="Stored encrypted; never shown again. Leave empty to keep the current one.",
    )
    otp_code = forms.CharField(
        max_length=64,
        required=False,
        label="Current 2FA code",
        help_text="Needed to replace the client secret or move the issuer (2FA users).",
    )
    scopes = forms.CharField(
        max_length=500, required=False, initial="openid email profile", label="OIDC scopes"
    )
    groups_claim = forms.CharField(max_length=100, required=False, initial="groups")
    metadata_url = forms.CharField(max_length=500, required=False, label="SAML metadata URL")
    metadata_xml = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}), label="SAML metadata XML"
    )
    idp_entity_id = forms.CharField(max_length=500, required=False, label="IdP entity id")
    sso_url = forms.CharField(max_length=500, required=False, label="IdP SSO URL")
    signing_certificates = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        label="IdP signing certificate(s), PEM",
    )
    groups_attribute = forms.CharField(
        max_length=200,
        required=False,
        initial="groups",
        label="SAML groups attribute",
        help_text="The attribute (Name or FriendlyName) listing the person's groups; "
        "empty: no groups.",
    )
    email_attribute = forms.CharField(
        max_length=200,
        required=False,
        label="SAML e-mail attribute",
        help_text="Empty: an e-mail NameID, else mail, email, emailAddress and their OIDs.",
    )
    name_attribute = forms.CharField(
        max_length=200,
        required=False,
        label="SAML name attribute",
        help_text="Empty: displayName, cn, name, else given name and surname.",
    )
    subject_attribute = forms.CharField(
        max_length=200,
        required=False,
        label="SAML subject attribute",
        help_text="A stable id attribute, for IdPs that send a transient NameID; "
        "empty: the NameID.",
    )
    emails_verified = forms.BooleanField(
        required=False, label="This IdP asserts only e-mail addresses it verified"
    )

    def __init__(
        self,
        *args: Any,
        roles: list[Role],
        creating: bool,
        kind: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["default_role"].choices = [  # type: ignore[attr-defined]
            (role.slug, role.name) for role in roles if role.slug != "owner"
        ]
        self.fields["default_role"].initial = "member"
        if not creating:
            del self.fields["name"]
            del self.fields["kind"]
            for name in SAML_ONLY if kind == ProviderKind.OIDC else OIDC_ONLY:
                del self.fields[name]
        else:
            del self.fields["otp_code"]
        self.creating = creating

    @staticmethod
    def initial_for(provider: IdentityProvider) -> dict[str, Any]:
        return {
            "display_name": provider.display_name,
            "is_enabled": provider.is_enabled,
            "default_role": provider.default_role.slug,
            "issuer": provider.issuer,
            "client_id": provider.client_id,
            "scopes": " ".join(provider.scopes),
            "groups_claim": provider.groups_claim,
            "metadata_url": provider.metadata_url,
            "idp_entity_id": provider.idp_entity_id,
            "sso_url": provider.sso_url,
            "signing_certificates": "\n".join(provider.signing_certificates),
            "groups_attribute": provider.groups_attribute,
            "email_attribute": provider.email_attribute,
            "name_attribute": provider.name_attribute,
            "subject_attribute": provider.subject_attribute,
            "emails_verified": provider.emails_verified,
        }

    def service_fields(self) -> dict[str, Any]:
        """The cleaned data as the services take it (only the chosen kind's fields)."""
        data = dict(self.cleaned_data)
        kind = data.get("kind")
        data["default_role"] = role_get_by_ref(data["default_role"], "default_role")
        if "scopes" in data:
            data["scopes"] = data["scopes"].split() or ["openid", "email", "profile"]
        if "signing_certificates" in data:
            text = data["signing_certificates"]
            parts = [p for p in text.split("-----END CERTIFICATE-----") if p.strip()]
            data["signing_certificates"] = [
                p.strip() + "\n-----END CERTIFICATE-----" for p in parts
            ]
        if self.creating:
            drop = SAML_ONLY if kind == ProviderKind.OIDC else OIDC_ONLY
            data = {k: v for k, v in data.items() if k not in drop}
            if kind == ProviderKind.SAML and data.get("metadata_url") == "":
                data.pop("metadata_url")
        if not data.get("client_secret"):
            data.pop("client_secret", None)
        return data


class DomainClaimForm(forms.Form):
    domain = forms.CharField(max_length=253, help_text="e.g. example.com")


class MappingForm(forms.Form):
    group = forms.CharField(max_length=255, label="IdP group")
    role = forms.ChoiceField(required=False)
    team = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, roles: list[Role], teams: list[Team], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        role_field, team_field = self.fields["role"], self.fields["team"]
        assert isinstance(role_field, forms.ChoiceField)  # noqa: S101 (narrowing)
        assert isinstance(team_field, forms.ChoiceField)  # noqa: S101 (narrowing)
        role_field.choices = [("", "(no role)")] + [(r.slug, r.name) for r in roles]
        team_field.choices = [("", "(no team)")] + [(t.slug, t.name) for t in teams]


class SsoEmailForm(forms.Form):
    email = forms.EmailField(label="Work e-mail")
