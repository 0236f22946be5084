"""Fail closed: when the database cannot confirm a credential, the request is refused (503)."""

from __future__ import annotations

from unittest import mock

from django.db import OperationalError

from tests.conftest import assert_error
from tests.keys.conftest import key_client, mint


def test_api_key_check_without_database_is_503(bob_client):
    body = mint(bob_client)
    client = key_client(body["key"])
    with mock.patch("keys.models.ApiKey.all_orgs") as manager:
        manager.select_related.side_effect = OperationalError("connection refused")
        response = client.get("/api/v1/orgs/acme/access-rules")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")


def test_jwt_check_without_database_is_503(bob_client):
    with mock.patch("orgs.models.User.objects") as manager:
        manager.filter.side_effect = OperationalError("connection refused")
        response = bob_client.get("/api/v1/auth/me")
    assert_error(response, 503, "SERVICE_UNAVAILABLE")
