"""Issue #5's question in one API call: who used gpt-4o last week, how many tokens,
and who was refused?"""

from __future__ import annotations

import httpx
import openai
import pytest
from django.utils import timezone

from audit import rollups
from orgs.services.auth import token_pair_issue
from tests.gateway.conftest import flush_usage


def test_usage_by_user_for_one_model_answers_the_question(llm, cast):
    client = openai.OpenAI(base_url=llm.base_url, api_key=llm.key())
    for _ in range(2):
        client.chat.completions.create(
            model="openai-main/gpt-4o", messages=[{"role": "user", "content": "two words"}]
        )
    client.chat.completions.create(
        model="openai-main/gpt-4o-mini", messages=[{"role": "user", "content": "x"}]
    )
    # vera (Viewer) is refused: no inference:run.
    vera_token = token_pair_issue(user=cast.vera).access_token
    refused = httpx.post(
        f"{llm.base_url}/chat/completions",
        json={"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {vera_token}", "OpenAI-Organization": "acme"},
    )
    assert refused.status_code == 403
    flush_usage()
    rollups.usage_rollup(period="day", moment=timezone.now())

    response = llm.admin.get(
        "/api/v1/orgs/acme/usage",
        {"group_by": "user", "model": "openai-main/gpt-4o", "period": "day"},
    )
    assert response.status_code == 200, response.content
    totals = {row["group"]: row for row in response.json()["totals"]}
    assert set(totals) == {"bob", "vera"}
    assert totals["bob"]["requests"] == 2 and totals["bob"]["denied"] == 0
    assert totals["bob"]["total_tokens"] == 2 * (2 + 6)
    assert totals["bob"]["cost"] == pytest.approx(2 * (2 * 2.5 + 6 * 10) / 1e6)
    assert totals["vera"]["denied"] == 1 and totals["vera"]["total_tokens"] == 0
    assert response.json()["series"][0]["period_start"]


def test_rollups_are_idempotent(llm):
    client = openai.OpenAI(base_url=llm.base_url, api_key=llm.key())
    client.chat.completions.create(
        model="openai-main/gpt-4o", messages=[{"role": "user", "content": "x"}]
    )
    flush_usage()
    from audit.models import UsageRollup

    now = timezone.now()
    first = rollups.usage_rollup(period="hour", moment=now)
    snapshot = list(
        UsageRollup.objects.values_list("model", "requests", "prompt_tokens", "completion_tokens")
    )
    second = rollups.usage_rollup(period="hour", moment=now)
    assert first == second == 1
    assert (
        list(
            UsageRollup.objects.values_list(
                "model", "requests", "prompt_tokens", "completion_tokens"
            )
        )
        == snapshot
    )
