"""Identity providers, verified e-mail domains, group mapping rules, linked
identities, the grants SSO made (so a removed group removes exactly them) and the
server-side record of a sign-in in flight."""

from __future__ import annotations

import hmac
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from inferia import clock
from orgs.models import Membership, Role, Team, slug_validator, token_digest
from orgs.scoping import OrgOwnedModel


class ProviderKind(models.TextChoices):
    OIDC = "oidc", "OpenID Connect"
    SAML = "saml", "SAML 2.0"


class IdentityProvider(OrgOwnedModel):
    """One OIDC or SAML identity provider of an org. The OIDC client secret is
    envelope-encrypted (``inferia.crypto``) and bound to this row."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=50, validators=[slug_validator])
    display_name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=8, choices=ProviderKind.choices)
    is_enabled = models.BooleanField(default=True)
    # The role of a member provisioned just in time when no mapping rule gives one.
    default_role = models.ForeignKey(Role, on_delete=models.RESTRICT, related_name="+")
    # OIDC
    issuer = models.URLField(max_length=500, blank=True)
    client_id = models.CharField(max_length=255, blank=True)
    encrypted_client_secret = models.TextField(blank=True, editable=False)
    secret_updated_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    groups_claim = models.CharField(max_length=100, default="groups", blank=True)
    # SAML
    metadata_url = models.URLField(max_length=500, blank=True)
    metadata_xml = models.TextField(blank=True)
    idp_entity_id = models.CharField(max_length=500, blank=True)
    sso_url = models.URLField(max_length=500, blank=True)
    signing_certificates = models.JSONField(default=list, blank=True)
    # Attribute names (Name or FriendlyName) in the IdP's assertions; "" = the
    # defaults of ``sso.saml`` (groups_attribute "" = no groups).
    groups_attribute = models.CharField(max_length=200, default="groups", blank=True)
    email_attribute = models.CharField(max_length=200, blank=True)
    name_attribute = models.CharField(max_length=200, blank=True)
    subject_attribute = models.CharField(max_length=200, blank=True)
    # SAML has no per-assertion "email_verified": the org states whether this IdP
    # only asserts e-mail addresses it verified.
    emails_verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="uniq_identity_provider_name")
        ]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<IdentityProvider {self.name} kind={self.kind} org={self.org_id}>"

    @property
    def has_client_secret(self) -> bool:
        return bool(self.encrypted_client_secret)

    @property
    def label(self) -> str:
        return self.display_name or self.name

    def secret_context(self) -> str:
        return f"sso.identityprovider:{self.org_id}:{self.pk}"


class DomainStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    VERIFIED = "verified", "Verified"


class VerifiedDomain(OrgOwnedModel):
    """An e-mail domain an org claims. An Admin claims it (pending, with a random
    challenge); an Owner confirms it by entering the challenge back. A domain is
    verified by at most one org (a constraint across orgs, on purpose)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    domain = models.CharField(max_length=253)
    challenge = models.CharField(max_length=64, editable=False)
    status = models.CharField(
        max_length=10, choices=DomainStatus.choices, default=DomainStatus.PENDING
    )
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    verified_at = models.DateTimeField(null=True, blank=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["domain"]
        constraints = [
            models.UniqueConstraint(fields=["org", "domain"], name="uniq_sso_domain_per_org"),
            # Across orgs: a verified domain belongs to one org only.
            models.UniqueConstraint(
                fields=["domain"],
                condition=Q(status="verified"),
                name="uniq_sso_domain_verified",
            ),
        ]

    def __str__(self) -> str:
        return self.domain

    def challenge_matches(self, value: str) -> bool:
        return hmac.compare_digest(self.challenge.encode(), value.strip().encode())


class GroupMapping(OrgOwnedModel):
    """A rule: members whose IdP groups contain ``group`` get ``role`` and/or join
    ``team`` at every SSO sign-in through ``provider``. Bounded by its grantor."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.ForeignKey(
        IdentityProvider, on_delete=models.CASCADE, related_name="mappings"
    )
    group = models.CharField(max_length=255)
    role = models.ForeignKey(
        Role, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    # Who made the rule: its grants stay bounded by that member's current role
    # (``tenancy.member_remove`` re-points this like every granted_by_membership).
    granted_by_membership = models.ForeignKey(
        Membership, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["provider_id", "group"]
        constraints = [
            models.UniqueConstraint(
                fields=["org", "provider", "group"], name="uniq_sso_mapping_group"
            ),
            models.CheckConstraint(
                condition=Q(role__isnull=False) | Q(team__isnull=False),
                name="sso_mapping_grants_something",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.group} -> {self.role_id or ''} {self.team_id or ''}".strip()


class SsoIdentity(OrgOwnedModel):
    """A person at an IdP, (provider, subject), linked to one user."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    provider = models.ForeignKey(
        IdentityProvider, on_delete=models.CASCADE, related_name="identities"
    )
    subject = models.CharField(max_length=255)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identities"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta(OrgOwnedModel.Meta):
        verbose_name_plural = "SSO identities"
        constraints = [
            models.UniqueConstraint(fields=["provider", "subject"], name="uniq_sso_identity")
        ]

    def __str__(self) -> str:
        return f"{self.provider_id}:{self.subject}"


class SsoRoleGrant(OrgOwnedModel):
    """The membership's current role was set by SSO. ``replaced_role`` is the role
    given by hand that SSO raised (restored when the group goes); None when the
    membership itself was provisioned by SSO. Stale (and dropped) as soon as the
    membership's role differs from ``role``: a manual change wins."""

    membership = models.OneToOneField(
        Membership, on_delete=models.CASCADE, related_name="sso_role_grant"
    )
    provider = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE, related_name="+")
    role = models.ForeignKey(Role, on_delete=models.CASCADE, related_name="+")
    replaced_role = models.ForeignKey(
        Role, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)


class SsoTeamGrant(OrgOwnedModel):
    """The user is in ``team`` because SSO put them there (a manual membership of the
    team has no such row and is never removed by SSO)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    provider = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(OrgOwnedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="uniq_sso_team_grant")]


class FlowPurpose(models.TextChoices):
    DASHBOARD = "dashboard", "Dashboard"
    API = "api", "API (loopback redirect, one-time code)"


class SsoFlow(OrgOwnedModel):
    """A sign-in in flight: what the protocol keeps between the redirect to the IdP and
    the answer (nonce, PKCE verifier, SAML request id), found by the SHA-256 of its
    ``state`` (OIDC state / SAML RelayState), encrypted, expiring, used once. An API
    flow then holds a one-time exchange code (digest only) and the client's PKCE
    challenge."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    state_digest = models.CharField(max_length=64, unique=True)
    provider = models.ForeignKey(IdentityProvider, on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=10, choices=FlowPurpose.choices)
    encrypted_kept = models.TextField(editable=False)
    # A dashboard flow whose answer the protocol accepted: the verified claims wait
    # here for the browser that started the flow (``sso.views.finish``).
    encrypted_claims = models.TextField(blank=True, editable=False)
    next_url = models.CharField(max_length=500, blank=True)
    # API flows
    client_redirect_uri = models.CharField(max_length=500, blank=True)
    client_code_challenge = models.CharField(max_length=128, blank=True)
    exchange_digest = models.CharField(max_length=64, blank=True, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    exchanged_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"sso flow {self.id}"

    def __repr__(self) -> str:
        return f"<SsoFlow {self.id} purpose={self.purpose} org={self.org_id}>"

    def kept_context(self) -> str:
        return f"sso.ssoflow:{self.org_id}:{self.pk}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= clock.now()

    def exchange_matches(self, code: str) -> bool:
        return bool(self.exchange_digest) and hmac.compare_digest(
            self.exchange_digest, token_digest(code)
        )
