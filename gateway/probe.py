"""The provider "test connection": one cheap call (a one-token chat with the account's
first enabled model) through the gateway's own path: its adapter builds the request,
``gateway.http`` sends it with the org's SSRF policy and without redirects. The result
is ok or a sanitized error (never the secret); the attempt is audited."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson

from audit import services as audit
from gateway import http, principals
from gateway.upstream import ADAPTERS
from inferia.request_meta import RequestMeta
from keys.models import ProviderAccount
from orgs.access import Access

PROBE_BODY = {"messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str
    status: int | None = None
    model: str = ""
    latency_ms: float = 0.0


async def _call(url: str, headers: dict[str, str], body: bytes, allowed) -> tuple[int, bytes, dict]:
    try:
        response = await http.post(url, headers, body, allowed_private_hosts=allowed)
        content = await response.read()
        return response.status, content, dict(response.headers)
    finally:
        await http.close_current()


def _probe(account: ProviderAccount, allowed: tuple[str, ...]) -> ProbeResult:
    from gateway.app import _sanitize, _upstream_error

    if not account.enabled_models:
        return ProbeResult(False, "Enable at least one model first: the test calls one.")
    entry = account.enabled_models[0]
    route = principals.route_of(account, entry)
    secret_plaintext = principals.secret_for(route)
    call = ADAPTERS[account.provider_type].prepare(
        route, "chat", dict(PROBE_BODY), secret_plaintext
    )
    started = time.monotonic()
    try:
        status, content, headers = asyncio.run(
            _call(call.url, call.headers, orjson.dumps(call.body), allowed)
        )
    except http.UpstreamRefused:
        return ProbeResult(
            False,
            "Refused: the base URL resolves to a private or link-local address this "
            "organization does not allow (Settings, private endpoints).",
            model=route.fqn,
        )
    except http.UpstreamTimeout:
        return ProbeResult(False, "The provider did not answer in time.", model=route.fqn)
    except http.UpstreamUnreachable as exc:
        return ProbeResult(
            False,
            f"Could not reach the provider ({_sanitize(str(exc), secret_plaintext)}).",
            model=route.fqn,
        )
    latency_ms = round((time.monotonic() - started) * 1000, 1)
    if 200 <= status < 300:
        return ProbeResult(
            True,
            f"Connected: {route.fqn} answered HTTP {status} in {latency_ms:.0f} ms.",
            status=status,
            model=route.fqn,
            latency_ms=latency_ms,
        )
    error = _upstream_error(status, content, secret_plaintext, headers)
    return ProbeResult(False, error.message, status=status, model=route.fqn)


def provider_account_test(
    *, access: Access, account: ProviderAccount, meta: RequestMeta | None = None
) -> ProbeResult:
    """Test one provider account's connection (``provider_account:manage``, as editing
    it); raises PERMISSION_DENIED without. Audited as
    ``provider_account:manage`` with ``op: test``, the outcome and the HTTP status only."""
    access.require_on("provider_account:manage", account)  # as for editing it
    result = _probe(account, tuple(access.policy.allowed_private_hosts))
    audit.record(
        action="provider_account:manage",
        outcome="success" if result.ok else "failure",
        org=access.org,
        actor=access.user,
        target=account,
        meta=meta,
        data={"op": "test", "ok": result.ok, "status": result.status, "model": result.model},
    )
    return result
