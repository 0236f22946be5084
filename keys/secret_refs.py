"""Secret references: an upstream secret kept outside Inferia (``env:NAME``, ``file:/path``).

References are the operator's, not the tenant's: one resolves only when it
starts with a prefix listed in ``INFERIA_SECRET_REF_ALLOWLIST`` (for example
``env:INFERIA_UPSTREAM_`` or ``file:/run/secrets/``). A backend is a small
object with ``scheme`` and ``resolve(name)``; AWS SSM, GCP Secret Manager or
Azure Key Vault plug in by registering one more backend.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from django.conf import settings

from inferia.errors import ValidationError


class SecretRefError(Exception):
    """The reference cannot be resolved now (missing variable or file)."""


class SecretBackend(Protocol):
    scheme: str

    def resolve(self, name: str) -> str: ...


class EnvBackend:
    scheme = "env"

    def resolve(self, name: str) -> str:
        value = os.environ.get(name)
        if not value:
            raise SecretRefError(f"environment variable {name} is not set")
        return value


class FileBackend:
    scheme = "file"

    def resolve(self, name: str) -> str:
        path = Path(name)
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise SecretRefError(f"secret file {name} cannot be read") from exc


BACKENDS: dict[str, SecretBackend] = {
    backend.scheme: backend for backend in (EnvBackend(), FileBackend())
}


def _normalized(ref: str) -> tuple[str, str]:
    scheme, sep, name = ref.partition(":")
    if not sep or scheme not in BACKENDS or not name:
        raise ValidationError(
            "Unknown secret reference",
            details={"secret_ref": [f"Use one of: {', '.join(f'{s}:NAME' for s in BACKENDS)}"]},
        )
    if scheme == "file":
        # Resolve .. and symlinks before the prefix check.
        name = os.path.realpath(name)
    return scheme, name


def validate_ref(ref: str) -> str:
    """Return the canonical reference, or raise VALIDATION_ERROR when it is not allowed."""
    scheme, name = _normalized(ref)
    canonical = f"{scheme}:{name}"
    allowed = [prefix for prefix in settings.INFERIA_SECRET_REF_ALLOWLIST if prefix]
    if not any(canonical.startswith(prefix) for prefix in allowed):
        raise ValidationError(
            "This secret reference is not allowed by the operator",
            details={"secret_ref": ["Not inside INFERIA_SECRET_REF_ALLOWLIST."]},
        )
    return canonical


def resolve_ref(ref: str) -> str:
    """Resolve a stored reference (checked against the allowlist again at use)."""
    canonical = validate_ref(ref)
    scheme, name = canonical.split(":", 1)
    return BACKENDS[scheme].resolve(name)
