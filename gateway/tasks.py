"""Celery entry points of the gateway."""

from __future__ import annotations

from gateway import usage
from inferia.celery import app


@app.task(name="gateway.tasks.usage_ingest", acks_late=True)
def usage_ingest() -> int:
    """Drain the usage stream into the database until it is empty."""
    total = 0
    while True:
        moved = usage.ingest(consumer="celery")
        total += moved
        if not moved:
            return total
