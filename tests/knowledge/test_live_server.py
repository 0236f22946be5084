"""Upload and query over real HTTP to the app served by uvicorn, the way a deployment
serves it: the embedding calls made from a Django view (the query, and the eager
ingestion after the upload commits) go through the gateway application in-process.
Under an ASGI server a view runs on its request's thread-sensitive executor; the
embedding must not wait on that same thread (it once did: a deadlock)."""

from __future__ import annotations

import httpx
import pytest

from orgs.services import auth

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = "Vacation policy: every employee gets twenty five days of paid vacation a year."


def test_upload_and_query_through_the_served_app(kb_world, gateway_server):
    kb_world.create_kb()
    token = auth.token_pair_issue(user=kb_world.cast.alice).access_token
    headers = {"Authorization": f"Bearer {token}"}
    base = f"{gateway_server.url}/api/v1/orgs/acme/knowledge-bases/handbook"
    with httpx.Client(timeout=30, headers=headers) as client:
        uploaded = client.post(f"{base}/documents", json={"name": "policy.txt", "text": TEXT})
        assert uploaded.status_code == 202, uploaded.text
        document = client.get(f"{base}/documents/{uploaded.json()['id']}").json()
        assert document["status"] == "ready", document
        found = client.post(f"{base}/query", json={"query": "paid vacation days", "top_k": 3})
    assert found.status_code == 200, found.text
    assert found.json()["results"][0]["text"] == TEXT
