"""API keys, service accounts, provider accounts (with encrypted secrets), access rules."""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from inferia import clock
from orgs.models import Role, Team, slug_validator
from orgs.scoping import OrgOwnedModel, OrgScopedManager, OrgScopedQuerySet


class ServiceAccount(OrgOwnedModel):
    """A non-human principal of an org; its keys outlive the member who made them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.CharField(max_length=50, validators=[slug_validator])
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True)
    role = models.ForeignKey(Role, on_delete=models.RESTRICT, related_name="service_accounts")
    # Bounded delegation at use: the granting member's current role caps this one.
    granted_by_membership = models.ForeignKey(
        "orgs.Membership", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    disabled_at = models.DateTimeField(null=True, blank=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(fields=["org", "slug"], name="uniq_service_account_slug")
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_active(self) -> bool:
        return self.disabled_at is None


class ApiKeyQuerySet(OrgScopedQuerySet):
    def active(self) -> ApiKeyQuerySet:
        now = clock.now()
        return self.filter(revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )


# Module-level, so that django-stubs can resolve the generated manager type.
ApiKeyManager = OrgScopedManager.from_queryset(ApiKeyQuerySet)


class ApiKey(OrgOwnedModel):
    """An API key: ``ifr_<public_id>_<secret><checksum>``; only a SHA-256 digest is kept.

    Owned by a user (dies with their membership) or by a service account.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    public_id = models.CharField(max_length=24, unique=True)
    secret_digest = models.CharField(max_length=64)
    last_four = models.CharField(max_length=4)
    name = models.CharField(max_length=200)
    permissions = models.JSONField(default=list)
    # Optional restriction to model FQN patterns (``account/model``, ``account/*``).
    model_patterns = models.JSONField(default=list, blank=True)
    owner_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="api_keys",
    )
    service_account = models.ForeignKey(
        ServiceAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="api_keys"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    # Per-key limits (null: the org's key defaults apply).
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    monthly_token_quota = models.PositiveBigIntegerField(null=True, blank=True)
    monthly_cost_quota = models.FloatField(null=True, blank=True)
    # Background jobs: notices sent and expiry recorded (each once).
    expiry_notice_7d_at = models.DateTimeField(null=True, blank=True)
    expiry_notice_1d_at = models.DateTimeField(null=True, blank=True)
    expired_recorded_at = models.DateTimeField(null=True, blank=True)
    unused_notice_at = models.DateTimeField(null=True, blank=True)
    # Set on the old key by a rotation with a grace period.
    replaced_by = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The key that minted this one (None: minted by a signed-in user). The child is
    # bounded by it at every use (keys.principals.key_ancestors). RESTRICT, not
    # SET_NULL: a child whose parent row vanished would lose its bounds. Keys are
    # revoked, not deleted; a parent row goes only together with its children (its
    # owner or service account deleted, cascading to both).
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.RESTRICT, related_name="children"
    )

    # Bare ClassVar: mypy infers the generated manager type, which has no name to write.
    objects: ClassVar = ApiKeyManager()
    all_orgs: ClassVar = models.Manager.from_queryset(ApiKeyQuerySet)()

    class Meta(OrgOwnedModel.Meta):
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(owner_user__isnull=False, service_account__isnull=True)
                | Q(owner_user__isnull=True, service_account__isnull=False),
                name="api_key_has_one_owner",
            )
        ]

    def __str__(self) -> str:
        return self.prefix

    def __repr__(self) -> str:
        return f"<ApiKey {self.prefix} org={self.org_id}>"

    @property
    def prefix(self) -> str:
        return f"ifr_{self.public_id}"

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= clock.now()

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def status(self) -> str:
        if self.is_revoked:
            return "revoked"
        if self.is_expired:
            return "expired"
        return "active"


class ProviderType(models.TextChoices):
    OPENAI = "openai", "OpenAI"
    AZURE_OPENAI = "azure_openai", "Azure OpenAI"
    ANTHROPIC = "anthropic", "Anthropic"
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible (vLLM, Ollama, TGI...)"


class ProviderAccount(OrgOwnedModel):
    """An upstream account; its secret is envelope-encrypted, bound to this row."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=50, validators=[slug_validator])
    provider_type = models.CharField(max_length=32, choices=ProviderType.choices)
    base_url = models.URLField(max_length=500)
    api_version = models.CharField(max_length=50, blank=True)
    # Azure: model name -> deployment name.
    deployments = models.JSONField(default=dict, blank=True)
    # [{"name": "gpt-4o", "input_price_per_million": 2.5, "output_price_per_million": 10}]
    enabled_models = models.JSONField(default=list, blank=True)
    tags = models.JSONField(default=dict, blank=True)
    encrypted_secret = models.TextField(blank=True, editable=False)
    secret_ref = models.CharField(max_length=500, blank=True)
    secret_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["org", "name"], name="uniq_provider_account_name")
        ]
        permissions = [("manage_provideraccount", "Manage this provider account")]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<ProviderAccount {self.name} org={self.org_id} has_secret={self.has_secret}>"

    @property
    def has_secret(self) -> bool:
        return bool(self.encrypted_secret or self.secret_ref)

    @property
    def model_names(self) -> list[str]:
        return [entry["name"] for entry in self.enabled_models]

    def secret_context(self) -> str:
        return f"keys.provideraccount:{self.org_id}:{self.pk}"


class AccessRule(OrgOwnedModel):
    """Grants model patterns to users, teams, roles and service accounts. No rule, no access.

    Patterns: ``account/model``, ``account/*``, ``*`` or a tag selector ``env=staging``.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    position = models.PositiveIntegerField(default=0)
    description = models.CharField(max_length=500, blank=True)
    model_patterns = models.JSONField(default=list)
    # Knowledge bases the subjects may search (with ``knowledge_base:view``) and add
    # documents to (with ``knowledge_base:add_data``): names or ``prefix*`` / ``*``.
    knowledge_base_patterns = models.JSONField(default=list, blank=True)
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    teams = models.ManyToManyField(Team, blank=True, related_name="+")
    roles = models.ManyToManyField(Role, blank=True, related_name="+")
    service_accounts = models.ManyToManyField(ServiceAccount, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["position", "created_at"]

    def __str__(self) -> str:
        return f"rule {self.position}: {', '.join(self.model_patterns)}"
