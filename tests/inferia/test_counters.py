"""Fixed-window counters: atomic under concurrency, windows that follow the clock.

Each test runs on the database store (no REDIS_URL) and, when REDIS_URL is
set, on Redis.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.conf import settings as django_settings
from django.db import connections

from inferia import clock
from inferia import store as shared
from inferia.models import WindowCounter
from tests.conftest import require_or_skip

WINDOW = 60


@pytest.fixture(params=["database", "redis"])
def store(request, settings):
    if request.param == "redis":
        if not django_settings.REDIS_URL:
            require_or_skip("REDIS_URL is not set: no Redis counter store to test")
    else:
        settings.REDIS_URL = ""
    yield request.param


@pytest.fixture
def key() -> str:
    return f"test:{uuid.uuid4().hex}"


def _aligned_now() -> float:
    """A time 1 second into a fresh window, so a test never straddles a boundary."""
    now = clock.time()
    start = int(now) - int(now) % WINDOW
    clock.advance(start + WINDOW + 1 - now)
    return clock.time()


def test_hits_count_up_within_a_window(db, store, key):
    _aligned_now()
    assert shared.peek(key, window_seconds=WINDOW).count == 0
    assert [shared.hit(key, window_seconds=WINDOW).count for _ in range(3)] == [1, 2, 3]
    window = shared.peek(key, window_seconds=WINDOW)
    assert window.count == 3
    assert 1 <= window.reset_in_seconds <= WINDOW


def test_keys_are_counted_separately(db, store, key):
    _aligned_now()
    shared.hit(key, window_seconds=WINDOW)
    shared.hit(key, window_seconds=WINDOW)
    assert shared.hit(key + ":other", window_seconds=WINDOW).count == 1


def test_window_resets_when_the_clock_moves(db, store, key, clock_shift):
    _aligned_now()
    for _ in range(3):
        shared.hit(key, window_seconds=WINDOW)
    clock_shift(WINDOW - 2)  # still the same window
    assert shared.hit(key, window_seconds=WINDOW).count == 4
    clock_shift(2)  # the next window
    assert shared.peek(key, window_seconds=WINDOW).count == 0
    fresh = shared.hit(key, window_seconds=WINDOW)
    assert fresh.count == 1
    assert fresh.reset_in_seconds == WINDOW - 1


def test_reset_in_seconds_follows_the_clock(db, store, key, clock_shift):
    now = _aligned_now()
    assert shared.hit(key, window_seconds=WINDOW, now=now).reset_in_seconds == WINDOW - 1
    clock_shift(30)
    assert shared.peek(key, window_seconds=WINDOW).reset_in_seconds <= WINDOW - 30


def test_reset_clears_the_current_window(db, store, key):
    _aligned_now()
    shared.hit(key, window_seconds=WINDOW)
    shared.reset(key, window_seconds=WINDOW)
    assert shared.peek(key, window_seconds=WINDOW).count == 0
    assert shared.hit(key, window_seconds=WINDOW).count == 1


def test_keys_are_stored_hashed(db, settings):
    settings.REDIS_URL = ""
    shared.hit("login:alice@example.com", window_seconds=WINDOW)
    stored = WindowCounter.objects.get()
    assert "alice" not in stored.key and stored.key.startswith("inferia:{ctr:")


def test_prune_deletes_only_expired_database_windows(db, settings, key, clock_shift):
    settings.REDIS_URL = ""
    _aligned_now()
    shared.hit(key, window_seconds=WINDOW)
    clock_shift(WINDOW)
    shared.hit(key, window_seconds=WINDOW)
    assert WindowCounter.objects.count() == 2
    clock_shift(1)
    assert shared.prune() == 1  # the first window ended; the current one stays
    assert shared.peek(key, window_seconds=WINDOW).count == 1


THREADS, HITS_PER_THREAD = 8, 25


def _in_threads(body) -> None:
    """Run ``body`` in THREADS threads released together, each on its own database
    connection; fail with what any of them raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)

    def worker() -> None:
        try:
            start.wait()
            body()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []


def test_hits_are_atomic_across_threads(transactional_db, store, key):
    # On the database store this runs on SQLite (file, WAL, IMMEDIATE) and,
    # with DATABASE_URL, on PostgreSQL; each thread has its own connection.
    now = _aligned_now()  # every thread hits the same window
    seen: list[int] = []
    lock = threading.Lock()

    def hits() -> None:
        for _ in range(HITS_PER_THREAD):
            count = shared.hit(key, window_seconds=WINDOW, now=now).count
            with lock:
                seen.append(count)

    _in_threads(hits)
    total = THREADS * HITS_PER_THREAD
    # Every hit saw a distinct count: no increment was lost or doubled.
    assert sorted(seen) == list(range(1, total + 1))
    assert shared.peek(key, window_seconds=WINDOW, now=now).count == total


# --- once(): the first call in the ``seconds`` that follow it ---------------------------


def test_once_is_true_only_for_the_first_call_until_it_expires(db, store, key):
    assert shared.once(key, 1) is True
    assert shared.once(key, 1) is False
    assert shared.once(key + ":other", 1) is True
    time.sleep(1.3)  # real time: Redis expires its keys by its own clock
    assert shared.once(key, 1) is True
    assert shared.once(key, 1) is False


def test_once_keeps_its_claim_across_a_window_boundary(db, store, key, clock_shift):
    """A claim made one second before a multiple of ``seconds`` still holds after it
    (a replay cache that forgot at the wall clock's window boundary would let a
    replayed SAML assertion through)."""
    seconds = 300
    now = clock.time()
    clock_shift(seconds - now % seconds - 1)  # one second before a boundary
    assert shared.once(key, seconds) is True
    clock_shift(2)  # past the boundary
    assert shared.once(key, seconds) is False
    clock_shift(seconds - 10)  # 290 s after the claim
    assert shared.once(key, seconds) is False


def test_once_expires_on_the_platform_clock_in_the_database(db, settings, key, clock_shift):
    settings.REDIS_URL = ""
    assert shared.once(key, 60) is True
    clock_shift(59)
    assert shared.once(key, 60) is False
    clock_shift(1)
    assert shared.once(key, 60) is True  # a new claim, for 60 s more
    clock_shift(59)
    assert shared.once(key, 60) is False
    stored = WindowCounter.objects.get()
    assert key not in stored.key and stored.key.startswith("inferia:{once:")


def test_once_has_one_winner_across_threads(transactional_db, store, key):
    winners: list[bool] = []
    lock = threading.Lock()

    def claims() -> None:
        for _ in range(5):
            won = shared.once(key, 60)
            with lock:
                winners.append(won)

    _in_threads(claims)
    assert winners.count(True) == 1 and len(winners) == THREADS * 5
