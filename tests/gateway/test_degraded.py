"""When Redis cannot count a request, each kind of limit says what happens
(``rate_limit_on_backend_error`` / ``quota_on_backend_error``, deny by default), the
credential is still verified (from the database), and the decision is audited and
alerted, never silent."""

from __future__ import annotations

import openai
import pytest

from audit.models import Alert, AuditRecord, UsageRecord
from tests.gateway.conftest import assert_sdk_error

CHAT = [{"role": "user", "content": "hi"}]


def _chat(client):
    return client.chat.completions.with_raw_response.create(
        model="openai-main/gpt-4o", messages=CHAT
    )


def _audit(request_id: str) -> AuditRecord:
    # With Redis down the record goes straight to the database (no stream to flush).
    (usage,) = UsageRecord.objects.filter(request_id=request_id)
    (record,) = AuditRecord.objects.filter(request_id=request_id)
    assert record.status_code == usage.status_code
    return record


def _alerts(cast) -> list[Alert]:
    return list(Alert.objects.filter(org=cast.acme, kind=Alert.Kind.GATEWAY_DEGRADED))


def test_by_default_an_outage_refuses_and_says_so(on_redis, llm, redis_outage, cast):
    client = llm.sdk(llm.key())
    assert _chat(client).http_response.status_code == 200
    redis_outage()
    with pytest.raises(openai.APIStatusError) as caught:
        _chat(client)
    assert_sdk_error(caught.value, 503, "SERVICE_UNAVAILABLE")
    record = _audit(caught.value.response.headers["X-Request-ID"])
    assert record.data["degraded"] == "denied"
    (alert,) = _alerts(cast)
    assert alert.data["allowed"] is False and "refused" in alert.message
    # The owner is told too: the alert itself is an audit record.
    assert AuditRecord.objects.filter(
        org=cast.acme, action="alert:raise", target_id=str(alert.pk)
    ).exists()


def test_rate_limits_set_to_allow_let_calls_through_audited_and_alerted(
    on_redis, llm, redis_outage, cast
):
    llm.org_settings(rate_limit_on_backend_error="allow")
    client = llm.sdk(llm.key())
    redis_outage()
    for _ in range(2):
        raw = _chat(client)
        assert raw.http_response.status_code == 200
        assert raw.parse().model == "openai-main/gpt-4o"
        record = _audit(raw.headers["X-Request-ID"])
        assert record.action == "inference:run" and record.data["degraded"] == "allowed"
    (alert,) = _alerts(cast)  # one alert for the outage, not one per call
    assert alert.data["allowed"] is True


@pytest.mark.parametrize("quota_policy", ["deny", "allow"])
def test_a_quota_decides_for_itself(on_redis, llm, redis_outage, cast, quota_policy):
    """Rate limits say allow; the org's monthly quota says ``quota_policy``."""
    llm.org_settings(
        rate_limit_on_backend_error="allow",
        monthly_token_quota=1_000_000,
        quota_on_backend_error=quota_policy,
    )
    client = llm.sdk(llm.key())
    redis_outage()
    if quota_policy == "deny":
        with pytest.raises(openai.APIStatusError) as caught:
            _chat(client)
        assert_sdk_error(caught.value, 503, "SERVICE_UNAVAILABLE")
    else:
        assert _chat(client).http_response.status_code == 200
    (alert,) = _alerts(cast)
    assert alert.data["allowed"] is (quota_policy == "allow")


def test_a_key_revoked_during_the_outage_is_refused_even_when_limits_allow(
    on_redis, llm, redis_outage, bob_client
):
    llm.org_settings(rate_limit_on_backend_error="allow")
    info = llm.key_info(bob_client)
    client = llm.sdk(info["key"])
    assert _chat(client).http_response.status_code == 200  # cached now
    redis_outage()
    assert _chat(client).http_response.status_code == 200
    # The revoke cannot bump the epoch in Redis; the database still knows.
    assert bob_client.delete(f"/api/v1/orgs/acme/api-keys/{info['id']}").status_code == 200
    with pytest.raises(openai.AuthenticationError) as caught:
        _chat(client)
    assert_sdk_error(caught.value, 401, "AUTHENTICATION_FAILED")
