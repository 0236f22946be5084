"""Services and the audit log take a RequestMeta, built the same way at every edge."""

from __future__ import annotations

from inferia.request_meta import RequestMeta


def test_from_asgi_reads_address_agent_and_ignores_untrusted_forwarding(settings):
    settings.INFERIA_TRUSTED_PROXIES = ["10.0.0.1"]
    scope = {
        "client": ("198.51.100.7", 5000),
        "headers": [(b"user-agent", b"sdk/1.0"), (b"x-forwarded-for", b"203.0.113.9")],
    }
    meta = RequestMeta.from_asgi(scope, request_id="abc")
    assert meta == RequestMeta(ip="198.51.100.7", user_agent="sdk/1.0", request_id="abc")
    proxied = RequestMeta.from_asgi({**scope, "client": ("10.0.0.1", 1)})
    assert proxied.ip == "203.0.113.9"


def test_from_http_matches_a_django_request(rf):
    request = rf.get("/", HTTP_USER_AGENT="browser/2", REMOTE_ADDR="192.0.2.5")
    request.request_id = "rid-1"
    meta = RequestMeta.from_http(request)
    assert (meta.ip, meta.user_agent, meta.request_id) == ("192.0.2.5", "browser/2", "rid-1")
    assert RequestMeta.from_http(None) is None
