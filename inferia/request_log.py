"""One structured log line per request: request id, org, principal, route, status, latency."""

from __future__ import annotations

import logging
import time

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

logger = logging.getLogger("inferia.request")


def _fields(request, response, started: float) -> dict:
    access = getattr(request, "access", None)
    match = getattr(request, "resolver_match", None)
    return {
        "request_id": getattr(request, "request_id", None),
        "org": access.org.slug if access is not None else getattr(request, "inferia_org", None),
        "principal": access.actor_label
        if access is not None
        else getattr(request, "inferia_principal", None),
        "method": request.method,
        "route": match.route if match is not None else request.path[:200],
        "status": response.status_code,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }


class RequestLogMiddleware:
    async_capable = True
    sync_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self._acall(request)
        started = time.perf_counter()
        response = self.get_response(request)
        fields = _fields(request, response, started)
        logger.info("%s %s %s", request.method, fields["route"], response.status_code, extra=fields)
        return response

    async def _acall(self, request):
        started = time.perf_counter()
        response = await self.get_response(request)
        fields = _fields(request, response, started)
        logger.info("%s %s %s", request.method, fields["route"], response.status_code, extra=fields)
        return response
