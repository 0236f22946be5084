"""Structured request logs: one JSON line per request, through the redaction filter."""

from __future__ import annotations

import json
import logging

from audit.logging import JsonFormatter, RedactingFilter


def test_one_json_line_per_request_with_org_principal_route_status_latency(
    cast, bob_client, caplog
):
    with caplog.at_level(logging.INFO, logger="inferia.request"):
        response = bob_client.get("/api/v1/orgs/acme/members")
    (record,) = [r for r in caplog.records if r.name == "inferia.request"]
    handler_filter, formatter = RedactingFilter(), JsonFormatter()
    handler_filter.filter(record)
    line = json.loads(formatter.format(record))
    assert line["request_id"] == response["X-Request-ID"]
    assert (line["org"], line["principal"], line["method"], line["status"]) == (
        "acme",
        "bob",
        "GET",
        200,
    )
    assert line["route"] == "api/v1/orgs/<slug:org>/members"
    assert line["latency_ms"] >= 0 and line["level"] == "INFO"


def test_json_lines_are_redacted(caplog):
    logger = logging.getLogger("inferia.test.json")
    record = logger.makeRecord(
        logger.name,
        logging.WARNING,
        __file__,
        1,
        "login by %s with Bearer %s",
        ("eve@example.com", "abc.def.ghi"),
        None,
    )
    RedactingFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "eve@example.com" not in line and "abc.def.ghi" not in line
