"""An access token's expiry holds on a cache hit too.

The gateway caches the resolver's result per credential; the principal carries
the credential's expiry (a key's ``expires_at``, a JWT's ``exp``) and every use
checks it, so a cached principal never outlives its token.
"""

from __future__ import annotations

import httpx
from django.conf import settings

from gateway import principals
from inferia import clock
from orgs.services import auth
from tests.gateway.conftest import assert_gateway_error


def _models(llm, raw: str) -> httpx.Response:
    return httpx.get(
        f"{llm.base_url}/models", headers={"Authorization": f"Bearer {raw}"}, timeout=30
    )


def test_expired_jwt_is_refused_on_a_cache_hit(cast, llm):
    raw = auth.token_pair_issue(user=cast.bob).access_token
    assert _models(llm, raw).status_code == 200
    assert principals.cached(raw, "") is not None  # the next request is a cache hit

    clock.advance(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds() + 1)

    assert_gateway_error(_models(llm, raw), 401, "AUTHENTICATION_FAILED")
    assert principals.cached(raw, "") is None  # and the stale entry is gone


def test_jwt_is_served_from_the_cache_until_it_expires(cast, llm):
    raw = auth.token_pair_issue(user=cast.bob).access_token
    assert _models(llm, raw).status_code == 200
    clock.advance(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds() - 5)
    assert _models(llm, raw).status_code == 200
    principal = principals.cached(raw, "")
    assert principal is not None and principal.credential_kind == "jwt"
    assert principal.expires_at is not None
