"""Embeddings for knowledge bases, through the gateway's own path.

Every embedding call (a document's chunks at ingestion, a query at search time) is an
ordinary ``POST /v1/embeddings`` handled by the gateway application itself
(``gateway.app.application``), in-process: the same authentication, access rules,
rate limits, quotas, cost, usage record and audit as a developer's call, attributed to
the person or key it is made for. Nothing here decides access a second time.

- ``embed_as``: server-side work acting for an uploader or a searcher, with a
  short-lived delegated credential (``keys.delegation``) bound to the one model;
- ``embed_with_credential`` / ``aembed_with_credential``: the caller's own credential
  (the gateway's chat retrieval uses the async form inside its own request).

Errors come back as the gateway answered them (403 for a model the caller may not
use, 429 for a limit, 502 for an upstream failure), as ``EmbeddingRefused``.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import orjson

from inferia.errors import ErrorCode, InferiaError
from inferia.store import sync
from keys import delegation

PATH = "/api/llm/v1/embeddings"
USER_AGENT = b"inferia-knowledge/1"
TIMEOUT_SECONDS = 120.0


class EmbeddingRefused(InferiaError):
    """The gateway refused or failed an embedding call; carries its status and code."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message, retry_after=retry_after)
        self.status = status
        try:
            self.code = ErrorCode(code)
        except ValueError:
            self.code = ErrorCode.UPSTREAM_ERROR


def _scope(raw: str, org_hint: str, body: bytes) -> dict[str, Any]:
    headers = [
        (b"authorization", b"Bearer " + raw.encode()),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"user-agent", USER_AGENT),
    ]
    if org_hint:
        headers.append((b"openai-organization", org_hint.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        # In-process: never on the network, so no TLS to require of it.
        "scheme": "https",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": ("inferia-internal", 443),
    }


async def _call(raw: str, org_hint: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    from gateway.app import application  # the gateway builds on keys and knowledge

    sent = False
    status = 0
    headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message.get("headers", []):
                headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await application(_scope(raw, org_hint, body), receive, send)
    return status, headers, b"".join(chunks)


def _vectors(status: int, headers: dict[str, str], payload: bytes, count: int) -> list[list[float]]:
    try:
        data = orjson.loads(payload) if payload else {}
    except orjson.JSONDecodeError:
        data = {}
    if status != 200:
        error = data.get("error") if isinstance(data, dict) else None
        error = error if isinstance(error, dict) else {}
        retry = headers.get("retry-after")
        raise EmbeddingRefused(
            status or 502,
            str(error.get("code") or ErrorCode.UPSTREAM_ERROR),
            f"Embedding failed: {error.get('message') or f'HTTP {status}'}",
            retry_after=int(retry) if retry and retry.isdigit() else None,
        )
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) != count:
        raise EmbeddingRefused(502, "UPSTREAM_ERROR", "Embedding failed: wrong number of vectors")
    out: list[list[float] | None] = [None] * count
    dims = None
    for position, item in enumerate(items):
        vector = item.get("embedding") if isinstance(item, dict) else None
        index = item.get("index", position) if isinstance(item, dict) else position
        if (
            not isinstance(vector, list)
            or not vector
            or not isinstance(index, int)
            or not 0 <= index < count
            or out[index] is not None
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in vector)
            or (dims is not None and len(vector) != dims)
        ):
            raise EmbeddingRefused(502, "UPSTREAM_ERROR", "Embedding failed: malformed vector")
        dims = len(vector)
        out[index] = [float(v) for v in vector]
    return [v for v in out if v is not None]


def _body(model: str, texts: Sequence[str]) -> bytes:
    return orjson.dumps({"model": model, "input": list(texts)})


async def aembed_with_credential(
    raw: str, model: str, texts: Sequence[str], *, org_hint: str = ""
) -> list[list[float]]:
    """Embed ``texts`` with ``model`` as the holder of ``raw`` (from async code)."""
    status, headers, payload = await _call(raw, org_hint, _body(model, texts))
    return _vectors(status, headers, payload, len(texts))


def embed_with_credential(
    raw: str, model: str, texts: Sequence[str], *, org_hint: str = ""
) -> list[list[float]]:
    """Embed ``texts`` with ``model`` as the holder of ``raw`` (from sync code: runs on
    the process's store loop, where the gateway's connection pools live)."""
    body = _body(model, texts)
    # In an empty context: the coroutine would otherwise inherit this thread's, and under
    # an ASGI server a Django view's context names its request's thread-sensitive
    # executor, the very thread now waiting here, which the gateway's ORM calls would
    # then wait for: a deadlock.
    status, headers, payload = contextvars.Context().run(
        sync.run, lambda: _call(raw, org_hint, body), timeout=TIMEOUT_SECONDS
    )
    return _vectors(status, headers, payload, len(texts))


_TOKENS: dict[tuple, tuple[str, float]] = {}
_TOKENS_LOCK = threading.Lock()


def _delegated(org, model: str, user, api_key) -> str:
    """A delegated credential for (org, model, user or key), reused for half its life so
    the gateway's principal cache serves the next calls (a revoke still bumps the org's
    epoch, which drops that cache; the resolver rebuilds from the database)."""
    ident = (str(org.pk), model, str(getattr(user, "pk", "")), str(getattr(api_key, "pk", "")))
    now = time.monotonic()
    with _TOKENS_LOCK:
        cached = _TOKENS.get(ident)
        if cached is not None and now - cached[1] < delegation.MAX_AGE_SECONDS / 2:
            return cached[0]
        raw = delegation.mint(
            org_id=org.pk,
            model=model,
            user_id=getattr(user, "pk", None),
            key_id=getattr(api_key, "pk", None),
        )
        if len(_TOKENS) > 1024:
            _TOKENS.clear()
        _TOKENS[ident] = (raw, now)
        return raw


def embed_as(
    *, org, model: str, texts: Sequence[str], user=None, api_key=None
) -> list[list[float]]:
    """Embed as a user, or as an API key (a service account's or a person's): what the
    upload or the query was made with."""
    raw = _delegated(org, model, user, api_key)
    return embed_with_credential(raw, model, texts, org_hint=org.slug)


def embed_for_access(access, model: str, texts: Sequence[str]) -> list[list[float]]:
    """``embed_as`` the principal of an ``Access`` (an API call's caller)."""
    return embed_as(
        org=access.org, model=model, texts=texts, user=access.user, api_key=access.api_key
    )
