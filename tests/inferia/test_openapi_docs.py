"""The OpenAPI schema at /api/schema/ and the interactive docs at /api/docs/."""

from __future__ import annotations

import re

from django.core.management import call_command
from django.test import Client

EXPECTED_PATHS = {
    "/api/v1/auth/login",
    "/api/v1/auth/refresh",
    "/api/v1/auth/logout",
    "/api/v1/auth/me",
    "/api/v1/auth/password",
    "/api/v1/auth/2fa/setup",
    "/api/v1/auth/2fa/confirm",
    "/api/v1/auth/2fa/disable",
    "/api/v1/orgs",
    "/api/v1/orgs/{org}",
    "/api/v1/orgs/{org}/members",
    "/api/v1/orgs/{org}/members/{id}",
    "/api/v1/orgs/{org}/roles",
    "/api/v1/orgs/{org}/roles/{id}",
    "/api/v1/orgs/{org}/teams",
    "/api/v1/orgs/{org}/teams/{id}",
    "/api/v1/orgs/{org}/invitations",
    "/api/v1/orgs/{org}/invitations/{id}",
    "/api/v1/invitations/{token}/accept",
}


def test_schema_is_an_openapi_document_with_every_api_path(db):
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200, response.content[:500]
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Inferia API"
    assert EXPECTED_PATHS <= set(document["paths"]), EXPECTED_PATHS - set(document["paths"])
    assert set(document["paths"]["/api/v1/orgs/{org}/invitations"]) >= {"get", "post"}


def test_schema_documents_bearer_authentication(db):
    document = Client().get("/api/schema/?format=json").json()
    bearer = document["components"]["securitySchemes"]["bearerAuth"]
    assert bearer["type"] == "http" and bearer["scheme"] == "bearer"
    assert "POST /api/v1/auth/login" in bearer["description"]
    assert document["paths"]["/api/v1/auth/me"]["get"]["security"] == [{"bearerAuth": []}]


def test_schema_is_served_as_yaml_by_default(db):
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


def test_schema_generates_without_warnings_and_validates(db, tmp_path):
    # --fail-on-warn turns every drf-spectacular warning or error into a failure.
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3.")


def test_docs_render_from_our_own_static_files(db):
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert '"/api/schema/"' in html
    external = re.findall(r"""(?:src|href)=["'](?:https?:)?//[^"']+""", html)
    assert external == []
    for cdn in ("cdn.", "jsdelivr", "unpkg", "cdnjs", "googleapis"):
        assert cdn not in html


def test_docs_static_files_ship_with_the_project():
    from django.contrib.staticfiles import finders

    # drf-spectacular-sidecar vendors Swagger UI: collectstatic picks it up.
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui.css")
