"""What every secret backend shares: the failure classes and the backend shape."""

from __future__ import annotations

import importlib
from enum import StrEnum
from typing import Protocol


class Failure(StrEnum):
    NOT_FOUND = "not_found"
    ACCESS_DENIED = "access_denied"
    UNREACHABLE = "unreachable"
    NOT_CONFIGURED = "not_configured"
    INVALID_VALUE = "invalid_value"
    REFUSED = "refused"


DESCRIPTIONS = {
    Failure.NOT_FOUND: "secret not found",
    Failure.ACCESS_DENIED: "access denied",
    Failure.UNREACHABLE: "secret manager unreachable",
    Failure.NOT_CONFIGURED: "secret manager client not installed or not configured",
    Failure.INVALID_VALUE: "secret has no usable value",
    Failure.REFUSED: "secret manager refused the request",
}


class SecretRefError(Exception):
    """The reference cannot be resolved now.

    The text names the backend and the failure class, plus a detail Inferia
    wrote itself: never the secret, never the vendor's exception text (it may
    carry signed URLs, tokens or account ids)."""

    def __init__(self, scheme: str, failure: Failure, detail: str = "") -> None:
        self.scheme = scheme
        self.failure = failure
        text = f"{scheme} secret reference: {DESCRIPTIONS[failure]}"
        if detail:
            text += f" ({detail})"
        super().__init__(text)


class SecretBackend(Protocol):
    scheme: str
    # One line for the error that lists the accepted forms.
    syntax: str
    # Modules of the vendor's client; a reference to a backend without them is
    # refused at save (VALIDATION_ERROR) and fails at use (NOT_CONFIGURED).
    requires: tuple[str, ...]
    # Remote managers are cached (INFERIA_SECRET_REF_TTL_SECONDS); env/file are read each time.
    cached: bool

    def canonical(self, name: str) -> str:
        """The one spelling of ``name`` the allow-list is checked against; raises
        ValueError with a reason when the name is malformed."""
        ...

    def resolve(self, name: str) -> str:
        """The secret in clear for a canonical name; raises SecretRefError."""
        ...


def client_installed(modules: tuple[str, ...]) -> bool:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            return False
    return True


def segments_clean(path: str) -> bool:
    """No empty, ``.`` or ``..`` segment: a prefix in the allow-list means what it says."""
    return all(part not in ("", ".", "..") for part in path.split("/"))
