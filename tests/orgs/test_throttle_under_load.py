"""The login throttle when Redis answers late (a loaded machine): the caller fails
closed (503) and the count that reached Redis is neither lost nor moved to another
window; a test's clean slate is really clean before it starts."""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest

from inferia import store
from tests.conftest import PASSWORD, redis_reachable, require_or_skip, to_step_start


class SlowReplies:
    """A TCP proxy on 127.0.0.1 to the real Redis: commands pass at once; the first
    reply of a connection (its SELECT) too, every later one is held back ``delay``
    seconds (a server or machine under load)."""

    def __init__(self, host: str, port: int, delay: float) -> None:
        self.target = (host, port)
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, self.delay), daemon=True
            ).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, delay: float) -> None:
        first = True
        try:
            while data := source.recv(65536):
                if not first:
                    time.sleep(delay)
                first = False
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        for s in self.sockets:
            s.close()


@pytest.fixture
def redis_url(settings):
    url = settings.REDIS_URL
    match = re.match(r"^redis://([^:/]+):(\d+)(/\d+)?$", url or "")
    if not match or not redis_reachable(url):
        require_or_skip("needs a plain redis:// REDIS_URL that answers")
    return url, match


@pytest.fixture
def slow_redis(redis_url, settings):
    url, match = redis_url
    proxy = SlowReplies(match.group(1), int(match.group(2)), delay=0.6)
    settings.INFERIA_GATEWAY_REDIS_TIMEOUT = 0.2
    settings.REDIS_URL = f"redis://127.0.0.1:{proxy.port}{match.group(3) or ''}"
    yield
    settings.REDIS_URL = url
    proxy.close()


@pytest.mark.redis
def test_a_late_reply_fails_the_hit_closed_and_the_count_still_lands_in_its_window(
    redis_url, slow_redis, settings
):
    to_step_start(900)
    with pytest.raises(store.StoreUnavailable):
        store.hit("login:user:late", window_seconds=900)
    time.sleep(1.0)  # the held-back reply arrives after the caller gave up
    settings.REDIS_URL = redis_url[0]
    settings.INFERIA_GATEWAY_REDIS_TIMEOUT = 1.0
    # The increment reached Redis: it counts, in the same window, exactly once.
    assert store.peek("login:user:late", window_seconds=900).count == 1
    assert store.hit("login:user:late", window_seconds=900).count == 2


@pytest.mark.redis
def test_login_is_503_not_a_pass_when_the_throttle_answers_late(
    cast, anon_client, redis_url, slow_redis
):
    response = anon_client.post(
        "/api/v1/auth/login", {"username": "alice", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "SERVICE_UNAVAILABLE"


@pytest.mark.redis
def test_counts_across_the_background_loop_from_many_threads_are_all_kept(redis_url):
    to_step_start(900)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(25):
                store.hit("login:user:crowd", window_seconds=900)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.peek("login:user:crowd", window_seconds=900).count == 200
