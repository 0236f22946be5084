"""The gateway's own HTTP/1.1 client (``gateway/http.py``) against scripted servers on
127.0.0.1: keep-alive reuse, the answer shapes HTTP allows (length, chunked, to the end
of the connection, gzip), and the faults (too large, silent, dropped, bad header, TLS
that does not verify). The whole gateway runs on it in every other gateway test."""

from __future__ import annotations

import asyncio
import gzip
import ssl
import subprocess
from collections.abc import Awaitable, Callable

import pytest

from gateway import http

ALLOWED = ("127.0.0.1",)
OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n{"ok": true}'


class Server:
    """Answers each request with ``answer(request_number)``; counts connections and
    requests; ``hold`` keeps the connection open after answering."""

    def __init__(self, answer: Callable[[int], bytes | None], *, hold: bool = True) -> None:
        self.answer, self.hold = answer, hold
        self.connections = 0
        self.requests: list[bytes] = []
        self.open_writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                reply = self.answer(len(self.requests))
                if reply is None:  # stay silent
                    await asyncio.sleep(3600)
                writer.write(reply)
                await writer.drain()
                if not self.hold:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/chat/completions"

    async def __aexit__(self, *exc) -> None:
        for writer in self.open_writers:
            writer.close()
        self.server.close()
        await http.close_current()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


async def _post(url: str, headers: dict[str, str] | None = None) -> http.UpstreamResponse:
    return await http.post(
        url, headers or {"Content-Type": "application/json"}, b"{}", allowed_private_hosts=ALLOWED
    )


def test_a_connection_is_reused_after_a_complete_answer():
    server = Server(lambda n: OK)

    async def test():
        async with server as url:
            for _ in range(5):
                response = await _post(url)
                assert (response.status, await response.read()) == (200, b'{"ok": true}')
        assert server.connections == 1
        assert len(server.requests) == 5

    run(test)


def test_the_request_on_the_wire_carries_the_headers_and_the_length():
    server = Server(lambda n: OK)

    async def test():
        async with server as url:
            response = await http.post(
                url,
                {"Authorization": "Bearer sk-test", "Content-Type": "application/json"},
                b'{"a": 1}',
                allowed_private_hosts=ALLOWED,
            )
            await response.read()
        (request,) = server.requests
        head, _, body = request.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
        assert b"Authorization: Bearer sk-test" in lines
        assert b"Content-Length: 8" in lines
        assert any(line.startswith(b"Host: 127.0.0.1:") for line in lines)
        assert not any(line.lower().startswith(b"accept-encoding") for line in lines)
        assert body == b'{"a": 1}'

    run(test)


def test_an_answer_that_asks_to_close_is_not_reused():
    closing = OK.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
    server = Server(lambda n: closing, hold=False)

    async def test():
        async with server as url:
            for _ in range(3):
                response = await _post(url)
                assert await response.read() == b'{"ok": true}'
        assert server.connections == 3

    run(test)


def test_chunked_and_to_the_end_of_the_connection_and_gzip_answers_are_read_whole():
    payload = b'{"choices": []}'
    packed = gzip.compress(payload)
    answers = {
        1: b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"cho\r\na\r\nices": []}\r\n0\r\n\r\n',
        2: b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
        + str(len(packed)).encode()
        + b"\r\n\r\n"
        + packed,
        3: b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + payload,
    }
    server = Server(lambda n: answers[n])

    async def test():
        async with server as url:
            for _ in range(2):
                response = await _post(url)
                assert await response.read() == payload
            assert server.connections == 1  # both reused one connection
            server.hold = False
            response = await _post(url)
            assert await response.read() == payload

    run(test)


def test_an_answer_over_the_size_cap_is_refused_declared_or_not(settings):
    settings.INFERIA_GATEWAY_MAX_UPSTREAM_BYTES = 1000
    big = b"x" * 5000
    answers = {
        1: b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + big,
        2: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n"
        + big
        + b"\r\n0\r\n\r\n",
        3: b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
        + str(len(gzip.compress(big))).encode()
        + b"\r\n\r\n"
        + gzip.compress(big),
    }
    server = Server(lambda n: answers[n])

    async def test():
        async with server as url:
            for _ in answers:
                response = await _post(url)
                with pytest.raises(http.UpstreamUnreachable, match="too large"):
                    await response.read()
        assert server.connections == 3  # each refused answer dropped its connection

    run(test)


def test_an_upstream_that_says_nothing_times_out_and_its_connection_is_dropped(settings):
    settings.INFERIA_GATEWAY_READ_TIMEOUT = 0.3
    server = Server(lambda n: None)

    async def test():
        async with server as url:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(http.UpstreamTimeout):
                await _post(url)
            assert 0.25 < loop.time() - started < 2
            assert not http._pool().open

    run(test)


def test_a_connection_dropped_mid_answer_is_unreachable_not_a_short_body():
    server = Server(
        lambda n: b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial', hold=False
    )

    async def test():
        async with server as url:
            response = await _post(url)
            with pytest.raises(http.UpstreamUnreachable, match="dropped"):
                await response.read()

    run(test)


def test_garbage_instead_of_http_is_unreachable():
    server = Server(lambda n: b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    async def test():
        async with server as url:
            with pytest.raises(http.UpstreamUnreachable):
                await _post(url)

    run(test)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer sk-x\r\nX-Injected: 1"},
        {"Authorization": "Bearer sk-x\nX-Injected: 1"},
        {"X-Bad Name": "1"},
        {"Authorization": "Bearer sk-\u2603"},
    ],
)
def test_a_header_that_could_inject_another_is_refused_before_anything_is_sent(headers):
    server = Server(lambda n: OK)

    async def test():
        async with server as url:
            with pytest.raises(http.UpstreamUnreachable, match="invalid request header"):
                await _post(url, headers)
        assert server.requests == []

    run(test)


def test_an_idle_connection_past_its_age_is_not_reused(monkeypatch):
    monkeypatch.setattr(http, "IDLE_SECONDS", 0.05)
    server = Server(lambda n: OK)

    async def test():
        async with server as url:
            await (await _post(url)).read()
            await asyncio.sleep(0.1)
            await (await _post(url)).read()
        assert server.connections == 2

    run(test)


def test_a_stream_read_to_its_end_returns_its_connection_and_one_cut_short_does_not():
    events = b"data: {}\n\ndata: [DONE]\n\n"
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "
        + str(len(events)).encode()
        + b"\r\n\r\n"
        + events
    )
    server = Server(lambda n: answer)

    async def test():
        async with server as url:
            response = await _post(url)
            assert [line async for line in response.lines()] == ["data: {}", "", "data: [DONE]", ""]
            response.close()
            response = await _post(url)  # reused
            response.close()  # closed before reading: dropped
            response = await _post(url)
            await response.read()
        assert server.connections == 2

    run(test)


@pytest.fixture
def tls_server(tmp_path):
    """A TLS server on 127.0.0.1 with a self-signed certificate (not in any trust store)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert


def test_https_verifies_the_certificate(tls_server, monkeypatch):
    context, cert = tls_server
    server = Server(lambda n: OK)

    async def test():
        tls = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=context)
        port = tls.sockets[0].getsockname()[1]
        url = f"https://127.0.0.1:{port}/v1/chat/completions"
        try:
            with pytest.raises(http.UpstreamUnreachable, match="could not connect"):
                await _post(url)
            assert server.requests == []
            trusting = ssl.create_default_context(cafile=str(cert))
            monkeypatch.setattr(http, "_tls", lambda: trusting)
            response = await _post(url)
            assert await response.read() == b'{"ok": true}'
        finally:
            for writer in server.open_writers:
                writer.close()
            tls.close()
            await http.close_current()

    run(test)
