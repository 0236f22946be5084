"""The shared upstream session keeps no cookies: one org's upstream Set-Cookie never
rides along on later calls (of any org) to that host."""

from __future__ import annotations

CHAT = [{"role": "user", "content": "hi"}]


def test_set_cookie_from_an_upstream_is_not_sent_again(llm, upstream_requests):
    llm.grant("authz_rules:\n  - models: [openai-main/*]\n    users: [bob]\n")
    client = llm.sdk(llm.key())
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="openai-main/fake-set-cookie", messages=CHAT
        )
        assert raw.http_response.status_code == 200
        # Nor does the upstream's cookie reach the gateway's client.
        assert "set-cookie" not in raw.headers
    calls = [r for r in upstream_requests if r["path"].endswith("/chat/completions")]
    assert len(calls) == 2
    assert all("cookie" not in {name.lower() for name in call["headers"]} for call in calls)
