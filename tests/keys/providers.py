"""Helpers shared by the provider-account tests (accounts, secrets, SSRF, rotation, admin)."""

from __future__ import annotations

from django.db import connection
from rest_framework.test import APIClient

ACCOUNTS = "/api/v1/orgs/{org}/provider-accounts"
PUBLIC_URL = "https://8.8.8.8/v1"  # an IP literal: accepted without any DNS lookup

# Shaped like no pattern the redaction knows (not sk-..., not a JWT), so a leak
# cannot hide behind the audit scrubber.
SECRET = "azkey0f3c9a1b7d2e4c6a8b0d1f3e5a7c9b1d"
OTHER_SECRET = "azkey9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"


def accounts_url(org: str = "acme", account_id: str | None = None, suffix: str = "") -> str:
    url = ACCOUNTS.format(org=org)
    if account_id is not None:
        url += f"/{account_id}"
    return url + suffix


def create_account(client: APIClient, org: str = "acme", **body) -> dict:
    """POST a provider account (public base URL by default); assert 201; return its JSON."""
    body.setdefault("name", "openai-main")
    body.setdefault("provider_type", "openai")
    body.setdefault("base_url", PUBLIC_URL)
    response = client.post(accounts_url(org), body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def put_secret(client: APIClient, account_id: str, org: str = "acme", **body):
    return client.put(accounts_url(org, account_id, "/secret"), body, format="json")


def dump_database() -> str:
    """Every row of every table as text, read with a raw cursor (no ORM, no managers)."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)
