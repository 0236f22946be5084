"""An upload's ingestion runs in a separate Celery worker process (``celery -A inferia
worker``, as deployed): the web process only queues it, the worker embeds through its
own in-process gateway, as the uploader, against the fake upstream over real HTTP."""

from __future__ import annotations

import os
import time

import pytest

from gateway.fake_upstream import RECORDED
from inferia.celery import app
from tests.inferia.test_celery_worker import DEADLINE_SECONDS, broker, worker  # noqa: F401
from tests.knowledge.uploads import chunks_of, doc_url, upload_file, uploaded

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_process_ingests_an_upload(kb_world, worker):  # noqa: F811
    assert app.conf.task_always_eager is False
    kb_world.create_kb(chunk_size=100, chunk_overlap=0)
    text = "\n\n".join(f"Paragraph {i}: the office opens at {8 + i} o'clock." for i in range(6))
    body = uploaded(upload_file(kb_world.alice, text.encode(), "hours.txt", "text/plain"))
    assert body["status"] == "queued"

    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        state = kb_world.alice.get(doc_url(body["id"])).json()
        if state["status"] in ("ready", "failed"):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"not ingested within {DEADLINE_SECONDS}s:\n{worker.log()[-4000:]}")
        worker.pause_or_fail(0.2)

    assert state["status"] == "ready", (state, worker.log()[-4000:])
    assert state["chunks_done"] == state["chunks_total"] == len(chunks_of(body["id"])) >= 3
    assert all(c.dims == 64 for c in chunks_of(body["id"]))
    assert worker.process.pid != os.getpid()
    # The status is saved inside the task; the worker logs its success just after.
    worker.wait_for_log(r"Task knowledge\.tasks\.ingest_document\[[0-9a-f-]+\] succeeded")
    # The worker's gateway called the upstream (served by this test process) for it.
    embedded = [r["body"]["input"] for r in RECORDED if r["path"] == "/v1/embeddings"]
    assert sum(len(batch) for batch in embedded) == state["chunks_total"]
    assert all(r["body"]["model"] == "fake-embed" for r in RECORDED)
