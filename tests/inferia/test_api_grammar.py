"""One API grammar: unknown fields are a 400 on every write, errors are JSON, OPTIONS answers.

The walks below read the URLconf, so a route added tomorrow is walked too.
"""

from __future__ import annotations

import re
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from keys.models import ProviderAccount
from orgs.models import Team
from tests.conftest import assert_error
from tests.keys.conftest import key_client, mint
from tests.keys.providers import SECRET, accounts_url, create_account

EXTRA = "inferia_unknown_field"
WRITES = ("post", "put", "patch")


def _routes(patterns=None, prefix: str = ""):
    """(route, pattern) for every URL pattern, resolvers expanded; regex routes skipped."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = getattr(pattern.pattern, "_route", None)
        if route is None:  # a regex pattern (admin internals): no route to fill in
            continue
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + route)
        elif isinstance(pattern, URLPattern):
            yield prefix + route, pattern


def _fill(route: str) -> str:
    """A concrete path for a route: ``acme`` for slugs, a fresh UUID for ids."""

    def value(match: re.Match) -> str:
        converter, name = match.group(1) or "str", match.group(2)
        if converter == "uuid":
            return str(uuid.uuid4())
        if name == "org":
            return "acme"
        if converter == "int":
            return "1"
        return "no-such-thing"

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", value, route)


# RFC 6749 section 3.1: an OAuth endpoint MUST ignore parameters it does not know; the
# device grant's endpoints follow the RFC (tests/orgs/test_device_grant.py checks that).
OAUTH_ROUTES = {"api/v1/auth/device/code", "api/v1/auth/device/token"}


def _api_writes():
    for route, pattern in _routes():
        if not route.startswith("api/v1/") or route in OAUTH_ROUTES:
            continue
        view_class = getattr(pattern.callback, "cls", None)
        assert view_class is not None, f"{route} is not a DRF view"
        declared = getattr(view_class, "input_serializers", {})
        for method in WRITES:
            if hasattr(view_class, method):
                yield route, method
        if hasattr(view_class, "delete") and declared.get("DELETE") is not None:
            yield route, "delete"


API_WRITES = sorted(set(_api_writes()))


def test_the_walk_covers_the_write_routes():
    walked = {(route, method) for route, method in API_WRITES}
    # The walk is the URLconf: a few routes we know, to show it is not empty or stale.
    for expected in [
        ("api/v1/orgs/<slug:org>/provider-accounts/<uuid:id>", "patch"),
        ("api/v1/auth/login", "post"),
        ("api/v1/auth/refresh", "post"),
        ("api/v1/auth/2fa/setup", "post"),
        ("api/v1/invitations/<str:token>/accept", "post"),
        ("api/v1/orgs/<slug:org>/access-rules.yaml", "put"),
        ("api/v1/orgs/<slug:org>", "patch"),
        ("api/v1/orgs/<slug:org>", "delete"),
    ]:
        assert expected in walked
    assert len(walked) >= 30


@pytest.mark.parametrize(("route", "method"), API_WRITES, ids=[f"{m} {r}" for r, m in API_WRITES])
def test_every_write_refuses_an_unknown_field(alice_client, route, method):
    response = getattr(alice_client, method)(_fill(route), {EXTRA: "x"}, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"][EXTRA] == ["Unknown field."], error
    assert response["Content-Type"] == "application/json"


def test_patch_provider_account_with_a_secret_is_400_and_changes_nothing(cast, alice_client):
    account = create_account(alice_client)
    response = alice_client.patch(
        accounts_url("acme", account["id"]),
        {"secret": SECRET, "base_url": "https://8.8.4.4/v1"},
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"secret": ["Unknown field."]}
    row = ProviderAccount.all_orgs.get(pk=account["id"])
    assert not row.encrypted_secret and not row.secret_ref
    assert row.base_url == account["base_url"]


def test_read_only_fields_of_the_output_are_unknown_in_a_write(cast, alice_client):
    account = create_account(alice_client)
    response = alice_client.patch(
        accounts_url("acme", account["id"]),
        {"has_secret": True, "id": str(uuid.uuid4()), "tags": {"a": "b"}},
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"has_secret": ["Unknown field."], "id": ["Unknown field."]}
    assert ProviderAccount.all_orgs.get(pk=account["id"]).tags == {}


def test_unknown_fields_inside_a_nested_input_are_named(cast, alice_client):
    response = alice_client.post(
        accounts_url(),
        {
            "name": "openai-main",
            "provider_type": "openai",
            "base_url": "https://8.8.8.8/v1",
            "models": [{"name": "gpt-4o", "price": 3}],
        },
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"models": [{"price": ["Unknown field."]}]}
    assert not ProviderAccount.all_orgs.exists()


def test_a_write_that_takes_no_body_refuses_fields(cast, alice_client):
    response = alice_client.post("/api/v1/auth/2fa/setup", {"secret": "mine"}, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"secret": ["Unknown field."]}
    # The same call without the field works: the refusal was about the field.
    assert alice_client.post("/api/v1/auth/2fa/setup", format="json").status_code == 200


def test_login_with_an_unknown_field_is_400_not_a_login(cast, anon_client):
    from tests.conftest import PASSWORD

    response = anon_client.post(
        "/api/v1/auth/login",
        {"username": "alice", "password": PASSWORD, "remember_me": True},
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert error["details"] == {"remember_me": ["Unknown field."]}
    assert "access_token" not in response.json()


# --- errors are JSON, whatever format was asked ---------------------------------------


@pytest.fixture
def narrow_key_client(cast, alice_client):
    """Alice's key scoped to model:read: no audit_log:view."""
    return key_client(mint(alice_client, name="narrow", permissions=["model:read"])["key"])


@pytest.mark.parametrize(
    ("who", "query", "status", "code"),
    [
        ("anon_client", "format=csv", 401, "AUTHENTICATION_FAILED"),
        ("narrow_key_client", "format=csv", 403, "PERMISSION_DENIED"),
        ("charlie_client", "format=csv", 404, "NOT_FOUND"),
        ("alice_client", "format=csv&since=yesterday", 400, "VALIDATION_ERROR"),
        ("alice_client", "format=jsonl&outcome=maybe", 400, "VALIDATION_ERROR"),
    ],
)
def test_audit_export_errors_are_json(request, cast, who, query, status, code):
    client = request.getfixturevalue(who)
    response = client.get(f"/api/v1/orgs/acme/audit-logs?{query}")
    assert_error(response, status, code)
    assert response["Content-Type"] == "application/json"
    assert "Content-Disposition" not in response


def test_audit_export_still_streams_csv(cast, alice_client):
    response = alice_client.get("/api/v1/orgs/acme/audit-logs?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")


# --- OPTIONS on every route -------------------------------------------------------------


def _options_routes():
    return sorted(
        {route for route, _pattern in _routes() if not route.startswith(("admin/", "static/"))}
    )


@pytest.mark.parametrize("route", _options_routes())
@pytest.mark.parametrize("who", ["anon_client", "alice_client"])
def test_options_answers_on_every_route(request, cast, route, who):
    client = request.getfixturevalue(who)
    response = client.options(_fill(route))
    assert response.status_code < 500, (route, response.status_code, response.content[:300])
    pattern = dict(_routes())[route]
    view_class = getattr(pattern.callback, "cls", None)
    if view_class is not None and issubclass(view_class, APIView):
        assert response.status_code == 200, (route, response.content[:300])
        allow = {m.strip() for m in response["Allow"].split(",")}
        assert "OPTIONS" in allow
        handled = {m.upper() for m in view_class.http_method_names if hasattr(view_class, m)}
        assert handled <= allow


@pytest.mark.parametrize(
    "path", ["/api/v1/auth/login", "/api/v1/auth/logout", "/api/v1/auth/refresh"]
)
def test_options_on_auth_routes_describes_the_input(anon_client, path):
    response = anon_client.options(path)
    assert response.status_code == 200, response.content
    assert "POST" in response["Allow"]
    assert response.json()["actions"]["POST"]


def test_options_lists_the_writable_fields_not_the_output(anon_client):
    response = anon_client.options(f"/api/v1/orgs/acme/provider-accounts/{uuid.uuid4()}")
    assert response.status_code == 200
    fields = response.json()["actions"]["PATCH"]
    assert "base_url" in fields and "has_secret" not in fields and "secret" not in fields


def test_options_on_an_org_route_reveals_nothing_of_the_org(cast, anon_client):
    # The same answer for an org that exists and one that does not.
    known = anon_client.options("/api/v1/orgs/acme/members")
    unknown = anon_client.options("/api/v1/orgs/no-such-org/members")
    assert known.status_code == unknown.status_code == 200
    assert known.json() == unknown.json()


def test_unknown_keys_echoed_back_are_bounded(cast, alice_client):
    body = {"x" * 500: 1, **{f"extra{i:03}": i for i in range(60)}}
    response = alice_client.post("/api/v1/orgs/acme/teams", {"name": "T", **body}, format="json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert len(error["details"]) == 50
    assert all(len(key) <= 100 for key in error["details"])
    assert not Team.all_orgs.filter(org=cast.acme).exists()
