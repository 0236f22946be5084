"""A collection embedded by a deployment (``deployment/<name>``): ingestion and queries
go through the deployment's routing like any other gateway call."""

from __future__ import annotations

import pytest

from tests.knowledge.conftest import KB_URL

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = "Vacation policy: every employee gets twenty five days of paid vacation a year."


def test_a_deployment_embeds_documents_and_queries(kb_world):
    alice = kb_world.alice
    created = alice.post(
        "/api/v1/orgs/acme/deployments",
        {
            "name": "embedder",
            "targets": [{"name": "main", "account": "openai-main", "model": "fake-embed"}],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    kb = alice.post(
        KB_URL, {"name": "handbook", "embedding_model": "deployment/embedder"}, format="json"
    )
    assert kb.status_code == 201, kb.content
    uploaded = alice.post(
        f"{KB_URL}/handbook/documents", {"name": "policy.txt", "text": TEXT}, format="json"
    )
    assert uploaded.status_code == 202, uploaded.content
    document = alice.get(f"{KB_URL}/handbook/documents/{uploaded.json()['id']}").json()
    assert document["status"] == "ready", document
    assert alice.get(f"{KB_URL}/handbook").json()["dimensions"] == 64
    found = alice.post(f"{KB_URL}/handbook/query", {"query": "paid vacation"}, format="json")
    assert found.status_code == 200, found.content
    assert found.json()["results"][0]["text"] == TEXT


def test_a_deployment_the_creator_may_not_use_is_refused(kb_world):
    alice = kb_world.alice
    created = alice.post(
        "/api/v1/orgs/acme/deployments",
        {
            "name": "embedder",
            "targets": [{"name": "main", "account": "openai-main", "model": "fake-embed"}],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    # Only the provider models are granted now, not deployment/*.
    kb_world.llm.grant("authz_rules:\n  - models: ['openai-main/*']\n    users: [alice]\n")
    refused = alice.post(
        KB_URL, {"name": "handbook", "embedding_model": "deployment/embedder"}, format="json"
    )
    assert refused.status_code == 403, refused.content
