"""The client side of the OAuth 2.0 device authorization grant (RFC 8628)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from inferia_client.session import USER_AGENT, credentials_from_answer, error_text
from inferia_client.store import Credentials, CredentialsError

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_CLIENT_ID = "inferia-cli"
# RFC 8628 section 3.5: slow_down adds 5 seconds; a connection timeout backs off.
SLOW_DOWN_STEP_SECONDS = 5
MAX_BACKOFF_SECONDS = 60


class LoginFailed(CredentialsError):
    """The device sign-in did not end with tokens (denied, expired, refused)."""


@dataclass(frozen=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


def request_code(
    http: httpx.Client, server: str, *, client_id: str = DEFAULT_CLIENT_ID, org: str = ""
) -> DeviceCode:
    data = {"client_id": client_id}
    if org:
        data["org"] = org
    try:
        response = http.post(f"{server}/api/v1/auth/device/code", data=data)
    except httpx.HTTPError as exc:
        raise LoginFailed(f"cannot reach {server}: {type(exc).__name__}") from exc
    if response.status_code != 200:
        raise LoginFailed(f"the server refused the sign-in request ({error_text(response)})")
    body = response.json()
    return DeviceCode(
        device_code=str(body["device_code"]),
        user_code=str(body["user_code"]),
        verification_uri=str(body["verification_uri"]),
        verification_uri_complete=str(body.get("verification_uri_complete") or ""),
        expires_in=int(body["expires_in"]),
        interval=max(1, int(body.get("interval") or 5)),
    )


def poll_for_tokens(
    http: httpx.Client,
    server: str,
    code: DeviceCode,
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    now: Callable[[], float] = time.time,
) -> Credentials:
    """Poll every ``interval`` seconds until a person answers; ``slow_down`` lengthens the
    interval by 5 seconds for good, a failed connection doubles it (up to a minute)."""
    interval = code.interval
    deadline = monotonic() + code.expires_in
    form = {"grant_type": GRANT_TYPE, "device_code": code.device_code, "client_id": client_id}
    while True:
        sleep(interval)
        if monotonic() > deadline:
            raise LoginFailed("the code expired before it was approved; run `inferia login` again")
        sent_at = now()
        try:
            response = http.post(f"{server}/api/v1/auth/device/token", data=form)
        except httpx.TransportError:
            interval = min(interval * 2, MAX_BACKOFF_SECONDS)
            continue
        if response.status_code == 200:
            return credentials_from_answer(response.json(), sent_at)
        try:
            body = response.json()
        except ValueError:
            body = {}
        error = body.get("error") if isinstance(body, dict) else None
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval = max(interval + SLOW_DOWN_STEP_SECONDS, int(body.get("interval") or 0))
            continue
        if error == "access_denied":
            raise LoginFailed("the sign-in was denied in the browser")
        if error == "expired_token":
            raise LoginFailed("the code expired before it was approved; run `inferia login` again")
        raise LoginFailed(f"the server refused the sign-in ({error_text(response)})")


def device_login(
    server: str,
    *,
    org: str = "",
    client_id: str = DEFAULT_CLIENT_ID,
    show: Callable[[DeviceCode], None],
    sleep: Callable[[float], None] = time.sleep,
    transport: httpx.BaseTransport | None = None,
) -> Credentials:
    """The whole flow: ask for a code, ``show`` it to the person, poll until answered."""
    with httpx.Client(
        timeout=30.0, transport=transport, headers={"User-Agent": USER_AGENT}
    ) as http:
        code = request_code(http, server, client_id=client_id, org=org)
        show(code)
        return poll_for_tokens(http, server, code, client_id=client_id, sleep=sleep)
