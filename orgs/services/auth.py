"""Login, token pairs with rotation and reuse detection, logout, password change."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

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
from inferia import clock, store
from inferia.errors import AuthenticationFailed, PermissionDenied, RateLimited, ValidationError
from inferia.request_meta import RequestMeta
from orgs.models import Membership, RefreshTokenRecord, User
from orgs.services import two_factor
from orgs.signals import access_changed, user_org_ids

VERSION_CLAIM = "ver"
FAMILY_CLAIM = "fam"
# When the person typed their password: carried unchanged through rotations, so a
# session ends INFERIA_SESSION_ABSOLUTE_HOURS after the login however often it refreshes.
AUTH_TIME_CLAIM = "auth_time"
# Dashboard (Django) sessions are families too: one server-side record each.
SESSION_FAMILY_KEY = "inferia_fam"
SESSION_AUTH_TIME_KEY = "inferia_auth_time"


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: datetime
    user: User


def session_deadline(auth_time: int) -> int:
    """The epoch second at which a session that logged in at ``auth_time`` ends."""
    return int(auth_time) + settings.INFERIA_SESSION_ABSOLUTE_HOURS * 3600


def session_expired(auth_time: int | None) -> bool:
    """True when the absolute session lifetime since the login is over (or unknown)."""
    if not isinstance(auth_time, int | float):
        return True
    return clock.time() >= session_deadline(int(auth_time))


def _issue_pair(user: User, family: uuid.UUID, auth_time: int | None = None) -> TokenPair:
    auth_time = int(clock.time()) if auth_time is None else int(auth_time)
    deadline = session_deadline(auth_time)
    refresh = RefreshToken()
    refresh["sub"] = str(user.pk)
    refresh[VERSION_CLAIM] = user.auth_version
    refresh[FAMILY_CLAIM] = str(family)
    refresh[AUTH_TIME_CLAIM] = auth_time
    refresh["exp"] = min(int(refresh["exp"]), deadline)
    access = AccessToken()
    access["sub"] = str(user.pk)
    access[VERSION_CLAIM] = user.auth_version
    access[FAMILY_CLAIM] = str(family)
    access[AUTH_TIME_CLAIM] = auth_time
    access["exp"] = min(int(access["exp"]), deadline)
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


def token_pair_issue(*, user: User, family: uuid.UUID | None = None) -> TokenPair:
    """A new login family for ``user`` (login, the device grant, tests' fixtures); the
    caller may name the family's id (the device grant keeps it to revoke on code reuse)."""
    return _issue_pair(user, family or uuid.uuid4())


def _throttle_keys(username: str, ip: str | None) -> list[tuple[str, int]]:
    keys = [(f"login:user:{username.lower()}", settings.INFERIA_LOGIN_MAX_FAILURES_PER_USER)]
    if ip:
        keys.append((f"login:ip:{ip}", settings.INFERIA_LOGIN_MAX_FAILURES_PER_IP))
    return keys


def throttle_refuse(
    keys: list[tuple[str, int]],
    *,
    action: str,
    meta: RequestMeta | None,
    actor: User | None = None,
    actor_label: str = "",
    message: str = "Too many failed password attempts; try again later",
) -> None:
    """RATE_LIMITED (audited as ``action``, denied) when any ``(counter, limit)`` of
    ``keys`` reached its limit of failures in the login window. Counters are the
    shared store's (every process sees the same count); ``throttle_count`` adds one."""
    window = settings.INFERIA_LOGIN_WINDOW_SECONDS
    for key, limit in keys:
        state = store.peek(key, window_seconds=window)
        if state.count >= limit:
            audit.record(
                action=action,
                outcome="denied",
                actor=actor,
                actor_label=actor_label,
                status_code=429,
                meta=meta,
                data={"reason": "throttled"},
            )
            raise RateLimited(message, retry_after=state.reset_in_seconds)


def throttle_count(keys: list[tuple[str, int]]) -> None:
    for key, _limit in keys:
        store.hit(key, window_seconds=settings.INFERIA_LOGIN_WINDOW_SECONDS)


def password_verify(*, user: User, password: str, meta: RequestMeta | None, action: str) -> bool:
    """Check a logged-in user's password (sudo confirmation, password change).

    Wrong passwords count against the same per-username and per-IP limits as
    login, so a stolen access token is no unthrottled password oracle.
    Raises RATE_LIMITED past the limit, even for the right password.
    """
    keys = _throttle_keys(user.username, (meta.ip if meta else None))
    throttle_refuse(keys, action=action, meta=meta, actor=user)
    if user.check_password(password):
        return True
    throttle_count(keys)
    return False


def login_verify(
    *, request: HttpRequest | None, username: str, password: str, otp_code: str | None = None
) -> User:
    """Check password (and TOTP when enrolled); returns the user, nothing issued.

    One message for unknown user, inactive user and wrong password; failures
    are counted per username and per client IP (RATE_LIMITED past the limit).
    Raises OTP_REQUIRED (audited) when the password is right and a code is needed.
    Takes the request: ``authenticate`` hands it to the backends and signals.
    """
    meta = RequestMeta.from_http(request)
    keys = _throttle_keys(username, (meta.ip if meta else None))
    throttle_refuse(
        keys,
        action="auth:login",
        meta=meta,
        actor_label=username,
        message="Too many failed login attempts; try again later",
    )

    def fail(reason: str, error: Exception) -> NoReturn:
        throttle_count(keys)
        audit.record(
            action="auth:login",
            outcome="failure",
            actor_label=username,
            status_code=401,
            meta=meta,
            data={"reason": reason},
        )
        raise error

    # ModelBackend hashes a dummy password for unknown users: same timing.
    user = authenticate(request, username=username, password=password)
    if user is None:
        fail("bad_credentials", AuthenticationFailed("Invalid username or password"))
    # After the password: only the account's holder learns that SSO is enforced.
    password_login_sso_check(user=user, meta=meta)
    second_factor_ok = two_factor.second_factor_verify(
        user=user, otp_code=otp_code, meta=meta, action="auth:login"
    )
    if not second_factor_ok:
        fail("bad_otp", AuthenticationFailed("Invalid one-time code"))
    return user


def password_login_sso_check(*, user: User, meta: RequestMeta | None) -> None:
    """``enforce_sso``: password login (dashboard, API, admin: all go through
    ``login_verify``) refuses a member of an org that enforces SSO, unless they are
    that org's Owner with 2FA on (break-glass: password + 2FA; ``login_verify`` then
    asks for the code as usual). Each refusal is audited, in each enforcing org.

    Raises PERMISSION_DENIED with ``details.sso_orgs`` (the slugs whose
    ``/auth/sso/{org}`` page signs the person in).
    """
    from orgs.access import OWNER

    memberships = Membership.all_orgs.filter(user=user).select_related("org", "role")
    refusing: list[tuple[Membership, str]] = []
    for membership in memberships:
        if not membership.org.policy.enforce_sso:
            continue
        is_owner = membership.role.org_id is None and membership.role.slug == OWNER
        if not is_owner:
            refusing.append((membership, "sso_enforced"))
        elif two_factor.confirmed_device(user) is None:
            refusing.append((membership, "sso_enforced_owner_without_2fa"))
    if not refusing:
        return
    for membership, reason in refusing:
        audit.record(
            action="auth:login",
            outcome="denied",
            org=membership.org,
            actor=user,
            status_code=403,
            meta=meta,
            data={"reason": reason, "via": "password"},
        )
    slugs = sorted(m.org.slug for m, _reason in refusing)
    raise PermissionDenied(
        f"{', '.join(slugs)} requires single sign-on: sign in with SSO "
        f"(/auth/sso/{slugs[0]}). Owners may use their password only with 2FA on.",
        details={"sso_orgs": slugs},
    )


def login_second_factor(*, meta: RequestMeta | None, user: User, otp_code: str | None) -> User:
    """The second step of a two-step (page) login: the password was checked by
    ``login_verify`` moments ago; check the code under the same throttles."""
    keys = _throttle_keys(user.username, (meta.ip if meta else None))
    throttle_refuse(
        keys,
        action="auth:login",
        meta=meta,
        actor_label=user.username,
        message="Too many failed login attempts; try again later",
    )
    if not user.is_active:
        raise AuthenticationFailed("Invalid username or password")
    if not two_factor.second_factor_verify(
        user=user, otp_code=otp_code, meta=meta, action="auth:login"
    ):
        throttle_count(keys)
        audit.record(
            action="auth:login",
            outcome="failure",
            actor_label=user.username,
            status_code=401,
            meta=meta,
            data={"reason": "bad_otp"},
        )
        raise AuthenticationFailed("Invalid one-time code")
    return user


def login_record(*, meta: RequestMeta | None, user: User, via: str = "api") -> None:
    """Stamp ``last_login`` and audit a successful login."""
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    audit.record(
        action="auth:login",
        outcome="success",
        actor=user,
        status_code=200,
        meta=meta,
        data={"via": via} if via != "api" else None,
    )


def login(
    *, request: HttpRequest | None, username: str, password: str, otp_code: str | None = None
) -> TokenPair:
    """Check password (and TOTP when enrolled); returns a token pair."""
    user = login_verify(request=request, username=username, password=password, otp_code=otp_code)
    with transaction.atomic():
        pair = token_pair_issue(user=user)
        login_record(meta=RequestMeta.from_http(request), user=user)
    return pair


def _decode_refresh(raw: str) -> RefreshToken:
    try:
        # checks signature, exp, iss, aud and typ=refresh. The stubs type the argument
        # as a Token; simplejwt takes the encoded token (str or bytes).
        return RefreshToken(raw)  # type: ignore[arg-type]
    except TokenError as exc:
        raise AuthenticationFailed("Refresh token is invalid or expired") from exc


def token_refresh(*, meta: RequestMeta | None, refresh_token: str) -> TokenPair:
    """Rotate: the presented token dies and a new pair is issued in its family.

    Presenting an already-rotated token is reuse: the whole family is revoked.
    """
    token = _decode_refresh(refresh_token)
    # (audit action, audit data, answer) when this refresh ends the login instead.
    ended: tuple[str, dict[str, str] | None, str] | None = None
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
            ended = (
                "auth:refresh_reuse",
                None,
                "Refresh token was already used; please log in again",
            )
        elif not user.is_active or token.get(VERSION_CLAIM) != user.auth_version:
            raise AuthenticationFailed("Refresh token is invalid or expired")
        elif session_expired(token.get(AUTH_TIME_CLAIM)):
            ended = (
                "auth:refresh",
                {"reason": "session_lifetime"},
                "The session is over; please log in again",
            )
        if ended is not None:
            action, data, _answer = ended
            session_family_end(user=user, family=record.family)
            audit.record(
                action=action, outcome="denied", actor=user, status_code=401, meta=meta, data=data
            )
        else:
            record.used_at = timezone.now()
            record.save(update_fields=["used_at"])
            pair = _issue_pair(user, record.family, token[AUTH_TIME_CLAIM])
    if ended is not None:
        raise AuthenticationFailed(ended[2])
    return pair


def logout(*, meta: RequestMeta | None, refresh_token: str) -> None:
    """Revoke the refresh token's whole family (idempotent for valid tokens); the
    family's access tokens die with it (``access_token_verify`` checks the family)."""
    token = _decode_refresh(refresh_token)
    with transaction.atomic():
        record = RefreshTokenRecord.objects.filter(jti=token.get("jti", "")).first()
        if record is None:
            raise AuthenticationFailed("Refresh token is invalid or expired")
        session_family_end(user=record.user, family=record.family)
        audit.record(
            action="auth:logout",
            outcome="success",
            actor=record.user,
            meta=meta,
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
    *, user: User, current_password: str, new_password: str, meta: RequestMeta | None = None
) -> TokenPair:
    """Change the password; kills every token of the user and returns a fresh pair."""
    if not password_verify(
        user=user, password=current_password, meta=meta, action="auth:password_change"
    ):
        audit.record(
            action="auth:password_change",
            outcome="failure",
            actor=user,
            meta=meta,
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
            meta=meta,
        )
        return token_pair_issue(user=user)


def user_deactivate(*, user: User, meta: RequestMeta | None = None) -> None:
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(is_active=False)
        user_invalidate_tokens(user=user)
        audit.record(
            action="auth:user_deactivate",
            outcome="success",
            target=user,
            meta=meta,
        )


# --- sessions: one family of server-side records per login -------------------------------


def _family_alive(family: str | uuid.UUID | None) -> bool:
    if not family:
        return False
    try:
        family = uuid.UUID(str(family))
    except ValueError:
        return False
    return RefreshTokenRecord.objects.filter(family=family, revoked_at__isnull=True).exists()


def access_token_verify(raw: str) -> tuple[User, AccessToken]:
    """The one validation of an access JWT (the API's BearerAuthentication and the
    gateway call it): signature, expiry, issuer, audience and type, then the user is
    active, the ``ver`` claim is current, the login's family is not revoked (logout,
    refresh reuse, "end other sessions") and the absolute session lifetime is not over.

    Raises AUTHENTICATION_FAILED, one message for every reason.
    """
    try:
        # The stubs type the argument as a Token; simplejwt takes the encoded token.
        token = AccessToken(raw)  # type: ignore[arg-type]
    except TokenError as exc:
        raise AuthenticationFailed("Access token is invalid or expired") from exc
    user = User.objects.filter(pk=token.get("sub")).first()
    if (
        user is None
        or not user.is_active
        or token.get(VERSION_CLAIM) != user.auth_version
        or session_expired(token.get(AUTH_TIME_CLAIM))
        or not _family_alive(token.get(FAMILY_CLAIM))
    ):
        raise AuthenticationFailed("Access token is invalid or expired")
    return user, token


def session_family_end(*, user: User, family: str | uuid.UUID) -> None:
    """Revoke one login (refresh family or dashboard session) and drop cached principals."""
    RefreshTokenRecord.objects.filter(family=family, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    access_changed.send(sender=User, org_ids=user_org_ids(user))


def sessions_end_others(*, user: User, meta: RequestMeta | None) -> int:
    """End every session of ``user`` except the acting one (``meta.family``): other refresh
    families with their access tokens, other dashboard sessions. Returns how many."""
    keep = meta.family if meta else None
    others = RefreshTokenRecord.objects.filter(user=user, revoked_at__isnull=True)
    if keep:
        others = others.exclude(family=keep)
    ended = len(set(others.values_list("family", flat=True)))
    others.update(revoked_at=timezone.now())
    access_changed.send(sender=User, org_ids=user_org_ids(user))
    return ended


def dashboard_session_start(
    *, request: HttpRequest, user: User, auth_time: int | None = None
) -> None:
    """Bind a (new) Django session to a server-side family record, so that logout,
    "end other sessions" and the absolute lifetime reach dashboard and admin sessions."""
    auth_time = int(clock.time()) if auth_time is None else int(auth_time)
    family = uuid.uuid4()
    RefreshTokenRecord.objects.create(
        jti=f"session:{family.hex}",
        user=user,
        family=family,
        expires_at=datetime.fromtimestamp(session_deadline(auth_time), tz=UTC),
    )
    request.session[SESSION_FAMILY_KEY] = str(family)
    request.session[SESSION_AUTH_TIME_KEY] = auth_time


def dashboard_session_valid(request: HttpRequest) -> bool:
    """False when the signed-in Django session was ended or outlived its absolute lifetime."""
    session = request.session
    return not session_expired(session.get(SESSION_AUTH_TIME_KEY)) and _family_alive(
        session.get(SESSION_FAMILY_KEY)
    )


# --- the Django admin's login ------------------------------------------------------------


def admin_second_factor_needed(user: User) -> bool:
    """Whether an admin session of ``user`` must have passed a second factor: always
    when the user enrolled one; for everybody with ``INFERIA_ADMIN_REQUIRES_OTP``."""
    return settings.INFERIA_ADMIN_REQUIRES_OTP or two_factor.confirmed_device(user) is not None


def admin_login_verify(
    *, request: HttpRequest | None, username: str, password: str, otp_code: str | None
):
    """The admin site's login: ``login_verify`` (throttles, audit, the second factor of
    enrolled users), then staff only, then (``INFERIA_ADMIN_REQUIRES_OTP``) enrolled only.

    Returns (user, confirmed TOTP device or None). Raises AUTHENTICATION_FAILED (same
    message as a wrong password for non-staff), OTP_REQUIRED, RATE_LIMITED, and
    TWO_FACTOR_REQUIRED for staff who must enrol first.
    """
    from inferia.errors import TwoFactorRequired

    meta = RequestMeta.from_http(request)
    user = login_verify(request=request, username=username, password=password, otp_code=otp_code)
    if not user.is_staff:
        throttle_count(_throttle_keys(username, (meta.ip if meta else None)))
        audit.record(
            action="auth:login",
            outcome="failure",
            actor=user,
            status_code=401,
            meta=meta,
            data={"reason": "not_staff", "via": "admin"},
        )
        raise AuthenticationFailed("Invalid username or password")
    device = two_factor.confirmed_device(user)
    if device is None and settings.INFERIA_ADMIN_REQUIRES_OTP:
        audit.record(
            action="auth:login",
            outcome="denied",
            actor=user,
            status_code=403,
            meta=meta,
            data={"reason": "2fa_enrolment_required", "via": "admin"},
        )
        raise TwoFactorRequired(
            "The admin requires two-factor authentication: set it up at /account/2fa first"
        )
    return user, device


# --- platform staff editing users in the admin --------------------------------------------

USER_ACCESS_FIELDS = ("is_active", "is_staff", "is_superuser")


def user_admin_save(
    *,
    operator: User,
    user: User,
    changed_fields: list[str],
    created: bool,
    meta: RequestMeta | None = None,
) -> User:
    """Save a user created or edited by platform staff in the admin; always audited.

    Only a superuser may change ``is_staff`` or ``is_superuser``; a change that
    narrows access (deactivation, staff or superuser removed) ends every session
    and token of the user at once. Raises PERMISSION_DENIED.
    """
    names = (
        USER_ACCESS_FIELDS if created else [n for n in USER_ACCESS_FIELDS if n in changed_fields]
    )
    changes = {name: bool(getattr(user, name)) for name in names}
    privileged = {"is_staff", "is_superuser"} & {n for n in changes if changes[n] or not created}
    if privileged and not operator.is_superuser:
        audit.record(
            action="auth:user_update",
            outcome="denied",
            actor=operator,
            actor_label=f"admin:{operator.username}",
            target=user if user.pk and not created else None,
            status_code=403,
            meta=meta,
            data={"reason": "superuser_required", "fields": sorted(privileged), "via": "admin"},
        )
        raise PermissionDenied("Only a superuser may change staff or superuser status")
    with transaction.atomic():
        user.save()
        if not created and any(value is False for value in changes.values()):
            user_invalidate_tokens(user=user)
        audit.record(
            action="auth:user_create" if created else "auth:user_update",
            outcome="success",
            actor=operator,
            actor_label=f"admin:{operator.username}",
            target=user,
            meta=meta,
            data={"changes": changes, "fields": sorted(changed_fields), "via": "admin"},
        )
    return user


def user_password_set(
    *,
    operator: User,
    user: User,
    new_password: str | None,
    meta: RequestMeta | None = None,
) -> None:
    """Platform staff set (or, with None, disable) a user's password in the admin:
    every session and token of the user ends; audited."""
    with transaction.atomic():
        if new_password:
            user.set_password(new_password)
        else:
            user.set_unusable_password()
        user.save(update_fields=["password"])
        user_invalidate_tokens(user=user)
        audit.record(
            action="auth:password_change",
            outcome="success",
            actor=operator,
            actor_label=f"admin:{operator.username}",
            target=user,
            meta=meta,
            data={"via": "admin", "usable": bool(new_password)},
        )
