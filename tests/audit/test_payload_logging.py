"""Prompts and answers are stored only when the org turns payload logging on;
then encrypted (bound to org and request) and pruned on their own, shorter retention."""

from __future__ import annotations

import json
from datetime import timedelta

from django.utils import timezone

from audit import jobs
from audit.models import Payload
from inferia import crypto
from tests.gateway.conftest import flush_usage

PROMPT = "the secret plan is purple"


def _call(llm):
    client = llm.sdk(llm.key())
    raw = client.chat.completions.with_raw_response.create(
        model="openai-main/gpt-4o", messages=[{"role": "user", "content": PROMPT}]
    )
    flush_usage()
    return raw.headers["X-Request-ID"]


def test_nothing_is_stored_by_default(llm):
    _call(llm)
    assert not Payload.objects.exists()


def test_stored_encrypted_when_turned_on_and_pruned_on_its_own_retention(llm, cast):
    response = llm.admin.patch(
        "/api/v1/orgs/acme",
        {"settings": {"payload_logging": True, "payload_retention_days": 2}},
        format="json",
    )
    assert response.status_code == 200, response.content
    request_id = _call(llm)
    payload = Payload.objects.get(request_id=request_id)
    assert PROMPT not in payload.encrypted
    clear = json.loads(crypto.decrypt(payload.encrypted, context=payload.context()))
    assert clear["request"]["messages"][0]["content"] == PROMPT
    assert clear["response"]["choices"][0]["message"]["content"] == "Hello from the fake upstream."
    Payload.objects.filter(pk=payload.pk).update(created_at=timezone.now() - timedelta(days=3))
    jobs.audit_retention()
    assert not Payload.objects.filter(pk=payload.pk).exists()
