"""The circuit breaker's rules in the shared store, the same on both backends (the
Redis script and the database row): failures counted in a window, open for the
cooldown, one half-open probe for every process, closed by a success."""

from __future__ import annotations

import pytest

from inferia import store
from inferia.store.breaker import CLOSED, HALF_OPEN, OPEN, Event

KEY = store.keys.tagged("org-1", "breaker", "dep-1", "primary")
T0 = 1_800_000_000.0


def fail(now: float, **limits) -> object:
    limits = {"threshold": 3, "window_seconds": 10, "cooldown_seconds": 30, **limits}
    return store.breaker_update_sync(KEY, Event("fail", now, **limits))[1]


def probe(now: float) -> bool:
    return store.breaker_update_sync(KEY, Event("probe", now, probe_seconds=5))[0]


@pytest.fixture
def on_store(backend, db):
    return backend


def test_an_untouched_breaker_is_unknown_and_closed(on_store):
    (state,) = store.breaker_read_sync([KEY])
    assert not state.known
    assert state.effective(T0) == CLOSED


def test_it_opens_after_the_threshold_within_the_window(on_store):
    assert fail(T0).state == CLOSED
    assert fail(T0 + 1).failures == 2
    opened = fail(T0 + 2)
    assert opened.state == OPEN
    assert opened.open_until == pytest.approx(T0 + 32)
    (read,) = store.breaker_read_sync([KEY])
    assert read.known and read.effective(T0 + 10) == OPEN


def test_failures_outside_the_window_start_a_new_count(on_store):
    fail(T0)
    fail(T0 + 1)
    assert fail(T0 + 11).failures == 1  # the window of T0 ended at T0 + 10
    assert fail(T0 + 12).state == CLOSED


def test_after_the_cooldown_one_caller_gets_the_probe(on_store):
    for second in range(3):
        fail(T0 + second)
    assert not probe(T0 + 20)  # still open
    (state,) = store.breaker_read_sync([KEY])
    assert state.effective(T0 + 33) == HALF_OPEN
    assert probe(T0 + 33)
    assert not probe(T0 + 33.5)  # another process: the probe is taken
    assert probe(T0 + 39)  # the first probe's hold lapsed without an answer


def test_a_failed_probe_opens_it_again_and_a_success_closes_it(on_store):
    for second in range(3):
        fail(T0 + second)
    assert probe(T0 + 33)
    reopened = fail(T0 + 34)
    assert reopened.state == OPEN and reopened.open_until == pytest.approx(T0 + 64)
    assert probe(T0 + 65)
    _granted, closed = store.breaker_update_sync(KEY, Event("ok", T0 + 66))
    assert closed.state == CLOSED and closed.failures == 0
    assert fail(T0 + 67).failures == 1  # counting starts over


def test_a_health_check_result_opens_or_closes_and_is_kept(on_store):
    _granted, down = store.breaker_update_sync(
        KEY, Event("check", T0, cooldown_seconds=30, check_ok=False, check_error="timed out")
    )
    assert down.state == OPEN and down.open_until == pytest.approx(T0 + 30)
    assert down.check_ok is False and down.check_error == "timed out"
    _granted, up = store.breaker_update_sync(
        KEY, Event("check", T0 + 60, check_ok=True, check_latency_ms=12.5)
    )
    assert up.state == CLOSED
    assert up.check_ok is True and up.check_latency_ms == pytest.approx(12.5)
    assert up.checked_at == pytest.approx(T0 + 60)


def test_a_deleted_deployments_breakers_are_dropped(on_store):
    fail(T0)
    store.breaker_delete_sync([KEY])
    (state,) = store.breaker_read_sync([KEY])
    assert not state.known
