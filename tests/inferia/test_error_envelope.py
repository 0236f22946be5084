"""Every failure, inside DRF or not, leaves as the contract's error envelope."""

from __future__ import annotations

import pytest
from django.http import HttpRequest
from django.test import Client
from django.urls import include, path
from rest_framework.test import APIClient

import inferia.urls
from orgs.services import tenancy
from tests.conftest import assert_error


def _crash(request: HttpRequest):
    raise RuntimeError("secret-sauce: a plain Django view failed")


# This module doubles as a URLconf: the real routes plus a plain view that crashes.
urlpatterns = [path("test-crash", _crash), path("", include(inferia.urls.urlpatterns))]
handler400 = inferia.urls.handler400
handler403 = inferia.urls.handler403
handler404 = inferia.urls.handler404
handler500 = inferia.urls.handler500


@pytest.mark.parametrize("url", ["/api/v1/no-such-endpoint", "/api/v1/orgs/acme/nothing"])
def test_unknown_url_is_404_envelope(db, url):
    response = Client().get(url)
    assert_error(response, 404, "NOT_FOUND")
    assert response["Content-Type"] == "application/json"
    assert response["X-Request-ID"]


def test_unknown_dashboard_url_is_the_html_404_page(db):
    # People get the site's page; only /api/ paths answer the JSON envelope.
    response = Client().get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"<h1>Not found</h1>" in response.content
    assert response["X-Request-ID"]


def test_get_on_post_only_drf_endpoint_is_405(db, anon_client):
    response = anon_client.get("/api/v1/auth/login")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")


def test_get_on_post_only_org_endpoint_is_405(alice_client):
    response = alice_client.get("/api/v1/orgs/acme/transfer-ownership")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in response["Allow"]


def test_post_on_plain_django_get_view_is_405_envelope(db):
    response = Client().post("/healthz")
    assert_error(response, 405, "METHOD_NOT_ALLOWED")
    assert response["Allow"] == "GET"
    assert response["X-Request-ID"]


def test_body_over_limit_is_413_before_the_view(db, settings):
    client = APIClient()
    small = client.post("/api/v1/auth/login", {"username": "x", "password": "y"}, format="json")
    assert small.status_code == 401  # the middleware is loaded and lets small bodies through
    settings.INFERIA_MAX_BODY_BYTES = 64  # read per request, not at start-up
    response = client.post(
        "/api/v1/auth/login", {"username": "x" * 100, "password": "y"}, format="json"
    )
    error = assert_error(response, 413, "PAYLOAD_TOO_LARGE")
    assert "64" in error["message"]
    assert response["X-Request-ID"]


def test_body_at_the_limit_passes(db, settings):
    body = b'{"username": "x", "password": "y"}'
    settings.INFERIA_MAX_BODY_BYTES = len(body)
    response = APIClient().post("/api/v1/auth/login", body, content_type="application/json")
    assert_error(response, 401, "AUTHENTICATION_FAILED")


def test_body_over_limit_outside_drf_is_413(db, settings):
    settings.INFERIA_MAX_BODY_BYTES = 10
    response = Client().post("/healthz", "x" * 11, content_type="text/plain")
    assert_error(response, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("declared", ["abc", "-5"])
def test_invalid_content_length_is_400(db, declared):
    response = Client().post(
        "/api/v1/auth/login", "{}", content_type="application/json", CONTENT_LENGTH=declared
    )
    assert_error(response, 400, "VALIDATION_ERROR")


def test_malformed_json_is_400(db, anon_client):
    response = anon_client.post("/api/v1/auth/login", b"{not json", content_type="application/json")
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "Malformed" in error["message"]


def test_unsupported_media_type_is_415(db, anon_client):
    response = anon_client.post("/api/v1/auth/login", b"username=x", content_type="text/plain")
    assert_error(response, 415, "UNSUPPORTED_MEDIA_TYPE")


def test_unexpected_error_in_drf_view_is_500_without_traceback(alice_client, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("secret-sauce: database password is hunter2")

    monkeypatch.setattr(tenancy, "organization_create", explode)
    alice_client.raise_request_exception = False
    response = alice_client.post(
        "/api/v1/orgs", {"slug": "initech", "name": "Initech"}, format="json"
    )
    error = assert_error(response, 500, "INTERNAL_ERROR")
    text = response.content.decode()
    assert "secret-sauce" not in text and "hunter2" not in text
    assert "Traceback" not in text and "RuntimeError" not in text
    assert response["X-Request-ID"] in error["message"]


def test_unexpected_error_in_plain_django_view_is_500_envelope(db, settings):
    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    response = client.get("/test-crash", HTTP_X_REQUEST_ID="crash-1")
    error = assert_error(response, 500, "INTERNAL_ERROR")
    text = response.content.decode()
    assert "secret-sauce" not in text and "Traceback" not in text
    assert response["X-Request-ID"] == "crash-1"
    assert "crash-1" in error["message"]
