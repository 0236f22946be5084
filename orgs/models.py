"""Users, organizations, memberships, roles, teams, invitations, 2FA devices."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.text import slugify
from django_otp.models import Device, ThrottlingMixin
from django_otp.oath import TOTP

from inferia import clock, crypto
from orgs.scoping import OrgOwnedModel, OrgScopedManager, OrgScopedQuerySet

slug_validator = RegexValidator(
    r"^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$",
    "Use 1-50 lowercase letters, digits and hyphens, not starting or ending with a hyphen.",
)


def slug_from_name(name: str) -> str:
    """The slug derived from a displayed name when a client gives none: Django's
    ``slugify`` made to fit ``slug_validator`` ("Data Science" -> ``data-science``).
    Empty when the name has no letter or digit to keep."""
    slug = slugify(name).replace("_", "-")
    slug = re.sub(r"-{2,}", "-", slug).strip("-")
    return slug[:50].rstrip("-")


if TYPE_CHECKING:
    from orgs.policy import OrgPolicy


class User(AbstractUser):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(blank=True)
    # Bumped on password change and deactivation: every token carrying an
    # older value stops working at once.
    auth_version = models.PositiveIntegerField(default=1)

    def __str__(self) -> str:
        return self.username

    @property
    def has_confirmed_totp(self) -> bool:
        return TOTPDevice.objects.filter(user=self, confirmed=True).exists()


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.CharField(max_length=50, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    require_2fa = models.BooleanField(default=False)
    # Policy knobs as an admin set them; read them typed through ``policy``.
    settings = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def policy(self) -> OrgPolicy:
        """The typed policy knobs with their defaults (``orgs.policy.OrgPolicy``)."""
        from orgs.policy import OrgPolicy

        return OrgPolicy.from_settings(self.settings)


class RoleQuerySet(models.QuerySet):
    def for_org(self, org: Organization) -> RoleQuerySet:
        """Built-in roles plus the custom roles of ``org``."""
        return self.filter(Q(org__isnull=True) | Q(org=org))


class Role(models.Model):
    """A named set of permission names; built-ins have no org."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    org = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.CASCADE, related_name="roles"
    )
    slug = models.CharField(max_length=50, validators=[slug_validator])
    name = models.CharField(max_length=100)
    description = models.CharField(max_length=500, blank=True)
    permissions = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = RoleQuerySet.as_manager()

    class Meta:
        ordering = ["org_id", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["org", "slug"], name="uniq_role_slug_per_org"),
            models.UniqueConstraint(
                fields=["slug"], condition=Q(org__isnull=True), name="uniq_builtin_role_slug"
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def is_builtin(self) -> bool:
        return self.org_id is None


class Membership(OrgOwnedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.ForeignKey(Role, on_delete=models.RESTRICT, related_name="memberships")
    # Who granted the current role: its permissions bound this member's at every use.
    granted_by_membership = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="granted"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["org", "user"], name="uniq_membership_per_org")
        ]

    def __str__(self) -> str:
        return f"{self.user_id}@{self.org_id}"


class Team(OrgOwnedModel):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slug = models.CharField(max_length=50, validators=[slug_validator])
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["slug"]
        constraints = [models.UniqueConstraint(fields=["org", "slug"], name="uniq_team_slug")]

    def __str__(self) -> str:
        return self.slug


class TeamMember(OrgOwnedModel):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="team_members")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(OrgOwnedModel.Meta):
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="uniq_team_member")]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class InvitationQuerySet(OrgScopedQuerySet):
    def pending(self) -> InvitationQuerySet:
        return self.filter(
            accepted_at__isnull=True, revoked_at__isnull=True, expires_at__gt=clock.now()
        )


# Module-level, so that django-stubs can resolve the generated manager type.
InvitationManager = OrgScopedManager.from_queryset(InvitationQuerySet)


class Invitation(OrgOwnedModel):
    """A single-use invitation; only the SHA-256 of its token is stored."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField()
    role = models.ForeignKey(Role, on_delete=models.RESTRICT, related_name="+")
    invited_by = models.ForeignKey(
        Membership, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    token_digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    send_count = models.PositiveIntegerField(default=0)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    expired_recorded_at = models.DateTimeField(null=True, blank=True)

    # Bare ClassVar: mypy infers the generated manager type, which has no name to write.
    objects: ClassVar = InvitationManager()
    all_orgs: ClassVar = InvitationQuerySet.as_manager()

    class Meta(OrgOwnedModel.Meta):
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"invitation {self.id}"

    @property
    def status(self) -> str:
        if self.accepted_at:
            return "accepted"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= clock.now():
            return "expired"
        return "pending"

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_digest, token_digest(token))


class TOTPDevice(ThrottlingMixin, Device):
    """An RFC 6238 authenticator whose seed is envelope-encrypted at rest.

    ``last_t`` holds the last accepted time step: a code is accepted once.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    encrypted_seed = models.TextField(editable=False)
    last_t = models.BigIntegerField(default=-1)
    created_at = models.DateTimeField(auto_now_add=True)

    STEP, DIGITS, TOLERANCE = 30, 6, 1

    class Meta(Device.Meta):
        verbose_name = "TOTP device"

    def __repr__(self) -> str:
        return f"<TOTPDevice {self.id} user={self.user_id} confirmed={self.confirmed}>"

    def _context(self) -> str:
        return f"orgs.totpdevice:{self.pk}:{self.user_id}"

    @property
    def persistent_id(self) -> str:
        # django_otp parses the id after "/" with int() (admin OTP login form,
        # OTPMiddleware); a UUID in hex would never be found again. Django's
        # UUIDField accepts the integer form in lookups.
        return f"{self.model_label()}/{self.id.int}"

    def set_seed(self, seed_plaintext: bytes) -> None:
        self.encrypted_seed = crypto.encrypt(seed_plaintext, context=self._context())

    def seed_plaintext(self) -> bytes:
        return crypto.decrypt(self.encrypted_seed, context=self._context())

    def get_throttle_factor(self) -> int:
        return 1

    def verify_token(self, token) -> bool:
        """Accept a current code once; count failures for the lockout."""
        allowed, _info = self.verify_is_allowed()
        if not allowed:
            return False
        token = str(token).strip().replace(" ", "")
        if not (token.isdigit() and len(token) == self.DIGITS):
            self.throttle_increment()
            return False
        totp = TOTP(self.seed_plaintext(), step=self.STEP, digits=self.DIGITS)
        totp.time = clock.time()
        for drift in range(-self.TOLERANCE, self.TOLERANCE + 1):
            totp.drift = drift
            if totp.t() > self.last_t and hmac.compare_digest(
                str(totp.token()).zfill(self.DIGITS), token
            ):
                self.last_t = totp.t()
                self.throttling_failure_count = 0
                self.throttling_failure_timestamp = None
                self.save(
                    update_fields=[
                        "last_t",
                        "throttling_failure_count",
                        "throttling_failure_timestamp",
                    ]
                )
                return True
        self.throttle_increment()
        return False

    def throttle_increment(self, commit: bool = True) -> None:
        self.throttling_failure_timestamp = clock.now()
        self.throttling_failure_count += 1
        if commit:
            self.save(update_fields=["throttling_failure_timestamp", "throttling_failure_count"])

    def verify_is_allowed(self):
        failures = self.throttling_failure_count
        if (
            failures >= settings.INFERIA_OTP_MAX_FAILURES
            and self.throttling_failure_timestamp is not None
        ):
            locked_until = self.throttling_failure_timestamp + timedelta(
                seconds=settings.INFERIA_OTP_LOCKOUT_SECONDS
            )
            if clock.now() < locked_until:
                return False, {"reason": "locked", "locked_until": locked_until}
        return True, None

    def locked_for_seconds(self) -> int:
        allowed, info = self.verify_is_allowed()
        if allowed:
            return 0
        # Rounded up: a client that waits Retry-After seconds must get through.
        return max(1, math.ceil((info["locked_until"] - clock.now()).total_seconds()))


class RecoveryCode(models.Model):
    """A one-time 2FA recovery code; only its SHA-256 is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes"
    )
    code_digest = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["user", "code_digest"])]

    def __str__(self) -> str:
        return f"recovery code of user {self.user_id}"  # never the code


class RefreshTokenRecord(models.Model):
    """Server-side state of a refresh token: its jti only, never the token.

    Tokens of one login form a family; reusing a rotated token revokes the family.
    """

    jti = models.CharField(max_length=64, primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="refresh_tokens"
    )
    family = models.UUIDField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"refresh token family {self.family} of user {self.user_id}"


class DeviceAuthorizationStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    # The approved grant was exchanged for tokens: single use.
    CONSUMED = "consumed"


class DeviceAuthorization(models.Model):
    """One OAuth 2.0 device authorization request (RFC 8628), not yet bound to an org.

    Only SHA-256 digests of the device code and of the normalized user code are
    stored; both are single use and expire at ``expires_at``. ``user`` is who
    approved or denied it; ``family`` the login (refresh family) its tokens started.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    client_id = models.CharField(max_length=100)
    device_code_digest = models.CharField(max_length=64, unique=True)
    user_code_digest = models.CharField(max_length=64, db_index=True)
    # The org the client said it is for (``inferia login --org``): checked at approval.
    org_slug = models.CharField(max_length=50, blank=True)
    status = models.CharField(
        max_length=16,
        choices=DeviceAuthorizationStatus.choices,
        default=DeviceAuthorizationStatus.PENDING,
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="device_authorizations",
    )
    family = models.UUIDField(null=True, blank=True)
    interval_seconds = models.PositiveIntegerField()
    requested_ip = models.GenericIPAddressField(null=True, blank=True)
    requested_user_agent = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    consumed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"device authorization {self.id} ({self.client_id}, {self.status})"

    def is_expired(self, now) -> bool:
        return self.expires_at <= now
