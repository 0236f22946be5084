"""The SSRF guard runs when the gateway connects, not only when a base URL is saved:
DNS rebinding, a shrunken allow-list and the operator's cap take effect on the next
call; link-local and metadata addresses are never allowed, whatever an org lists."""

from __future__ import annotations

import asyncio

import pytest

from gateway import http
from keys import ssrf
from tests.gateway.conftest import assert_gateway_error

CHAT = [{"role": "user", "content": "hi"}]
METADATA = ["169.254.169.254", "169.254.0.1", "fe80::1", "100.100.100.200", "fd00:ec2::254"]


def _call(llm, key: str, model: str = "openai-main/gpt-4o"):
    return llm.post("/chat/completions", key, {"model": model, "messages": CHAT})


def test_a_host_that_rebinds_to_loopback_after_validation_is_refused_at_connect(
    llm, monkeypatch, upstream_requests
):
    """Saved while its name resolved to a public address; by the call it resolves to
    127.0.0.1 (the fake upstream), which the org does not list for that name."""
    port = llm.upstream.url.rsplit(":", 1)[1]
    with monkeypatch.context() as patched:
        patched.setattr(ssrf, "resolve_host", lambda host, port: ["93.184.216.34"])
        llm.add_account("rebind", "openai", f"http://localhost:{port}/v1", [{"name": "gpt-4o"}])
    llm.grant("authz_rules:\n  - models: ['openai-main/*', 'rebind/*']\n    users: [bob]\n")
    error = assert_gateway_error(_call(llm, llm.key(), "rebind/gpt-4o"), 502, "UPSTREAM_ERROR")
    assert "not allowed" in error["message"]
    assert upstream_requests == []


def test_removing_a_host_from_the_list_takes_effect_on_the_next_call(llm, upstream_requests):
    key = llm.key()
    assert _call(llm, key).status_code == 200  # a pooled connection to the fake now exists
    llm.org_settings(allowed_private_hosts=[])
    assert_gateway_error(_call(llm, key), 502, "UPSTREAM_ERROR")
    assert len(upstream_requests) == 1


def test_the_operators_cap_applies_to_saved_urls_and_at_connect(llm, settings, upstream_requests):
    key = llm.key()
    assert _call(llm, key).status_code == 200
    settings.INFERIA_PRIVATE_HOSTS_ALLOWED = ["10.0.0.0/8", "vllm.internal"]
    assert_gateway_error(_call(llm, key), 502, "UPSTREAM_ERROR")
    assert len(upstream_requests) == 1
    refused = llm.admin.post(
        "/api/v1/orgs/acme/provider-accounts",
        {
            "name": "again",
            "provider_type": "openai",
            "base_url": f"{llm.upstream.url}/v1",
            "models": [{"name": "gpt-4o"}],
            "secret": "sk-0123456789abcdef",
        },
        format="json",
    )
    assert refused.status_code == 400, refused.content
    assert "base_url" in refused.json()["error"]["details"]
    settings.INFERIA_PRIVATE_HOSTS_ALLOWED = ["127.0.0.0/8"]
    assert _call(llm, key).status_code == 200


@pytest.mark.parametrize("address", METADATA)
def test_metadata_and_link_local_addresses_are_never_allowed_even_when_listed(address):
    listed = [address, f"{address}:80", f"[{address}]:80"]
    assert not ssrf.address_allowed(address, host=address, port=80, allowed_private_hosts=listed)
    with pytest.raises(http.UpstreamRefused):
        asyncio.run(
            http.post(
                f"http://{address if ':' not in address else f'[{address}]'}/latest/meta-data/",
                {},
                b"",
                allowed_private_hosts=listed,
            )
        )


def test_a_listed_metadata_address_is_refused_as_a_base_url(llm):
    llm.org_settings(allowed_private_hosts=["169.254.169.254", "169.254.169.254:80"])
    refused = llm.admin.post(
        "/api/v1/orgs/acme/provider-accounts",
        {
            "name": "imds",
            "provider_type": "openai",
            "base_url": "http://169.254.169.254/v1",
            "models": [{"name": "gpt-4o"}],
            "secret": "sk-0123456789abcdef",
        },
        format="json",
    )
    assert refused.status_code == 400, refused.content
    assert "base_url" in refused.json()["error"]["details"]
