"""The OAuth 2.0 device authorization grant (RFC 8628) for the CLI and other tools.

A public client (``INFERIA_DEVICE_CLIENTS``) asks for a device code and a short user
code; a signed-in person types the user code on ``/device``, sees which client asks
and approves or denies; the client, polling, exchanges its device code for the usual
access/refresh pair of a new login family (``auth.token_pair_issue``), so logout,
password change, deactivation and the absolute session lifetime end it like any login,
and the resolver bounds every use of its access token by the person's current role.

Both codes are stored as SHA-256 digests only, expire, and are single use. Wrong
user codes count against per-person and per-IP limits in the shared store; unknown
clients, wrong clients, reused, expired and denied device codes are refused with the
RFC's error codes (``DeviceGrantError``) and audited.
"""

from __future__ import annotations

import functools
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import F

from audit import services as audit
from inferia import clock
from inferia.errors import Conflict, NotFound, PermissionDenied, TwoFactorRequired
from inferia.request_meta import RequestMeta, public_url
from orgs.access import resolve_member
from orgs.models import (
    DeviceAuthorization,
    Organization,
    User,
    slug_validator,
    token_digest,
)
from orgs.models import DeviceAuthorizationStatus as Status
from orgs.services import auth

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 section 6.1: 20 consonants, no vowels (no words) and no look-alikes (0/O,
# 1/I); 8 of them is about 34.5 bits, shown as BCDF-GHJK.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
# RFC 8628 section 3.5: each slow_down adds 5 seconds to the polling interval.
SLOW_DOWN_STEP_SECONDS = 5
VERIFICATION_PATH = "/device"


class DeviceGrantError(Exception):
    """An OAuth error answer (RFC 6749 section 5.2, RFC 8628 section 3.5): ``error`` is
    the RFC's code (``authorization_pending``, ``slow_down``, ``access_denied``,
    ``expired_token``, ``invalid_grant``, ``invalid_client``, ``invalid_request``,
    ``unsupported_grant_type``); the API renders it in the RFC's JSON shape."""

    def __init__(
        self, error: str, description: str, *, status: int = 400, interval: int | None = None
    ) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.interval = interval


@dataclass(frozen=True)
class DeviceCodeIssued:
    """What the client is told once: the plaintext codes exist only here."""

    authorization: DeviceAuthorization
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


def client_name(client_id: str) -> str | None:
    """The display name of a registered public client, None for an unknown one."""
    clients: dict[str, str] = settings.INFERIA_DEVICE_CLIENTS
    return clients.get(client_id)


def normalize_user_code(raw: str) -> str | None:
    """The canonical form of a typed user code (upper case, dashes and spaces dropped),
    or None when it cannot be one (wrong length, a letter outside the alphabet)."""
    code = "".join(ch for ch in str(raw).upper() if ch not in "- \t")
    if len(code) != USER_CODE_LENGTH or any(ch not in USER_CODE_ALPHABET for ch in code):
        return None
    return code


def format_user_code(code: str) -> str:
    half = USER_CODE_LENGTH // 2
    return f"{code[:half]}-{code[half:]}"


def _new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def _client_label(client_id: str) -> str:
    return f"client:{client_id[:80]}"


def _refuse_unknown_client(client_id: str, *, action: str, meta: RequestMeta | None) -> None:
    if client_name(client_id) is not None:
        return
    audit.record(
        action=action,
        outcome="failure",
        actor_label=_client_label(client_id),
        status_code=401,
        meta=meta,
        data={"reason": "unknown_client"},
    )
    raise DeviceGrantError("invalid_client", "Unknown client_id", status=401)


def device_authorization_request(
    *, meta: RequestMeta | None, client_id: str, org_slug: str = ""
) -> DeviceCodeIssued:
    """Start a device authorization for ``client_id`` (a registered public client).

    Nobody is signed in yet: the request is audited under the client's name, and
    counted per client IP (RATE_LIMITED past ``INFERIA_DEVICE_MAX_CODES_PER_IP`` in the
    login window). ``org_slug`` is only remembered (checked when a person approves), so
    this unauthenticated endpoint tells nobody whether an org exists.
    Raises DeviceGrantError (``invalid_client``, ``invalid_request``), RATE_LIMITED.
    """
    _refuse_unknown_client(client_id, action="auth:device_code", meta=meta)
    if org_slug:
        try:
            slug_validator(org_slug)
        except DjangoValidationError as exc:
            raise DeviceGrantError(
                "invalid_request", "org is not a valid organization slug"
            ) from exc
    keys = []
    if meta is not None and meta.ip:
        keys.append((f"device:code:ip:{meta.ip}", settings.INFERIA_DEVICE_MAX_CODES_PER_IP))
    auth.throttle_refuse(
        keys,
        action="auth:device_code",
        meta=meta,
        actor_label=_client_label(client_id),
        message="Too many device codes requested from this address; try again later",
    )
    auth.throttle_count(keys)
    now = clock.now()
    device_code = secrets.token_urlsafe(32)
    # A live user code must name one request; 20^8 codes make a clash rare, not impossible.
    for _attempt in range(10):
        user_code = _new_user_code()
        clash = DeviceAuthorization.objects.filter(
            user_code_digest=token_digest(user_code),
            status=Status.PENDING,
            expires_at__gt=now,
        ).exists()
        if not clash:
            break
    else:  # pragma: no cover - ten clashes in a row mean a broken random source
        raise RuntimeError("could not draw a free user code")
    lifetime = settings.INFERIA_DEVICE_CODE_SECONDS
    with transaction.atomic():
        authorization = DeviceAuthorization.objects.create(
            client_id=client_id,
            device_code_digest=token_digest(device_code),
            user_code_digest=token_digest(user_code),
            org_slug=org_slug,
            interval_seconds=settings.INFERIA_DEVICE_POLL_SECONDS,
            requested_ip=meta.ip if meta else None,
            requested_user_agent=(meta.user_agent if meta else "")[:300],
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
        audit.record(
            action="auth:device_code",
            outcome="success",
            actor_label=_client_label(client_id),
            target=authorization,
            status_code=200,
            meta=meta,
            data={"client_id": client_id, "org": org_slug or None},
        )
    verification_uri = public_url(meta) + VERIFICATION_PATH
    shown = format_user_code(user_code)
    return DeviceCodeIssued(
        authorization=authorization,
        device_code=device_code,
        user_code=shown,
        verification_uri=verification_uri,
        verification_uri_complete=f"{verification_uri}?user_code={shown}",
        expires_in=lifetime,
        interval=authorization.interval_seconds,
    )


def _verify_throttle_keys(actor: User, meta: RequestMeta | None) -> list[tuple[str, int]]:
    keys = [(f"device:verify:user:{actor.pk}", settings.INFERIA_DEVICE_MAX_FAILURES_PER_USER)]
    if meta is not None and meta.ip:
        keys.append((f"device:verify:ip:{meta.ip}", settings.INFERIA_DEVICE_MAX_FAILURES_PER_IP))
    return keys


def device_authorization_find(
    *, actor: User, user_code: str, meta: RequestMeta | None
) -> DeviceAuthorization:
    """The pending, unexpired request whose user code ``actor`` typed.

    Wrong codes count per person and per IP (the user code is short: guessing is
    throttled, RATE_LIMITED past ``INFERIA_DEVICE_MAX_FAILURES_PER_USER``/``_PER_IP`` in
    the login window, even for a right code). Raises NOT_FOUND (audited) for a code
    that is unknown, answered or expired - one message for all three.
    """
    keys = _verify_throttle_keys(actor, meta)
    auth.throttle_refuse(
        keys,
        action="auth:device_verify",
        meta=meta,
        actor=actor,
        message="Too many wrong codes; try again later",
    )
    code = normalize_user_code(user_code)
    found = None
    if code is not None:
        found = DeviceAuthorization.objects.filter(
            user_code_digest=token_digest(code),
            status=Status.PENDING,
            expires_at__gt=clock.now(),
        ).first()
    if found is None:
        auth.throttle_count(keys)
        audit.record(
            action="auth:device_verify",
            outcome="failure",
            actor=actor,
            status_code=404,
            meta=meta,
            data={"reason": "unknown_code"},
        )
        raise NotFound("This code is not valid, was already used, or has expired")
    return found


def device_authorization_decide(
    *, actor: User, user_code: str, approve: bool, meta: RequestMeta | None
) -> DeviceAuthorization:
    """``actor`` approves (or denies) the pending request of ``user_code``.

    Approval binds the request to ``actor``: the client's tokens will speak for them.
    When the client named an org, ``actor`` must be a member who meets its 2FA policy
    (the resolver's user part): PERMISSION_DENIED for a non-member (it says nothing about
    whether such an org exists), TWO_FACTOR_REQUIRED. A request answered meanwhile
    (another tab, another person) is CONFLICT. Every outcome is audited as ``actor``.
    """
    found = device_authorization_find(actor=actor, user_code=user_code, meta=meta)
    action = "auth:device_approve" if approve else "auth:device_deny"
    org: Organization | None = None
    if approve and found.org_slug:
        org = Organization.objects.filter(slug=found.org_slug).first()
        try:
            resolve_member(org, actor)
        except (NotFound, TwoFactorRequired) as exc:
            refused_2fa = isinstance(exc, TwoFactorRequired)
            audit.record(
                action=action,
                outcome="denied",
                org=org if refused_2fa else None,
                actor=actor,
                target=found,
                status_code=403,
                meta=meta,
                data={"reason": "2fa_required" if refused_2fa else "not_a_member"},
            )
            if refused_2fa:
                raise
            raise PermissionDenied(
                f"You are not a member of an organization named {found.org_slug!r}; "
                "this sign-in cannot be approved with your account"
            ) from exc
    now = clock.now()
    with transaction.atomic():
        answered = DeviceAuthorization.objects.filter(
            pk=found.pk, status=Status.PENDING, expires_at__gt=now
        ).update(
            status=Status.APPROVED if approve else Status.DENIED,
            user=actor,
            decided_at=now,
        )
        if answered != 1:
            raise Conflict("This sign-in request was answered or expired meanwhile")
        audit.record(
            action=action,
            outcome="success",
            org=org,
            actor=actor,
            target=found,
            status_code=200,
            meta=meta,
            data={"client_id": found.client_id, "org": found.org_slug or None},
        )
    found.refresh_from_db()
    return found


def _refuse_token(
    error: str,
    description: str,
    *,
    reason: str,
    client_id: str,
    meta: RequestMeta | None,
    found: DeviceAuthorization | None = None,
    outcome: str = "failure",
) -> DeviceGrantError:
    """Audit a refused exchange (as the person when one answered) and build the error."""
    user = found.user if found is not None else None
    audit.record(
        action="auth:device_token",
        outcome=outcome,
        actor=user,
        actor_label="" if user is not None else _client_label(client_id),
        target=found,
        status_code=400,
        meta=meta,
        data={"reason": reason, "client_id": client_id},
    )
    return DeviceGrantError(error, description)


def device_token_exchange(
    *, meta: RequestMeta | None, client_id: str, device_code: str
) -> auth.TokenPair:
    """The polling client's device code in, the token pair of a new login out - once.

    Answers, in this order: ``invalid_client`` (unknown client), ``invalid_grant``
    (unknown device code, one issued to another client, or one already exchanged: the
    login it started is then ended, RFC 6749 section 4.1.2), ``access_denied``,
    ``expired_token``, ``slow_down`` (polled sooner than the interval, which grows by 5
    seconds), ``authorization_pending``. Refusals other than pending/slow_down are audited;
    the issue is audited as the person who approved.
    """
    _refuse_unknown_client(client_id, action="auth:device_token", meta=meta)
    found = (
        DeviceAuthorization.objects.select_related("user")
        .filter(device_code_digest=token_digest(device_code))
        .first()
    )
    refuse = functools.partial(_refuse_token, client_id=client_id, meta=meta, found=found)
    if found is None:
        raise refuse("invalid_grant", "Unknown device_code", reason="unknown_device_code")
    if found.client_id != client_id:
        raise refuse(
            "invalid_grant",
            "This device_code was issued to another client",
            reason="wrong_client",
        )
    if found.status == Status.CONSUMED:
        if found.user is not None and found.family is not None:
            auth.session_family_end(user=found.user, family=found.family)
        raise refuse(
            "invalid_grant",
            "This device_code was already used; the sign-in it started has been ended",
            reason="reused",
            outcome="denied",
        )
    if found.status == Status.DENIED:
        raise refuse("access_denied", "The sign-in request was denied", reason="denied")
    now = clock.now()
    if found.is_expired(now):
        raise refuse("expired_token", "The device_code has expired; start again", reason="expired")
    if (
        found.last_polled_at is not None
        and (now - found.last_polled_at).total_seconds() < found.interval_seconds
    ):
        interval = found.interval_seconds + SLOW_DOWN_STEP_SECONDS
        DeviceAuthorization.objects.filter(pk=found.pk).update(
            interval_seconds=F("interval_seconds") + SLOW_DOWN_STEP_SECONDS, last_polled_at=now
        )
        raise DeviceGrantError(
            "slow_down",
            f"Polling too fast; wait {interval} seconds between polls",
            interval=interval,
        )
    DeviceAuthorization.objects.filter(pk=found.pk).update(last_polled_at=now)
    if found.status == Status.PENDING:
        raise DeviceGrantError("authorization_pending", "Waiting for the user to approve")
    user = found.user
    if user is None or not user.is_active:
        raise refuse("invalid_grant", "The approving account is not active", reason="inactive")
    family = uuid.uuid4()
    with transaction.atomic():
        claimed = DeviceAuthorization.objects.filter(pk=found.pk, status=Status.APPROVED).update(
            status=Status.CONSUMED, consumed_at=now, family=family
        )
        if claimed != 1:  # a concurrent poll exchanged it first
            raise refuse("invalid_grant", "This device_code was already used", reason="reused")
        pair = auth.token_pair_issue(user=user, family=family)
        User.objects.filter(pk=user.pk).update(last_login=now)
        audit.record(
            action="auth:device_token",
            outcome="success",
            actor=user,
            target=found,
            status_code=200,
            meta=meta,
            data={"client_id": client_id, "via": "device"},
        )
    return pair


def device_authorization_purge(*, older_than_seconds: int = 24 * 3600) -> int:
    """Delete requests that expired more than ``older_than_seconds`` ago (a daily job);
    their audit records stay. Returns how many were deleted."""
    cutoff = clock.now() - timedelta(seconds=older_than_seconds)
    deleted, _ = DeviceAuthorization.objects.filter(expires_at__lt=cutoff).delete()
    return deleted
