"""TOTP devices and recovery codes (django-otp devices with encrypted seeds)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import segno
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from inferia.errors import AuthenticationFailed, Conflict, OtpRequired, RateLimited, ValidationError
from inferia.request_meta import RequestMeta
from orgs.models import RecoveryCode, TOTPDevice, User

RECOVERY_CODE_COUNT = 10


@dataclass(frozen=True)
class TotpSetup:
    otpauth_uri: str
    qr_svg: str


def _digest(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).hexdigest()


def _otpauth_uri(user: User, seed_plaintext: bytes) -> str:
    secret_b32 = base64.b32encode(seed_plaintext).decode().rstrip("=")
    issuer = settings.INFERIA_OTP_ISSUER
    label = quote(f"{issuer}:{user.username}", safe=":")
    query = urlencode(
        {"secret": secret_b32, "issuer": issuer, "algorithm": "SHA1", "digits": 6, "period": 30}
    )
    return f"otpauth://totp/{label}?{query}"


def confirmed_device(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


@transaction.atomic
def totp_setup(*, user: User, meta: RequestMeta | None = None) -> TotpSetup:
    """Start (or restart) enrolment: a new unconfirmed device; returns URI and QR.

    Raises CONFLICT when 2FA is already on (disable it first).
    """
    if confirmed_device(user) is not None:
        raise Conflict("Two-factor authentication is already enabled; disable it first")
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    device = TOTPDevice(user=user, name="authenticator", confirmed=False)
    seed_plaintext = secrets.token_bytes(20)
    device.set_seed(seed_plaintext)
    device.save()
    uri = _otpauth_uri(user, seed_plaintext)
    qr_svg = segno.make(uri, error="m").svg_inline(scale=4)
    audit.record(action="auth:2fa_setup", outcome="success", actor=user, meta=meta)
    return TotpSetup(otpauth_uri=uri, qr_svg=qr_svg)


def _new_recovery_codes(user: User) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes = ["-".join(secrets.token_hex(3) for _ in range(3)) for _ in range(RECOVERY_CODE_COUNT)]
    RecoveryCode.objects.bulk_create(
        RecoveryCode(user=user, code_digest=_digest(code)) for code in codes
    )
    return codes


def totp_confirm(*, user: User, otp_code: str, meta: RequestMeta | None = None) -> list[str]:
    """Confirm the pending device with a current code; returns recovery codes (shown once).

    Ends every other session of the user (the acting one, ``meta.family``, stays)."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).first()
        if device is None:
            raise Conflict("No pending two-factor setup; call /auth/2fa/setup first")
        _check_lock(device)
        if not device.verify_token(otp_code or ""):
            failed = True
        else:
            failed = False
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            codes = _new_recovery_codes(user)
            ended = _end_other_sessions(user, meta)
            audit.record(
                action="auth:2fa_enable",
                outcome="success",
                actor=user,
                meta=meta,
                data={"other_sessions_ended": ended},
            )
    if failed:
        audit.record(
            action="auth:2fa_enable",
            outcome="failure",
            actor=user,
            meta=meta,
        )
        raise AuthenticationFailed("The code is wrong or was already used")
    return codes


def _end_other_sessions(user: User, meta: RequestMeta | None) -> int:
    # A change of the second factor ends every other login of the user (a session
    # opened with the old factor, or by whoever had it); the acting one stays usable.
    from orgs.services.auth import sessions_end_others  # auth imports this module

    return sessions_end_others(user=user, meta=meta)


def _check_lock(device: TOTPDevice) -> None:
    locked = device.locked_for_seconds()
    if locked:
        raise RateLimited(
            "Too many wrong codes; two-factor verification is locked for a while",
            retry_after=locked,
        )


def verify_second_factor(user: User, code: str | None, *, allow_recovery: bool = True) -> bool:
    """Check a TOTP code (once per time step) or an unused recovery code.

    Returns True when the user has no 2FA. Raises OTP_REQUIRED when a code is
    needed and missing, RATE_LIMITED while the device is locked out. A wrong
    code returns False (and counts towards the lockout).
    """
    device = confirmed_device(user)
    if device is None:
        return True
    if not code:
        raise OtpRequired()
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        _check_lock(device)
        normalized = code.strip()
        if normalized.replace(" ", "").isdigit():
            return device.verify_token(normalized)
        if not allow_recovery:
            device.throttle_increment()
            return False
        digest = _digest(normalized)
        for candidate in RecoveryCode.objects.select_for_update().filter(
            user=user, used_at__isnull=True
        ):
            if hmac.compare_digest(candidate.code_digest, digest):
                candidate.used_at = timezone.now()
                candidate.save(update_fields=["used_at"])
                return True
        device.throttle_increment()
        return False


def second_factor_verify(
    *,
    user: User,
    otp_code: str | None,
    meta: RequestMeta | None,
    action: str,
    allow_recovery: bool = True,
) -> bool:
    """``verify_second_factor`` for a request: a refusal for a missing code or a
    locked device is audited as ``action`` denied before it propagates."""
    try:
        return verify_second_factor(user, otp_code, allow_recovery=allow_recovery)
    except (OtpRequired, RateLimited) as exc:
        audit.record(
            action=action,
            outcome="denied",
            actor=user,
            status_code=exc.status,
            meta=meta,
            data={"reason": "otp_required" if isinstance(exc, OtpRequired) else "otp_locked"},
        )
        raise


def verify_fresh(
    *, user: User, otp_code: str | None, password: str | None, meta: RequestMeta | None
) -> None:
    """Sudo check for sensitive actions: a fresh TOTP code if 2FA is on, else the password."""
    if confirmed_device(user) is not None:
        ok = second_factor_verify(
            user=user,
            otp_code=otp_code,
            meta=meta,
            action="auth:reverify",
            allow_recovery=False,
        )
    elif not password:
        raise ValidationError(
            "Confirm this action with your password",
            details={"password": ["This field is required to confirm this action."]},
        )
    else:
        from orgs.services.auth import password_verify  # auth imports this module

        ok = password_verify(user=user, password=password, meta=meta, action="auth:reverify")
    if not ok:
        audit.record(
            action="auth:reverify",
            outcome="failure",
            actor=user,
            meta=meta,
        )
        raise AuthenticationFailed("The confirmation code or password is wrong")


def _require_current_code(
    user: User, otp_code: str | None, meta: RequestMeta | None, action: str
) -> None:
    # Runs outside the caller's transaction so a failure count is never rolled back.
    if confirmed_device(user) is None:
        raise Conflict("Two-factor authentication is not enabled")
    if not second_factor_verify(
        user=user, otp_code=otp_code, meta=meta, action=action, allow_recovery=False
    ):
        audit.record(action=action, outcome="failure", actor=user, meta=meta)
        raise AuthenticationFailed("The code is wrong or was already used")


def totp_disable(*, user: User, otp_code: str | None, meta: RequestMeta | None = None) -> None:
    """Turn 2FA off; needs a fresh TOTP code (not a recovery code). Ends every other
    session of the user (the acting one, ``meta.family``, stays)."""
    _require_current_code(user, otp_code, meta, "auth:2fa_disable")
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        ended = _end_other_sessions(user, meta)
        audit.record(
            action="auth:2fa_disable",
            outcome="success",
            actor=user,
            meta=meta,
            data={"other_sessions_ended": ended},
        )


def recovery_codes_regenerate(
    *, user: User, otp_code: str | None, meta: RequestMeta | None = None
) -> list[str]:
    """Replace every recovery code; needs a fresh TOTP code. Returns the new codes once."""
    _require_current_code(user, otp_code, meta, "auth:2fa_recovery_codes")
    with transaction.atomic():
        codes = _new_recovery_codes(user)
        audit.record(
            action="auth:2fa_recovery_codes",
            outcome="success",
            actor=user,
            meta=meta,
        )
    return codes
