"""``InferiaAuth``: an ``httpx.Auth`` that puts a fresh access token on every request.

Sync and async: the async flow takes the in-memory token without blocking and runs a
due refresh in a worker thread, so the event loop never waits on the refresh's I/O
and concurrent coroutines and threads share one refresh (``Session``'s locks). A 401
from the server (token revoked, or clocks disagree) triggers one forced refresh and
one retry of the request.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import anyio.to_thread
import httpx

from inferia_client.session import Session


class InferiaAuth(httpx.Auth):
    # The body is kept so that the request can be sent again after a refresh.
    requires_request_body = True

    def __init__(self, session: Session) -> None:
        self.session = session

    @staticmethod
    def _authorize(request: httpx.Request, token: str) -> None:
        request.headers["Authorization"] = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        # (httpx's sync_auth_flow reads the body first, then drives this generator.)
        token = self.session.access_token()
        self._authorize(request, token)
        response = yield request
        if response.status_code == 401:
            self._authorize(request, self.session.access_token(force=True, stale=token))
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()  # what httpx's default async flow does for requires_request_body
        token = self.session.cached_token()
        if token is None:
            token = await anyio.to_thread.run_sync(self.session.access_token)
        self._authorize(request, token)
        response = yield request
        if response.status_code == 401:
            stale = token

            def renew() -> str:
                return self.session.access_token(force=True, stale=stale)

            self._authorize(request, await anyio.to_thread.run_sync(renew))
            yield request
