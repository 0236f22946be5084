"""The shared upstream client keeps no cookies: one org's upstream Set-Cookie never
rides along on later calls (of any org) to that host."""

from __future__ import annotations

import asyncio

import httpx

from gateway.http import client


def test_set_cookie_from_an_upstream_is_not_sent_again():
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"set-cookie": "session=org-a-secret; Path=/"}, json={})

    async def go():
        shared = client()
        shared._transport = httpx.MockTransport(handler)  # the wire only; jar and policy are the client's
        for _ in range(2):
            await shared.post("http://upstream.test/v1/chat/completions", json={})
        return len(shared.cookies)

    assert asyncio.run(go()) == 0
    assert seen == [None, None]
