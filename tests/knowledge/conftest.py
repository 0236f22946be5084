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
def kb_world(llm, cast) -> KbWorld:  # noqa: F811 - the imported fixture
    llm.grant("authz_rules:\n  - models: ['*']\n    users: [alice]\n")
    return KbWorld(llm=llm, cast=cast, alice=llm.admin)
