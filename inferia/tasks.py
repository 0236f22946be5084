from __future__ import annotations

from celery import shared_task

from inferia import store


@shared_task(name="inferia.tasks.counters_prune")
def counters_prune() -> int:
    return store.prune()
