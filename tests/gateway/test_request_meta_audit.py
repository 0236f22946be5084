"""The gateway audits a refusal from its RequestMeta (no faked Django META)."""

from __future__ import annotations

import httpx

from audit.models import AuditRecord


def test_gateway_refusal_is_audited_from_its_request_meta(cast, llm):
    response = httpx.get(
        f"{llm.base_url}/models",
        headers={"Authorization": "Bearer ifr_nope_nope", "User-Agent": "probe/9"},
        timeout=30,
    )
    assert response.status_code == 401
    row = AuditRecord.objects.filter(action="auth:gateway").latest("created_at")
    assert row.user_agent == "probe/9"
    assert row.client_ip == "127.0.0.1"
    assert row.request_id == response.headers["X-Request-ID"]
