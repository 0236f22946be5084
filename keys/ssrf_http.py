"""An httpx client for server-side calls to URLs a tenant configured (single sign-on
discovery, key sets, token and userinfo endpoints, SAML metadata), held to the SSRF
rule of ``keys/ssrf.py``.

``guarded_client(allowed_private_hosts=..., ...)`` returns an ``httpx.Client`` that:

- resolves each host itself when it opens a connection, checks every address with
  ``ssrf.check_addresses`` (the one rule: public addresses pass, private ones only
  when the org lists the host and the operator's cap covers it, link-local and
  metadata never) and connects to exactly those addresses (pinned: a DNS answer
  that changes after the check cannot slip a private address in). The TLS name
  stays the URL's host, so certificates are verified as usual;
- follows no redirects, keeps no cookies across clients, ignores proxy variables
  of the environment (``trust_env=False``: nothing outside the configuration steers
  where a client secret goes);
- has timeouts, asks for an unencoded body (``Accept-Encoding: identity``) and
  refuses a compressed one (a small gzip body could inflate past any cap), and
  stops reading a body past ``max_response_bytes``.

A refused address raises :class:`AddressRefused`, an over-long body
:class:`ResponseTooLarge`; both are ``httpx.TransportError``, like every other
fault of the client. One client serves one operation of one org and is closed
after it, so no pooled connection outlives the org's list.

Why a network backend rather than a check before the request: the check must hold
for the connection actually opened, and httpcore's backend is where the address is
chosen. httpx's transport has no parameter for it, so ``_GuardedTransport``
replaces the transport's connection pool with one built on that backend (httpx is
pinned; ``tests/sso/test_oidc_ssrf.py`` fails if the guard stops applying).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Iterator

import httpcore
import httpx

from inferia.errors import ValidationError
from keys import ssrf


class AddressRefused(httpx.TransportError):
    """The SSRF rule refused every address the connection could use."""


class ResponseTooLarge(httpx.TransportError):
    """The body is larger than the client's ``max_response_bytes``."""


class _GuardedBackend(httpcore.SyncBackend):
    def __init__(self, allowed_private_hosts: tuple[str, ...]) -> None:
        self._allowed = allowed_private_hosts

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = ssrf.resolve_host(host, port)
        except ValidationError:
            raise httpx.ConnectError(f"{host} does not resolve") from None
        try:
            ssrf.check_addresses(host, port, addresses, self._allowed)
        except ValidationError as exc:
            raise AddressRefused(f"{host}:{port} refused: {exc.message}") from None
        last_error: Exception = AddressRefused(f"{host}:{port} has no address")
        for address in addresses:
            try:
                return super().connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        raise last_error


class _CappedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, limit: int) -> None:
        self._inner = inner
        self._limit = limit

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self._inner:
            received += len(chunk)
            if received > self._limit:
                raise ResponseTooLarge(f"response body over {self._limit} bytes")
            yield chunk

    def close(self) -> None:
        self._inner.close()


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, *, allowed_private_hosts: tuple[str, ...], max_response_bytes: int) -> None:
        super().__init__(trust_env=False, retries=0)
        self._max_response_bytes = max_response_bytes
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=4,
            network_backend=_GuardedBackend(allowed_private_hosts),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        declared = response.headers.get("content-length", "")
        too_long = declared.isdigit() and int(declared) > self._max_response_bytes
        if encoding != "identity" or too_long:
            response.close()
            if too_long:
                raise ResponseTooLarge(f"response body over {self._max_response_bytes} bytes")
            raise httpx.DecodingError("compressed response refused (identity was asked for)")
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_CappedStream(
                typing.cast(httpx.SyncByteStream, response.stream), self._max_response_bytes
            ),
            extensions=response.extensions,
        )


def guarded_client(
    *,
    allowed_private_hosts: Iterable[str],
    timeout_seconds: float = 10.0,
    max_response_bytes: int = 1_000_000,
) -> httpx.Client:
    """A client whose every connection passes the SSRF rule (see the module docstring).

    Use it as a context manager, for one operation of one org.
    """
    transport = _GuardedTransport(
        allowed_private_hosts=tuple(allowed_private_hosts),
        max_response_bytes=max_response_bytes,
    )
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(timeout_seconds),
        follow_redirects=False,
        trust_env=False,
        headers={"Accept-Encoding": "identity", "User-Agent": "inferia"},
    )
