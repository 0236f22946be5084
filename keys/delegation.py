"""Delegated credentials: server-side work acting as the person who asked for it.

Knowledge-base ingestion embeds documents through the gateway's own path (its
authorization, limits, quotas, cost and audit) as the uploader, long after the
upload request ended. The worker mints a short-lived token for that: ``ifd_`` and a
signed payload naming the org, the uploader (a user, or the API key they used) and
the one model it may call. It never leaves the server (the worker hands it to the
gateway application in-process) and only the gateway accepts it
(``keys.resolver.authenticate(raw, delegated=True)``); the API edges refuse it like
any malformed credential.

At every use the resolver rebuilds the uploader's Access from the database: a key
revoked, a member removed, a permission or an access rule withdrawn since the upload
all take effect, and the token's ``model`` bound narrows what the Access may call to
the knowledge base's embedding model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core import signing

from inferia.errors import AuthenticationFailed

PREFIX = "ifd_"
SALT = "inferia.keys.delegation"
MAX_AGE_SECONDS = 600


@dataclass(frozen=True)
class Delegation:
    org_id: str
    user_id: str | None
    key_id: str | None
    model: str


def looks_delegated(raw: str) -> bool:
    return raw.startswith(PREFIX)


def mint(*, org_id: Any, model: str, user_id: Any = None, key_id: Any = None) -> str:
    """A token for ``model`` as the user (or the key), valid ``MAX_AGE_SECONDS``."""
    if user_id is None and key_id is None:
        raise ValueError("a delegation names a user or an API key")
    payload = {
        "o": str(org_id),
        "u": str(user_id) if user_id is not None and key_id is None else None,
        "k": str(key_id) if key_id is not None else None,
        "m": model,
    }
    return PREFIX + signing.dumps(payload, salt=SALT, compress=False)


def verify(raw: str) -> Delegation:
    """The delegation ``raw`` carries; AUTHENTICATION_FAILED when forged, altered or old
    (``signing`` compares the signature in constant time)."""
    try:
        payload = signing.loads(raw[len(PREFIX) :], salt=SALT, max_age=MAX_AGE_SECONDS)
    except signing.SignatureExpired as exc:
        raise AuthenticationFailed("Delegated credential has expired") from exc
    except signing.BadSignature as exc:
        raise AuthenticationFailed("Delegated credential is not valid") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("m"), str):
        raise AuthenticationFailed("Delegated credential is not valid")
    return Delegation(
        org_id=str(payload.get("o")),
        user_id=payload.get("u"),
        key_id=payload.get("k"),
        model=payload["m"],
    )
