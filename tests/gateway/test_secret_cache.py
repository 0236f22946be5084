"""The decrypted upstream secrets live in a short-lived, bounded in-process cache."""

from __future__ import annotations

from gateway import principals
from tests.gateway.conftest import UPSTREAM_SECRET


def test_the_secret_cache_is_bounded(llm, settings):
    settings.INFERIA_GATEWAY_CACHE_SIZE = 2
    for name in ("acct-one", "acct-two", "acct-three"):
        llm.add_account(name, "openai", f"{llm.upstream.url}/v1", [{"name": "gpt-4o"}])
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [bob]\n")
    principal = principals.build(llm.key(), "")
    routes = [principal.routes[f"{name}/gpt-4o"] for name in ("acct-one", "acct-two", "acct-three")]
    for route in routes:
        assert principals.secret_for(route) == UPSTREAM_SECRET
        assert len(principals._SECRETS) <= 2
    # The newest stays cached; the oldest was dropped.
    assert principals.secret_cached(routes[-1]) == (True, UPSTREAM_SECRET)
    assert principals.secret_cached(routes[0]) == (False, None)
