from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.conftest import client_for


def key_client(plaintext: str, *, header: str = "x-api-key") -> APIClient:
    client = APIClient()
    if header == "bearer":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    else:
        client.credentials(HTTP_X_API_KEY=plaintext)
    return client


def mint(client: APIClient, org: str = "acme", **body) -> dict:
    body.setdefault("name", "k")
    body.setdefault("permissions", ["model:read"])
    response = client.post(f"/api/v1/orgs/{org}/api-keys", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


@pytest.fixture
def service_account(cast):
    """An Acme service account 'ci-bot' with the Member role, created by alice."""
    response = client_for(cast.alice).post(
        "/api/v1/orgs/acme/service-accounts", {"slug": "ci-bot", "name": "CI bot", "role": "member"}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()
