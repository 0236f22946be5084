"""Secret references: an upstream secret kept outside Inferia's database.

Forms (README "Secret managers"): ``env:NAME``, ``file:/path``,
``aws-ssm:<parameter name or ARN>``, ``aws-sm:<secret id or ARN>[#json-key]``,
``gcp-sm:projects/<p>/secrets/<s>/versions/<v|latest>``,
``azure-kv:<vault>/<name>[/<version>]`` and ``vault:<mount>/<path>#<key>`` (KV v2).

References are the operator's, not the tenant's: one resolves only when its
canonical form starts with a prefix listed in ``INFERIA_SECRET_REF_ALLOWLIST``,
checked at save and again at every use. Endpoints and credentials of the secret
managers come from the operator's settings, never from a request.

Values from remote managers are cached per process for
``INFERIA_SECRET_REF_TTL_SECONDS``; a failure for
``INFERIA_SECRET_REF_FAILURE_SECONDS``. When the manager is *unreachable*, a value
fetched before is served for at most ``INFERIA_SECRET_REF_STALE_SECONDS`` past its
TTL; a *not found* or *access denied* answer ends it at once (a revocation in the
manager takes effect at the next fetch).

Raises ``ValidationError`` (VALIDATION_ERROR) for a reference that is malformed,
outside the allow-list or of a backend whose client is not installed, and
``SecretRefError`` when a valid reference cannot be resolved now.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from django.conf import settings

from inferia import clock
from inferia.errors import ValidationError
from keys.secret_refs import aws, azure, gcp
from keys.secret_refs.aws import SecretsManagerBackend, SsmBackend
from keys.secret_refs.azure import AzureKeyVaultBackend
from keys.secret_refs.base import (
    DESCRIPTIONS,
    Failure,
    SecretBackend,
    SecretRefError,
    client_installed,
)
from keys.secret_refs.gcp import GcpSecretManagerBackend
from keys.secret_refs.local import EnvBackend, FileBackend
from keys.secret_refs.vault import VaultBackend

__all__ = [
    "BACKENDS",
    "DESCRIPTIONS",
    "Failure",
    "SecretBackend",
    "SecretRefError",
    "clear_cache",
    "resolve_ref",
    "resolve_ref_for",
    "scheme_of",
    "validate_ref",
]

logger = logging.getLogger("inferia.secret_refs")

BACKENDS: dict[str, SecretBackend] = {
    backend.scheme: backend
    for backend in (
        EnvBackend(),
        FileBackend(),
        SsmBackend(),
        SecretsManagerBackend(),
        GcpSecretManagerBackend(),
        AzureKeyVaultBackend(),
        VaultBackend(),
    )
}


def _invalid(message: str, reason: str) -> ValidationError:
    return ValidationError(message, details={"secret_ref": [reason]})


def _normalized(ref: str) -> tuple[SecretBackend, str]:
    scheme, sep, name = ref.partition(":")
    backend = BACKENDS.get(scheme) if sep else None
    if backend is None or not name:
        raise _invalid(
            "Unknown secret reference",
            "Use one of: " + ", ".join(b.syntax for b in BACKENDS.values()),
        )
    try:
        canonical_name = backend.canonical(name)
    except ValueError as exc:
        raise _invalid(f"Malformed {scheme} secret reference", f"{backend.syntax}: {exc}") from exc
    return backend, canonical_name


def _allowed(ref: str) -> tuple[SecretBackend, str]:
    backend, name = _normalized(ref)
    canonical = f"{backend.scheme}:{name}"
    allowed = [prefix for prefix in settings.INFERIA_SECRET_REF_ALLOWLIST if prefix]
    if not any(canonical.startswith(prefix) for prefix in allowed):
        raise _invalid(
            "This secret reference is not allowed by the operator",
            "Not inside INFERIA_SECRET_REF_ALLOWLIST.",
        )
    return backend, canonical


def validate_ref(ref: str) -> str:
    """Return the canonical reference, or raise VALIDATION_ERROR when it is malformed,
    outside ``INFERIA_SECRET_REF_ALLOWLIST`` or its backend's client is not installed.
    Does not contact the secret manager (a save never depends on, nor probes, it)."""
    backend, canonical = _allowed(ref)
    if not client_installed(backend.requires):
        raise _invalid(
            f"The {backend.scheme} client is not installed on this server",
            "Install inferia[secret-managers].",
        )
    return canonical


def scheme_of(ref: str) -> str:
    """The backend name of a stored reference (for messages and audit)."""
    return ref.partition(":")[0]


@dataclass
class _Entry:
    value: str | None
    # clock.time() until which the value (or the failure) is served without a fetch.
    fresh_until: float
    # clock.time() until which the value may stand in while the manager is unreachable.
    stale_until: float
    failure: SecretRefError | None = None


_CACHE: dict[str, _Entry] = {}
_LOCK = threading.Lock()


def clear_cache() -> None:
    """Forget every cached value and failure, and the clients (settings may have changed)."""
    with _LOCK:
        _CACHE.clear()
    aws.clear_clients()
    gcp.clear_clients()
    azure.clear_clients()


def _store(canonical: str, entry: _Entry) -> None:
    with _LOCK:
        if canonical not in _CACHE and len(_CACHE) >= settings.INFERIA_GATEWAY_CACHE_SIZE:
            now = clock.time()
            for stale in [k for k, e in _CACHE.items() if e.stale_until <= now]:
                _CACHE.pop(stale, None)
            while len(_CACHE) >= settings.INFERIA_GATEWAY_CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
        _CACHE[canonical] = entry


def resolve_ref_for(ref: str) -> tuple[str, float | None]:
    """The secret in clear and how many seconds it may be cached by the caller
    (``None``: the backend is not cached, the caller's own lifetime applies).

    The reference is checked against the allow-list again first. Raises
    ValidationError (no longer allowed) or SecretRefError (cannot resolve now)."""
    backend, canonical = _allowed(ref)
    scheme, name = canonical.split(":", 1)
    if not client_installed(backend.requires):
        raise SecretRefError(scheme, Failure.NOT_CONFIGURED, "client not installed")
    if not backend.cached:
        return backend.resolve(name), None
    now = clock.time()
    with _LOCK:
        entry = _CACHE.get(canonical)
    if entry is not None and now < entry.fresh_until:
        if entry.failure is not None:
            raise entry.failure
        if entry.value is not None:
            return entry.value, entry.fresh_until - now
    try:
        value_plaintext = backend.resolve(name)
    except SecretRefError as exc:
        logger.warning("secret reference failed: %s %s", scheme, exc.failure)
        failure_until = now + settings.INFERIA_SECRET_REF_FAILURE_SECONDS
        if (
            exc.failure == Failure.UNREACHABLE
            and entry is not None
            and entry.value is not None
            and now < entry.stale_until
        ):
            # Bounded grace: the manager is down, not saying no. Retry after the
            # failure lifetime; never past stale_until.
            entry.fresh_until = min(failure_until, entry.stale_until)
            _store(canonical, entry)
            return entry.value, entry.fresh_until - now
        # Not found / access denied / anything else: the old value ends here.
        _store(canonical, _Entry(None, failure_until, failure_until, exc))
        raise
    fresh_until = now + settings.INFERIA_SECRET_REF_TTL_SECONDS
    _store(
        canonical,
        _Entry(
            value_plaintext,
            fresh_until,
            fresh_until + settings.INFERIA_SECRET_REF_STALE_SECONDS,
        ),
    )
    return value_plaintext, float(settings.INFERIA_SECRET_REF_TTL_SECONDS)


def resolve_ref(ref: str) -> str:
    """Resolve a stored reference (checked against the allowlist again at use)."""
    return resolve_ref_for(ref)[0]
