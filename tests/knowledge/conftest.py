"""Fixtures of the knowledge-base tests: the gateway's (``tests/gateway/conftest.py``:
Acme's ``openai-main`` account on the fake upstream, whose ``fake-embed`` model returns
hashed bag-of-words vectors over real HTTP) plus ``kb_world``: alice (owner) may use
every model of Acme; a collection ``handbook`` embedded by ``openai-main/fake-embed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from tests.gateway.conftest import (  # noqa: F401
    _fresh_gateway_state,
    _usage_stream_per_worker,
    backend,
    fake_upstream,
    gateway_server,
    llm,
    on_redis,
)

KB_URL = "/api/v1/orgs/acme/knowledge-bases"
EMBED_MODEL = "openai-main/fake-embed"


@dataclass
class KbWorld:
    llm: Any
    cast: Any
    alice: Any  # API client of Acme's owner

    def create_kb(self, name: str = "handbook", client=None, **fields) -> dict:
        body = {"name": name, "embedding_model": EMBED_MODEL, **fields}
        response = (client or self.alice).post(KB_URL, body, format="json")
        assert response.status_code == 201, response.content
        return response.json()


@pytest.fixture
def kb_world(llm, cast) -> KbWorld:  # noqa: F811 (llm: the imported fixture)
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [alice]\n")
    return KbWorld(llm=llm, cast=cast, alice=llm.admin)


class HeldIngestion:
    """Ingestion tasks queued by uploads, run only when a test says."""

    def __init__(self, org_id: str) -> None:
        self.org_id = org_id

    def run(self, document_id: str) -> str:
        """Run the ingestion task of ``document_id`` here (``apply``: run eagerly, so a
        rate limit fails the document at once instead of retrying later)."""
        from knowledge import tasks

        return tasks.ingest_document.apply(args=[self.org_id, document_id]).get()


@pytest.fixture
def held_ingestion(kb_world):
    """Uploads publish their ingestion task for real (eager off) to an in-memory broker
    nobody consumes: the document stays ``queued`` until ``held_ingestion.run(id)``."""
    import uuid

    from tests.inferia.test_celery_worker import Broker, _publishing_to

    with _publishing_to(Broker(kind="memory", url="memory://"), f"held-{uuid.uuid4().hex[:8]}"):
        yield HeldIngestion(str(kb_world.cast.acme.pk))
