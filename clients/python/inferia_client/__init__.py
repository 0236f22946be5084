"""Inferia's client: sign in with the device flow (``inferia login``), then give the
OpenAI SDK a fresh short-lived gateway token on every call.

>>> import inferia_client
>>> client = inferia_client.openai_client()  # the last `inferia login`
>>> client.chat.completions.create(model="openai-main/gpt-4o", messages=[...])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

from inferia_client.auth import InferiaAuth
from inferia_client.device import LoginFailed, device_login
from inferia_client.session import NotSignedIn, Session
from inferia_client.store import CredentialsError, InsecureCredentialsFile

if TYPE_CHECKING:
    import openai

__all__ = [
    "CredentialsError",
    "InferiaAuth",
    "InsecureCredentialsFile",
    "LoginFailed",
    "NotSignedIn",
    "Session",
    "async_openai_client",
    "device_login",
    "gateway_url",
    "openai_client",
]

# The SDK insists on an api_key; InferiaAuth replaces the header on every request.
PLACEHOLDER_API_KEY = "inferia-short-lived-token"


def gateway_url(server: str) -> str:
    return f"{server.rstrip('/')}/api/llm/v1"


def _client_options(
    server: str | None, org: str | None, session: Session | None, client: Any
) -> dict[str, Any]:
    """What both factories give the SDK: the gateway's URL, the org header, and an httpx
    client whose ``auth`` is the session's ``InferiaAuth``."""
    session = session or Session(server)
    client.auth = InferiaAuth(session)
    return {
        "base_url": gateway_url(session.server),
        "api_key": PLACEHOLDER_API_KEY,
        "organization": (session.org if org is None else org) or None,
        # openai 3 types it as an httpx2 client and takes an httpx one as well (as 1.x did).
        "http_client": client,
    }


def openai_client(
    server: str | None = None,
    *,
    org: str | None = None,
    session: Session | None = None,
    http_client: httpx.Client | None = None,
    **options: Any,
) -> openai.OpenAI:
    """An ``openai.OpenAI`` on the Inferia gateway whose every request carries a fresh
    access token of the stored login (``server``: which login; ``org``: the
    ``OpenAI-Organization`` slug, default the one given to ``inferia login``).
    ``http_client``: your own ``httpx.Client`` (its ``auth`` is set); other options go
    to ``openai.OpenAI``."""
    import openai

    client = http_client or httpx.Client(timeout=options.get("timeout", 600.0))
    return openai.OpenAI(**_client_options(server, org, session, client), **options)


def async_openai_client(
    server: str | None = None,
    *,
    org: str | None = None,
    session: Session | None = None,
    http_client: httpx.AsyncClient | None = None,
    **options: Any,
) -> openai.AsyncOpenAI:
    """``openai_client`` for asyncio: an ``openai.AsyncOpenAI`` with the same auth."""
    import openai

    client = http_client or httpx.AsyncClient(timeout=options.get("timeout", 600.0))
    return openai.AsyncOpenAI(**_client_options(server, org, session, client), **options)
