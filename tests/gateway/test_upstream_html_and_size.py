"""An upstream that answers an HTML page (a proxy's error or login page) or more
than ``INFERIA_GATEWAY_MAX_UPSTREAM_BYTES``: 502 in the envelope, no markup in the
message, the oversized answer dropped unread (the fault suite runs these under load)."""

from __future__ import annotations

from gateway.fake_upstream import HUGE_BYTES
from tests.gateway.conftest import assert_gateway_error

CHAT = [{"role": "user", "content": "hi"}]


def _proxy(llm) -> str:
    models = [{"name": name} for name in ("fake-html-200", "fake-html-503", "fake-huge")]
    llm.add_account("proxy", "openai", f"{llm.upstream.url}/v1", models)
    llm.grant("authz_rules:\n  - models: ['openai-main/*', 'proxy/*']\n    users: [bob]\n")
    return llm.key()


def test_an_html_page_is_502_without_its_markup(llm):
    key = _proxy(llm)
    for model in ("fake-html-200", "fake-html-503"):
        response = llm.post("/chat/completions", key, {"model": f"proxy/{model}", "messages": CHAT})
        error = assert_gateway_error(response, 502, "UPSTREAM_ERROR")
        assert "<" not in error["message"] and "nginx" not in error["message"], error


def test_an_answer_over_the_size_limit_is_502(llm, settings):
    key = _proxy(llm)
    assert HUGE_BYTES > settings.INFERIA_GATEWAY_MAX_UPSTREAM_BYTES
    response = llm.post("/chat/completions", key, {"model": "proxy/fake-huge", "messages": CHAT})
    assert_gateway_error(response, 502, "UPSTREAM_ERROR")
    # Under a higher limit the same answer passes: the limit is what refused it.
    settings.INFERIA_GATEWAY_MAX_UPSTREAM_BYTES = HUGE_BYTES * 2
    response = llm.post("/chat/completions", key, {"model": "proxy/fake-huge", "messages": CHAT})
    assert response.status_code == 200, response.text[:300]
