"""An API key in any of the three credential headers, on the REST API.

The gateway's side is ``tests/gateway/test_key_headers.py``; both edges read the
credential through ``inferia.authentication.credential_from``.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from audit.models import AuditRecord
from tests.conftest import assert_error, client_for
from tests.keys.conftest import mint

RULES = "/api/v1/orgs/acme/access-rules"
THREE_WAYS = ("Authorization: Bearer <key>", "X-API-Key: <key>", "api-key: <key>")
HEADERS = {
    "bearer": lambda key: {"HTTP_AUTHORIZATION": f"Bearer {key}"},
    "x-api-key": lambda key: {"HTTP_X_API_KEY": key},
    "api-key": lambda key: {"HTTP_API_KEY": key},
}


def _key(cast) -> str:
    return mint(client_for(cast.bob))["key"]


@pytest.mark.parametrize("header", sorted(HEADERS))
def test_a_key_works_in_each_header(cast, header):
    response = APIClient().get(RULES, **HEADERS[header](_key(cast)))
    assert response.status_code == 200, response.content


def test_the_same_key_in_all_three_headers(cast):
    key = _key(cast)
    headers = {name: value for make in HEADERS.values() for name, value in make(key).items()}
    assert APIClient().get(RULES, **headers).status_code == 200


@pytest.mark.parametrize(
    ("first", "second"), [("bearer", "x-api-key"), ("bearer", "api-key"), ("x-api-key", "api-key")]
)
def test_two_different_keys_are_ambiguous(cast, first, second):
    one, other = _key(cast), _key(cast)
    assert APIClient().get(RULES, **HEADERS[first](one)).status_code == 200
    assert APIClient().get(RULES, **HEADERS[second](other)).status_code == 200
    response = APIClient().get(RULES, **HEADERS[first](one), **HEADERS[second](other))
    error = assert_error(response, 401, "AUTHENTICATION_FAILED")
    assert "Two different credentials" in error["message"]
    assert all(way in error["message"] for way in THREE_WAYS)
    assert response["WWW-Authenticate"].startswith("Bearer")
    # A valid key next to a wrong one: still refused (the first header does not win).
    response = APIClient().get(RULES, **HEADERS[first](one), **HEADERS[second]("ifr_wrong"))
    assert_error(response, 401, "AUTHENTICATION_FAILED")
    # Each refusal left one audit record, without either credential.
    refusals = AuditRecord.objects.filter(status_code=401)
    assert [(r.outcome, r.target_id) for r in refusals] == [("denied", RULES)] * 2
    for record in refusals:
        assert one not in str(record.data) and other not in str(record.data)


def test_a_user_token_in_the_azure_header(cast):
    from tests.orgs.test_auth_tokens import login

    token = login("bob")["access_token"]
    assert APIClient().get("/api/v1/auth/me", HTTP_API_KEY=token).status_code == 200


def test_no_credential_names_the_three_headers(cast):
    for path in (RULES, "/api/v1/auth/me"):
        error = assert_error(APIClient().get(path), 401, "AUTHENTICATION_FAILED")
        assert all(way in error["message"] for way in THREE_WAYS), (path, error["message"])
