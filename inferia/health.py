"""Liveness and readiness probes."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from inferia import store
from inferia.errors import ErrorCode, error_response

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    # The shared store (counters, epochs, the usage stream): Redis, or the database.
    store.ping()


def _check_broker() -> None:
    from inferia.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _check_database, "cache": _check_cache, "broker": _check_broker}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # any failure means not ready; logged without detail leaks
            logger.warning("readyz %s failed: %s", name, type(exc).__name__)
            results[name] = "unavailable"
    if any(value != "ok" for value in results.values()):
        # The contract's one error shape; details say which dependency failed.
        return error_response(
            ErrorCode.SERVICE_UNAVAILABLE, "A dependency is unreachable", 503, details=results
        )
    return JsonResponse(
        {
            "status": "ok",
            "checks": results,
            "broker": settings.BROKER_DESCRIPTION.split(" ")[0],
        }
    )
