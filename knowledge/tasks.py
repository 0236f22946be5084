"""Celery entry points of knowledge/: load by id, call the service, safe to run twice."""

from __future__ import annotations

from inferia.celery import OrgTask, app
from knowledge import ingestion

# A rate-limited ingestion waits and resumes this many times before it fails.
MAX_DEFERRALS = 8


@app.task(
    base=OrgTask,
    bind=True,
    name="knowledge.tasks.ingest_document",
    max_retries=MAX_DEFERRALS,
)
def ingest_document(self, org_id: str, document_id: str) -> str:
    """Parse, chunk and embed one uploaded document (``knowledge.ingestion``), inside its
    org's scope. When the gateway answers 429 or 503, retry after its ``Retry-After``,
    resuming from the last stored batch; run eagerly (in the caller's process, as the
    test suite and ``INFERIA_CELERY_EAGER`` do) there is no later, and it fails with
    the gateway's reason at once."""
    last_attempt = self.request.is_eager or self.request.retries >= MAX_DEFERRALS
    try:
        return ingestion.document_ingest(document_id, last_attempt=last_attempt)
    except ingestion.Deferred as deferred:
        raise self.retry(countdown=deferred.countdown) from deferred
