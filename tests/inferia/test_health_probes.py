"""/healthz says the process is up; /readyz checks the database, cache and broker."""

from __future__ import annotations

import pytest
from django.test import Client

from inferia import health
from inferia.celery import app
from tests.conftest import assert_error

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def test_healthz_is_200(db):
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_healthz_needs_no_database(django_db_blocker):
    with django_db_blocker.block():
        response = Client().get("/healthz")
    assert response.status_code == 200


def test_readyz_is_200_when_every_dependency_answers(db, settings):
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"] == {"database": "ok", "cache": "ok", "broker": "ok"}
    assert body["broker"] == ("redis" if settings.REDIS_URL else "filesystem")


def test_readyz_is_503_envelope_when_the_cache_is_unreachable(db, settings):
    settings.REDIS_URL = UNREACHABLE_REDIS  # the shared store's Redis
    response = Client().get("/readyz")
    error = assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert error["details"] == {"database": "ok", "cache": "unavailable", "broker": "ok"}
    assert (
        "6379" not in response.content.decode() and "127.0.0.1:1" not in response.content.decode()
    )


@pytest.fixture
def broker_unreachable():
    """Point this process's Celery app at a Redis nobody serves."""
    conf = app.conf
    missing = object()
    keys = {"CELERY_BROKER_URL": UNREACHABLE_REDIS, "CELERY_BROKER_TRANSPORT_OPTIONS": {}}
    saved = {key: conf.changes.get(key, missing) for key in keys}
    conf.changes.update(keys)
    app._pool = None
    yield
    for key, value in saved.items():
        if value is missing:
            conf.changes.pop(key, None)
        else:
            conf.changes[key] = value
    app._pool = None


def test_readyz_is_503_envelope_when_the_broker_is_unreachable(db, broker_unreachable):
    response = Client().get("/readyz")
    error = assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert error["details"] == {"database": "ok", "cache": "ok", "broker": "unavailable"}


def test_readyz_is_503_envelope_when_the_database_fails(db, monkeypatch):
    def database_down() -> None:
        raise OSError("connection refused by 10.0.0.5 password=hunter2")

    monkeypatch.setattr(health, "_check_database", database_down)
    response = Client().get("/readyz")
    error = assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert error["details"]["database"] == "unavailable"
    assert "hunter2" not in response.content.decode()
