"""Every gateway call leaves one usage record and one audit record, refusals too,
with nothing secret in either."""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
from django.forms.models import model_to_dict

from audit.models import AuditRecord, UsageRecord
from tests.conftest import client_for, to_step_start
from tests.gateway.conftest import UPSTREAM_SECRET, usage_rows, wait_for

CHAT = [{"role": "user", "content": "Say hello"}]


def _rows(request_id: str) -> tuple[UsageRecord, AuditRecord]:
    usage = usage_rows(request_id=request_id)
    audit = list(AuditRecord.objects.filter(request_id=request_id))
    assert len(usage) == 1 and len(audit) == 1, (usage, audit)
    return usage[0], audit[0]


def _dump(*rows) -> str:
    return json.dumps([model_to_dict(row) for row in rows], default=str)


def test_a_call_leaves_one_usage_and_one_audit_record(llm, cast):
    key = llm.key()
    prefix = llm.key_row(key).prefix
    raw = llm.sdk(key).chat.completions.with_raw_response.create(
        model="openai-main/gpt-4o", messages=CHAT
    )
    usage, audit = _rows(raw.headers["X-Request-ID"])
    assert usage.org_id == cast.acme.pk
    assert usage.user_id == cast.bob.pk and usage.service_account_id is None
    assert (usage.key_prefix, usage.endpoint, usage.model, usage.provider_account) == (
        prefix,
        "chat",
        "openai-main/gpt-4o",
        "openai-main",
    )
    assert (usage.status_code, usage.error_code, usage.streamed) == (200, "", False)
    assert (usage.prompt_tokens, usage.completion_tokens) == (2, 6)
    assert usage.cost == pytest.approx((2 * 2.5 + 6 * 10) / 1e6)
    assert 0 < usage.upstream_latency_ms <= usage.latency_ms
    assert usage.client_ip == "127.0.0.1"

    assert audit.org_id == cast.acme.pk and audit.actor_user_id == cast.bob.pk
    assert (audit.action, audit.outcome, audit.status_code) == ("inference:run", "success", 200)
    assert (audit.target_type, audit.target_id) == ("model", "openai-main/gpt-4o")
    assert audit.data == {"usage_id": str(usage.id), "key_prefix": prefix}
    assert audit.model == "openai-main/gpt-4o" and audit.request_id == usage.request_id
    assert audit.client_ip == "127.0.0.1"
    # The metering facts are stored once, in the usage record; the audit record shows
    # them through its link.
    assert (audit.latency_ms, audit.provider_account) == (None, "")
    assert (audit.prompt_tokens, audit.completion_tokens) == (None, None)
    assert audit.metering(usage) == {
        "latency_ms": usage.latency_ms,
        "provider_account": "openai-main",
        "prompt_tokens": 2,
        "completion_tokens": 6,
    }


def test_streamed_calls_are_flagged(llm):
    key = llm.key()
    stream = llm.sdk(key).chat.completions.with_raw_response.create(
        model="openai-main/gpt-4o", messages=CHAT, stream=True
    )
    request_id = stream.headers["X-Request-ID"]
    list(stream.parse())
    usage, audit = _rows(request_id)
    assert (usage.streamed, usage.status_code, usage.completion_tokens) == (True, 200, 6)
    assert (audit.action, audit.outcome) == ("inference:stream", "success")


def test_embeddings_and_completions_are_recorded_with_their_endpoint(llm):
    client = llm.sdk(llm.key())
    emb = client.embeddings.with_raw_response.create(
        model="openai-main/text-embedding-3-small", input="x y z"
    )
    text = client.completions.with_raw_response.create(
        model="openai-main/gpt-4o-mini", prompt="Once"
    )
    assert _rows(emb.headers["X-Request-ID"])[0].endpoint == "embeddings"
    assert _rows(emb.headers["X-Request-ID"])[0].prompt_tokens == 3
    assert _rows(text.headers["X-Request-ID"])[0].endpoint == "completions"


@pytest.mark.parametrize(
    ("model", "setup", "status", "code"),
    [
        ("openai-main/gpt-4o-mini", "rule", 403, "PERMISSION_DENIED"),
        ("openai-main/no-such-model", None, 404, "NOT_FOUND"),
        ("openai-main/gpt-4o", "limit", 429, "RATE_LIMITED"),
    ],
)
def test_refusals_are_recorded(llm, cast, model, setup, status, code, upstream_requests):
    key = llm.key()
    if setup == "rule":
        llm.grant("authz_rules:\n  - models: ['openai-main/gpt-4o']\n    users: [bob]\n")
    if setup == "limit":
        to_step_start(60)  # both calls in one window
        llm.org_settings(requests_per_minute=1)
        llm.sdk(key).models.list()
        llm.post("/chat/completions", key, {"model": model, "messages": CHAT})
    upstream_requests.clear()
    response = llm.post("/chat/completions", key, {"model": model, "messages": CHAT})
    assert response.status_code == status
    assert upstream_requests == []
    usage, audit = _rows(response.headers["X-Request-ID"])
    assert (usage.status_code, usage.error_code, usage.model) == (status, code, model)
    assert usage.key_prefix == llm.key_row(key).prefix and usage.org_id == cast.acme.pk
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cost) == (0, 0, 0.0)
    assert (audit.outcome, audit.status_code, audit.data["usage_id"]) == (
        "denied",
        status,
        str(usage.id),
    )


def test_missing_permission_and_validation_errors_are_recorded(llm):
    key = llm.key(permissions=["model:read"])
    response = llm.post("/chat/completions", key, {"model": "openai-main/gpt-4o", "messages": CHAT})
    usage, audit = _rows(response.headers["X-Request-ID"])
    assert (usage.status_code, audit.outcome) == (403, "denied")
    bad = llm.post("/chat/completions", llm.key(), {"messages": CHAT})
    usage, audit = _rows(bad.headers["X-Request-ID"])
    assert (usage.status_code, usage.error_code, audit.outcome) == (
        400,
        "VALIDATION_ERROR",
        "failure",
    )


def test_upstream_failures_are_recorded_as_failures(llm):
    response = llm.post(
        "/chat/completions", llm.key(), {"model": "openai-main/fake-error-500", "messages": CHAT}
    )
    usage, audit = _rows(response.headers["X-Request-ID"])
    assert (usage.status_code, usage.error_code, audit.outcome) == (
        502,
        "UPSTREAM_ERROR",
        "failure",
    )


def test_the_clients_request_id_is_echoed_and_used(llm):
    response = llm.post(
        "/chat/completions",
        llm.key(),
        {"model": "openai-main/gpt-4o", "messages": CHAT},
        **{"X-Request-ID": "client-abc-123"},
    )
    assert response.headers["X-Request-ID"] == "client-abc-123"
    _rows("client-abc-123")


def test_service_account_keys_are_attributed_to_the_service_account(llm, cast):
    alice = client_for(cast.alice)
    account = alice.post(
        "/api/v1/orgs/acme/service-accounts",
        {"slug": "ci-bot", "name": "CI", "role": "member"},
        format="json",
    ).json()
    llm.grant("authz_rules:\n  - models: ['openai-main/*']\n    service_accounts: [ci-bot]\n")
    key = llm.key(alice, service_account="ci-bot")
    raw = llm.sdk(key).chat.completions.with_raw_response.create(
        model="openai-main/gpt-4o", messages=CHAT
    )
    usage, audit = _rows(raw.headers["X-Request-ID"])
    assert str(usage.service_account_id) == account["id"] and usage.user_id is None
    assert audit.actor_user_id is None and audit.actor_label


def test_nothing_secret_in_any_row(llm, cast):
    key = llm.key()
    client = llm.sdk(key)
    client.chat.completions.create(model="openai-main/gpt-4o", messages=CHAT)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="openai-main/fake-error-500", messages=CHAT)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="openai-main/fake-error-400", messages=CHAT)
    list(client.chat.completions.create(model="openai-main/gpt-4o", messages=CHAT, stream=True))
    usage = usage_rows(4)
    audit = list(AuditRecord.objects.all())
    assert len(usage) == 4
    dumped = _dump(*usage, *audit)
    secret_part = key.split("_")[2]
    assert key not in dumped and secret_part not in dumped and secret_part[:12] not in dumped
    assert UPSTREAM_SECRET not in dumped and UPSTREAM_SECRET[:16] not in dumped
    assert "Say hello" not in dumped  # prompts are not logged either


def test_an_entry_of_a_deleted_org_does_not_block_the_others(llm):
    """Redis mode: a stream entry whose org is gone (deleted meanwhile) does not fail
    its batch; records outlive their org and keep its id (no database constraint)."""
    from gateway import usage
    from inferia import store

    if not store.redis_enabled():
        pytest.skip("the stream exists only with Redis (REDIS_URL)")
    orphan, gone_org, gone_user = str(uuid.uuid4()), uuid.uuid4(), uuid.uuid4()
    asyncio.run(
        usage.write(
            {
                "created_at": 1.7e9,
                "org_id": str(gone_org),
                "user_id": str(gone_user),
                "request_id": orphan,
                "endpoint": "chat",
                "model": "x/y",
                "status_code": 200,
            },
            [],
        )
    )
    raw = llm.sdk(llm.key()).chat.completions.with_raw_response.create(
        model="openai-main/gpt-4o", messages=CHAT
    )
    usage_row, _audit = _rows(raw.headers["X-Request-ID"])
    assert usage_row.status_code == 200
    kept = UsageRecord.objects.get(request_id=orphan)
    assert kept.org_id == gone_org
    assert AuditRecord.objects.get(request_id=orphan).actor_user_id == gone_user


def test_record_survives_redis_going_away_during_the_call(
    on_redis, llm, redis_outage, upstream_requests
):
    """Admitted while Redis was up; by the time the answer is back the stream is
    unreachable: the answer still goes out and its record lands in the database."""
    key = llm.key()
    llm.sdk(key).models.list()
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(
            llm.post,
            "/chat/completions",
            key,
            {"model": "openai-main/fake-slow-3000", "messages": CHAT},
        )
        wait_for(lambda: upstream_requests, what="the call to reach upstream")
        redis_outage()
        response = pending.result()
    assert response.status_code == 200, response.text
    record = UsageRecord.objects.get(
        request_id=response.headers["X-Request-ID"]
    )  # no flush: Redis is gone
    assert (record.status_code, record.completion_tokens) == (200, 6)
    assert AuditRecord.objects.filter(request_id=record.request_id).count() == 1
