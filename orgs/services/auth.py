"""Login, token pairs with rotation and reuse detection, logout, password change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from audit import services as audit
from inferia import counters
from inferia.errors import AuthenticationFailed, RateLimited, ValidationError
from inferia.request_meta import RequestMeta
from orgs.models import RefreshTokenRecord, User
from orgs.services import two_factor
from orgs.signals import access_changed, user_org_ids

VERSION_CLAIM = "ver"
FAMILY_CLAIM = "fam"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: datetime
    user: User


def _issue_pair(user: User, family: uuid.UUID) -> TokenPair:
    refresh = RefreshToken()
    refresh["sub"] = str(user.pk)
    refresh[VERSION_CLAIM] = user.auth_version
    refresh[FAMILY_CLAIM] = str(family)
    access = AccessToken()
    access["sub"] = str(user.pk)
    access[VERSION_CLAIM] = user.auth_version
    RefreshTokenRecord.objects.create(
        jti=refresh["jti"],
        user=user,
        family=family,
        expires_at=datetime.fromtimestamp(refresh["exp"], tz=UTC),
    )
    return TokenPair(
        access_token=str(access),
        refresh_token=str(refresh),
        expires_at=datetime.fromtimestamp(access["exp"], tz=UTC),
        user=user,
    )


def token_pair_issue(*, user: User) -> TokenPair:
    """A new login family for ``user`` (used by login and by tests' fixtures)."""
    return _issue_pair(user, uuid.uuid4())


def _throttle_keys(username: str, ip: str | None) -> list[tuple[str, int]]:
    keys = [(f"login:user:{username.lower()}", settings.INFERIA_LOGIN_MAX_FAILURES_PER_USER)]
    if ip:
        keys.append((f"login:ip:{ip}", settings.INFERIA_LOGIN_MAX_FAILURES_PER_IP))
    return keys


def _refuse_if_throttled(
    keys: list[tuple[str, int]],
    *,
    action: str,
    request: HttpRequest | None,
    actor: User | None = None,
    actor_label: str = "",
    message: str = "Too many failed password attempts; try again later",
) -> None:
    window = settings.INFERIA_LOGIN_WINDOW_SECONDS
    for key, limit in keys:
        state = counters.peek(key, window_seconds=window)
        if state.count >= limit:
            audit.record(
                action=action,
                outcome="denied",
                actor=actor,
                actor_label=actor_label,
                status_code=429,
                meta=RequestMeta.from_http(request),
                data={"reason": "throttled"},
            )
            raise RateLimited(message, retry_after=state.reset_in_seconds)


def _count_failure(keys: list[tuple[str, int]]) -> None:
    for key, _limit in keys:
        counters.hit(key, window_seconds=settings.INFERIA_LOGIN_WINDOW_SECONDS)


def password_verify(*, user: User, password: str, request: HttpRequest | None, action: str) -> bool:
    """Check a logged-in user's password (sudo confirmation, password change).

    Wrong passwords count against the same per-username and per-IP limits as
    login, so a stolen access token is no unthrottled password oracle.
    Raises RATE_LIMITED past the limit, even for the right password.
    """
    keys = _throttle_keys(user.username, audit.client_ip(request))
    _refuse_if_throttled(keys, action=action, request=request, actor=user)
    if user.check_password(password):
        return True
    _count_failure(keys)
    return False


def login_verify(
    *, request: HttpRequest | None, username: str, password: str, otp_code: str | None = None
) -> User:
    """Check password (and TOTP when enrolled); returns the user, nothing issued.

    One message for unknown user, inactive user and wrong password; failures
    are counted per username and per client IP (RATE_LIMITED past the limit).
    Raises OTP_REQUIRED (audited) when the password is right and a code is needed.
    """
    keys = _throttle_keys(username, audit.client_ip(request))
    _refuse_if_throttled(
        keys,
        action="auth:login",
        request=request,
        actor_label=username,
        message="Too many failed login attempts; try again later",
    )

    def fail(reason: str, error: Exception) -> None:
        _count_failure(keys)
        audit.record(
            action="auth:login",
            outcome="failure",
            actor_label=username,
            status_code=401,
            meta=RequestMeta.from_http(request),
            data={"reason": reason},
        )
        raise error

    # ModelBackend hashes a dummy password for unknown users: same timing.
    user = authenticate(request, username=username, password=password)
    if user is None:
        fail("bad_credentials", AuthenticationFailed("Invalid username or password"))
    second_factor_ok = two_factor.second_factor_verify(
        user=user, otp_code=otp_code, request=request, action="auth:login"
    )
    if not second_factor_ok:
        fail("bad_otp", AuthenticationFailed("Invalid one-time code"))
    return user


def login_second_factor(*, request: HttpRequest | None, user: User, otp_code: str | None) -> User:
    """The second step of a two-step (page) login: the password was checked by
    ``login_verify`` moments ago; check the code under the same throttles."""
    keys = _throttle_keys(user.username, audit.client_ip(request))
    _refuse_if_throttled(
        keys,
        action="auth:login",
        request=request,
        actor_label=user.username,
        message="Too many failed login attempts; try again later",
    )
    if not user.is_active:
        raise AuthenticationFailed("Invalid username or password")
    if not two_factor.second_factor_verify(
        user=user, otp_code=otp_code, request=request, action="auth:login"
    ):
        _count_failure(keys)
        audit.record(
            action="auth:login",
            outcome="failure",
            actor_label=user.username,
            status_code=401,
            meta=RequestMeta.from_http(request),
            data={"reason": "bad_otp"},
        )
        raise AuthenticationFailed("Invalid one-time code")
    return user


def login_record(*, request: HttpRequest | None, user: User, via: str = "api") -> None:
    """Stamp ``last_login`` and audit a successful login."""
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    audit.record(
        action="auth:login",
        outcome="success",
        actor=user,
        status_code=200,
        meta=RequestMeta.from_http(request),
        data={"via": via} if via != "api" else None,
    )


def login(
    *, request: HttpRequest | None, username: str, password: str, otp_code: str | None = None
) -> TokenPair:
    """Check password (and TOTP when enrolled); returns a token pair."""
    user = login_verify(request=request, username=username, password=password, otp_code=otp_code)
    with transaction.atomic():
        pair = token_pair_issue(user=user)
        login_record(request=request, user=user)
    return pair


def _decode_refresh(raw: str) -> RefreshToken:
    try:
        return RefreshToken(raw)  # checks signature, exp, iss, aud and typ=refresh
    except TokenError as exc:
        raise AuthenticationFailed("Refresh token is invalid or expired") from exc


def token_refresh(*, request: HttpRequest | None, refresh_token: str) -> TokenPair:
    """Rotate: the presented token dies and a new pair is issued in its family.

    Presenting an already-rotated token is reuse: the whole family is revoked.
    """
    token = _decode_refresh(refresh_token)
    reused = False
    with transaction.atomic():
        record = (
            RefreshTokenRecord.objects.select_for_update()
            .select_related("user")
            .filter(jti=token.get("jti", ""))
            .first()
        )
        if record is None or record.revoked_at is not None:
            raise AuthenticationFailed("Refresh token is invalid or expired")
        user = record.user
        if record.used_at is not None:
            reused = True
            RefreshTokenRecord.objects.filter(family=record.family, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
            audit.record(
                action="auth:refresh_reuse",
                outcome="denied",
                actor=user,
                status_code=401,
                meta=RequestMeta.from_http(request),
            )
        elif not user.is_active or token.get(VERSION_CLAIM) != user.auth_version:
            raise AuthenticationFailed("Refresh token is invalid or expired")
        else:
            record.used_at = timezone.now()
            record.save(update_fields=["used_at"])
            pair = _issue_pair(user, record.family)
    if reused:
        raise AuthenticationFailed("Refresh token was already used; please log in again")
    return pair


def logout(*, request: HttpRequest | None, refresh_token: str) -> None:
    """Revoke the refresh token's whole family (idempotent for valid tokens)."""
    token = _decode_refresh(refresh_token)
    with transaction.atomic():
        record = RefreshTokenRecord.objects.filter(jti=token.get("jti", "")).first()
        if record is None:
            raise AuthenticationFailed("Refresh token is invalid or expired")
        RefreshTokenRecord.objects.filter(family=record.family, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        audit.record(
            action="auth:logout",
            outcome="success",
            actor=record.user,
            meta=RequestMeta.from_http(request),
        )


def user_invalidate_tokens(*, user: User) -> None:
    """Every access and refresh token of ``user`` stops working now."""
    User.objects.filter(pk=user.pk).update(auth_version=F("auth_version") + 1)
    user.refresh_from_db(fields=["auth_version"])
    RefreshTokenRecord.objects.filter(user=user, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    access_changed.send(sender=User, org_ids=user_org_ids(user))


def password_change(
    *, user: User, current_password: str, new_password: str, request: HttpRequest | None = None
) -> TokenPair:
    """Change the password; kills every token of the user and returns a fresh pair."""
    if not password_verify(
        user=user, password=current_password, request=request, action="auth:password_change"
    ):
        audit.record(
            action="auth:password_change",
            outcome="failure",
            actor=user,
            meta=RequestMeta.from_http(request),
        )
        raise AuthenticationFailed("Current password is wrong")
    try:
        validate_password(new_password, user)
    except DjangoValidationError as exc:
        raise ValidationError(
            "Password is too weak", details={"new_password": exc.messages}
        ) from exc
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        user_invalidate_tokens(user=user)
        audit.record(
            action="auth:password_change",
            outcome="success",
            actor=user,
            meta=RequestMeta.from_http(request),
        )
        return token_pair_issue(user=user)


def user_deactivate(*, user: User, request: HttpRequest | None = None) -> None:
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(is_active=False)
        user_invalidate_tokens(user=user)
        audit.record(
            action="auth:user_deactivate",
            outcome="success",
            target=user,
            meta=RequestMeta.from_http(request),
        )
