"""A signed-in session: a fresh short-lived access token on demand.

The access token is refreshed shortly before it expires (and on demand after a 401),
with the refresh token kept in the store. Refresh tokens rotate and a reused one ends
the whole login on the server, so a refresh is done by one caller at a time: a
thread lock within the process and a file lock across processes sharing a login;
whoever gets the lock re-reads the store first, and uses a token another process
has just obtained instead of refreshing again.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from filelock import FileLock

from inferia_client.store import (
    Credentials,
    CredentialsError,
    Store,
    config_dir,
    ensure_private_dir,
    open_store,
    profile_for,
)

# Refresh this long before the access token expires (a fifth of its life when shorter).
REFRESH_MARGIN_SECONDS = 60.0
USER_AGENT = "inferia-client/0.1"


class NotSignedIn(CredentialsError):
    """No login, or it has ended (logout, password change, deactivation, its lifetime)."""


def _jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: only to learn its lifetime (the server verifies)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _lifetime_seconds(answer: dict[str, Any], access_token: str) -> float:
    """How long the access token lives, independent of this machine's clock: its own
    ``exp - iat``, else ``expires_in``, else ``expires_at`` against the local clock."""
    claims = _jwt_claims(access_token)
    exp, iat = claims.get("exp"), claims.get("iat")
    if isinstance(exp, int | float) and isinstance(iat, int | float) and exp > iat:
        return float(exp - iat)
    if isinstance(answer.get("expires_in"), int | float):
        return float(answer["expires_in"])
    expires_at = answer.get("expires_at")
    if isinstance(expires_at, str):
        try:
            parsed = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
        except ValueError:
            return 0.0
        return max(0.0, parsed.timestamp() - time.time())
    return 0.0


def credentials_from_answer(answer: Any, sent_at: float) -> Credentials:
    """Credentials from a token answer (device grant or refresh) received for a request
    sent at ``sent_at`` (local clock): the expiry counts from then, so it errs early."""
    if not isinstance(answer, dict) or not answer.get("access_token"):
        raise CredentialsError("the server's token answer is malformed")
    access_token = str(answer["access_token"])
    lifetime = _lifetime_seconds(answer, access_token)
    margin = min(REFRESH_MARGIN_SECONDS, lifetime / 5)
    user = answer.get("user")
    if not isinstance(user, dict):
        user = {}
    return Credentials(
        refresh_token=str(answer["refresh_token"]),
        access_token=access_token,
        access_expires_at=sent_at + lifetime - margin,
        username=str(user.get("username", "")),
    )


def error_text(response: httpx.Response) -> str:
    """The server's words for a refusal: the contract's envelope or OAuth's shape."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return f"{error.get('code', 'ERROR')}: {error.get('message', '')}"
    if isinstance(error, str):
        return f"{error}: {body.get('error_description', '')}"
    return f"HTTP {response.status_code}"


class Session:
    """One server's login. ``Session()`` uses the last ``inferia login``; pass ``server``
    (and ``org``) to pick another stored login. Thread-safe; share one per process."""

    def __init__(
        self,
        server: str | None = None,
        *,
        org: str | None = None,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        profile = profile_for(server)
        self.server = profile.server
        self.org = profile.org if org is None else org
        self._store = store or open_store(profile.store)
        self._clock = clock
        self._lock = threading.Lock()
        lock_path = ensure_private_dir(config_dir()) / "credentials.lock"
        self._file_lock = FileLock(str(lock_path))
        self._credentials: Credentials | None = None
        self._http = httpx.Client(
            timeout=timeout, transport=transport, headers={"User-Agent": USER_AGENT}
        )

    def close(self) -> None:
        self._http.close()

    def _fresh(self, credentials: Credentials) -> bool:
        return credentials.access_expires_at > self._clock()

    def cached_token(self) -> str | None:
        """The in-memory access token when it is fresh (no I/O, no lock: async callers
        use this first and go to a thread only when a refresh is due)."""
        credentials = self._credentials
        if credentials is None or not self._fresh(credentials):
            return None
        return credentials.access_token

    def access_token(self, *, force: bool = False, stale: str | None = None) -> str:
        """A fresh access token. ``force``: the server refused ``stale`` (revoked, or its
        clock disagrees), so get a new one unless another caller already has.

        Raises NotSignedIn when there is no login or the server ended it (the stored
        login is then forgotten), CredentialsError for other failures.
        """
        with self._lock:
            current = self._credentials
            if not force and current is not None and self._fresh(current):
                return current.access_token
            with self._file_lock:
                stored = self._store.load(self.server)
                if stored is None:
                    raise NotSignedIn(f"not signed in to {self.server}: run `inferia login`")
                if self._fresh(stored) and (not force or stored.access_token != stale):
                    self._credentials = stored
                    return stored.access_token
                renewed = self._refresh(stored)
                self._store.save(self.server, renewed)
                self._credentials = renewed
                return renewed.access_token

    def _refresh(self, stored: Credentials) -> Credentials:
        sent_at = self._clock()
        try:
            response = self._http.post(
                f"{self.server}/api/v1/auth/refresh", json={"refresh_token": stored.refresh_token}
            )
        except httpx.HTTPError as exc:
            raise CredentialsError(
                f"cannot reach {self.server} to refresh the token: {type(exc).__name__}"
            ) from exc
        if response.status_code == 401:
            self._store.delete(self.server)
            raise NotSignedIn(
                f"the sign-in to {self.server} has ended ({error_text(response)}); "
                "run `inferia login` again"
            )
        if response.status_code != 200:
            raise CredentialsError(f"refreshing the token failed: {error_text(response)}")
        renewed = credentials_from_answer(response.json(), sent_at)
        if not renewed.username:
            renewed.username = stored.username
        return renewed

    def get(self, path: str) -> httpx.Response:
        """GET an API path with a fresh access token (``inferia whoami``)."""
        from inferia_client.auth import InferiaAuth

        return self._http.get(f"{self.server}{path}", auth=InferiaAuth(self))
