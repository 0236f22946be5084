"""The login throttle when Redis answers late (a loaded machine): the caller fails
closed (503) and the count that reached Redis is neither lost nor moved to another
window; a test's clean slate is really clean before it starts."""

from __future__ import annotations

import re
import threading
import time

import pytest

from inferia import store
from tests.conftest import PASSWORD, redis_reachable, require_or_skip, to_step_start
from tests.redis_proxy import SlowReplies


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
