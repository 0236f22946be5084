"""Every response carries X-Request-ID: the client's when sane, a fresh one otherwise."""

from __future__ import annotations

import re

import pytest
from django.test import Client

MINTED = re.compile(r"^[0-9a-f]{32}$")


@pytest.mark.parametrize(
    "url", ["/healthz", "/api/v1/auth/me", "/no-such-page", "/api/schema/?format=json"]
)
def test_sane_request_id_is_echoed(db, url):
    response = Client().get(url, HTTP_X_REQUEST_ID="req-42.abc:DEF_9")
    assert response["X-Request-ID"] == "req-42.abc:DEF_9"


def test_request_id_is_minted_when_absent(db):
    first = Client().get("/healthz")["X-Request-ID"]
    second = Client().get("/healthz")["X-Request-ID"]
    assert MINTED.match(first) and MINTED.match(second)
    assert first != second


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "has spaces",
        "x" * 129,
        "<script>alert(1)</script>",
        "line\nbreak",
        "semi;colon",
        "ünïcode",
    ],
)
def test_malformed_request_id_is_replaced(db, bad):
    response = Client().get("/healthz", HTTP_X_REQUEST_ID=bad)
    assert MINTED.match(response["X-Request-ID"]), response["X-Request-ID"]


def test_request_id_on_error_responses(db, anon_client):
    response = anon_client.get("/api/v1/auth/me", HTTP_X_REQUEST_ID="trace-me")
    assert response.status_code == 401
    assert response["X-Request-ID"] == "trace-me"
