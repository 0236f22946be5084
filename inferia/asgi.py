"""ASGI entry point: the gateway (``/api/llm/``) as a plain ASGI app, everything else Django.

The gateway needs an ASGI server (``make run`` serves this with uvicorn); the
WSGI entry point serves the API, dashboard and admin only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inferia.settings")
# The web process's log lines (audit.logging's formatters) use none of the caller's
# file and line, thread or process fields: not computed for each record (the logging
# HOWTO's "Optimization"). Celery's workers, whose format names the process, keep them.
logging._srcfile = None
logging.logThreads = False
logging.logProcesses = False
logging.logMultiprocessing = False
django_application = get_asgi_application()

from gateway import http  # noqa: E402  (after Django is set up)
from gateway.app import PREFIX  # noqa: E402
from gateway.app import application as gateway_application  # noqa: E402
from inferia import metrics, tracing  # noqa: E402

# Traces of the gateway's requests, when an OTLP endpoint is set (docs/tracing.md).
tracing.configure_from_settings()


async def _lifespan(receive, send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            # Everything loaded so far (Django, the apps, their modules) lives as long
            # as the process: out of the collector's sight, so a full collection under
            # load walks only what requests allocate (shorter pauses, less CPU).
            gc.freeze()
            # Collect the young generation every 10,000 allocations, not 700: with dozens
            # of requests in flight, each collection at 700 found their live objects and
            # promoted them, so the older generations filled and were walked again and
            # again (about 5% of a request's CPU at saturation, README.md, Benchmark).
            gc.set_threshold(10_000, 20, 50)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            # Usage records are durable before each response is sent; only the
            # upstream connections are left to close.
            await http.close_all()
            metrics.flush()  # the last second's gateway samples
            # The spans still queued leave for the collector (blocking: off the loop).
            await asyncio.to_thread(tracing.shutdown)
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send) -> None:
    if scope["type"] == "http" and scope["path"].startswith(PREFIX):
        return await gateway_application(scope, receive, send)
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    return await django_application(scope, receive, send)
