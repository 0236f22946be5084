"""Two web processes on different ports, behind nothing (issue 12, section 3).

Each test starts two real ``uvicorn inferia.asgi:application`` processes, A and B,
on the test database and on the store of ``backend`` (Redis, or the database's
counters when embedded: a SQLite file both processes open), with the in-repo fake
upstream as the provider. What one process learns through the REST API the other
must enforce on its very next call (no sleep), and every limit and quota is one
budget for both: N calls alternating between A and B, and the N+1th is refused
whichever process gets it.

The processes run on the real clock (the test's ``clock_shift`` does not reach
them), so limit tests start with enough of the current minute ahead.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from orgs.models import Membership
from tests.gateway.conftest import assert_gateway_error
from tests.gateway.processes import GatewayProcess

CHAT = [{"role": "user", "content": "hi"}]
GPT4O = {"model": "openai-main/gpt-4o", "messages": CHAT}
MINI = {"model": "openai-main/gpt-4o-mini", "messages": CHAT}
# The quota reservation's prompt part (tests/gateway/test_quotas.py): the fake
# upstream counts 1 prompt token and answers 6, so a call settles to 7 tokens.
P = 45
PERMISSIONS = ["inference:run", "inference:stream", "model:read"]


def _ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return response


def _warm(key: str, *processes: GatewayProcess) -> None:
    """Two calls on each process: each caches the key's principal."""
    for process in processes:
        for _ in range(2):
            body = _ok(process.chat(key, GPT4O)).json()
            assert body["choices"][0]["message"]["content"] == "Hello from the fake upstream."


def _mint(rest: httpx.Client, **body) -> dict:
    body.setdefault("name", "k")
    body.setdefault("permissions", PERMISSIONS)
    answer = rest.post("/orgs/acme/api-keys", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def _org_settings(rest: httpx.Client, **values) -> None:
    answer = rest.patch("/orgs/acme", json={"settings": values})
    assert answer.status_code == 200, answer.text


def _put_rules(rest: httpx.Client, yaml_text: str) -> None:
    answer = rest.put(
        "/orgs/acme/access-rules.yaml",
        content=yaml_text,
        headers={"Content-Type": "application/yaml"},
    )
    assert answer.status_code == 200, answer.text


def _minute_with_room(seconds: float = 20.0) -> None:
    """Limits count per calendar minute of the real clock: when fewer than
    ``seconds`` of this one are left, wait for the next so no window turns mid-test."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.05)


# --- a change through one process is refused by the other at once ------------------------


def test_a_key_revoked_on_a_is_refused_by_b_on_the_very_next_call(two_processes, llm):
    a, b = two_processes
    bob_on_a = a.rest("bob")
    info = _mint(bob_on_a)
    _warm(info["key"], a, b)
    revoked = bob_on_a.delete(f"/orgs/acme/api-keys/{info['id']}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked", revoked.text
    for process in (b, a):
        error = assert_gateway_error(process.chat(info["key"], GPT4O), 401, "AUTHENTICATION_FAILED")
        assert error["message"] == f"API key {info['prefix']} is revoked"


def test_a_member_removed_on_a_is_refused_by_b_at_once(two_processes, llm, cast):
    a, b = two_processes
    key = _mint(b.rest("bob"))["key"]
    _warm(key, b)
    membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    removed = a.rest("alice").delete(f"/orgs/acme/members/{membership.pk}")
    assert removed.status_code == 204, removed.text
    assert_gateway_error(b.chat(key, GPT4O), 401, "AUTHENTICATION_FAILED")


def test_a_service_account_disabled_on_a_is_refused_by_b_at_once(two_processes, llm):
    a, b = two_processes
    alice_on_a = a.rest("alice")
    account = alice_on_a.post(
        "/orgs/acme/service-accounts", json={"slug": "ci-bot", "name": "CI bot", "role": "member"}
    )
    assert account.status_code == 201, account.text
    _put_rules(
        alice_on_a,
        "authz_rules:\n  - models: ['openai-main/*']\n    service_accounts: [ci-bot]\n",
    )
    key = _mint(alice_on_a, service_account="ci-bot")["key"]
    _warm(key, b)
    disabled = alice_on_a.patch(
        f"/orgs/acme/service-accounts/{account.json()['id']}", json={"disabled": True}
    )
    assert disabled.status_code == 200, disabled.text
    assert_gateway_error(b.chat(key, GPT4O), 401, "AUTHENTICATION_FAILED")


def test_an_access_rule_changed_on_a_is_applied_by_b_at_once(two_processes, llm):
    a, b = two_processes
    key = llm.key()
    _warm(key, b)
    models = httpx.get(
        f"{b.url}/api/llm/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert "openai-main/gpt-4o" in {m["id"] for m in _ok(models).json()["data"]}
    _put_rules(
        a.rest("alice"), "authz_rules:\n  - models: ['openai-main/gpt-4o-mini']\n    users: [bob]\n"
    )
    assert_gateway_error(b.chat(key, GPT4O), 403, "PERMISSION_DENIED")
    assert _ok(b.chat(key, MINI)).json()["model"] == "openai-main/gpt-4o-mini"


# --- one budget for both processes -------------------------------------------------------


def _alternate(calls: list[tuple[str, dict]], processes: list[GatewayProcess]) -> list[int]:
    """Send ``calls`` (key, body) in turn to A, B, A, B...; each must succeed.
    Answers each one's ``X-RateLimit-Remaining``."""
    remaining = []
    for index, (key, body) in enumerate(calls):
        response = _ok(processes[index % 2].chat(key, body))
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    return remaining


@pytest.mark.parametrize("first", [0, 1], ids=["next-on-a", "next-on-b"])
def test_a_keys_request_limit_is_one_budget_for_both_processes(two_processes, llm, first):
    n = 6
    _org_settings(two_processes[0].rest("alice"), key_requests_per_minute=n)
    key = llm.key()
    _minute_with_room()
    order = [two_processes[first], two_processes[1 - first]]
    assert _alternate([(key, GPT4O)] * n, order) == list(range(n - 1, -1, -1))
    for process in (order[n % 2], order[(n + 1) % 2]):  # the N+1th, then the other one
        refused = process.chat(key, GPT4O)
        error = assert_gateway_error(refused, 429, "RATE_LIMITED")
        assert "key" in error["message"]
        assert refused.headers["X-RateLimit-Limit"] == str(n)
        assert refused.headers["X-RateLimit-Remaining"] == "0"
        assert refused.headers["Retry-After"]


def test_an_orgs_request_limit_is_one_budget_for_both_processes(two_processes, llm, cast):
    a, b = two_processes
    n = 5
    alice_on_b = b.rest("alice")
    _put_rules(alice_on_b, "authz_rules:\n  - models: ['openai-main/*']\n    users: [bob, dave]\n")
    _org_settings(alice_on_b, requests_per_minute=n)
    bob_key, dave_key = _mint(a.rest("bob"))["key"], _mint(b.rest("dave"))["key"]
    _minute_with_room()
    calls = [((bob_key, dave_key)[i % 3 == 2], GPT4O) for i in range(n)]
    assert _alternate(calls, [a, b]) == list(range(n - 1, -1, -1))
    for process in (b, a):
        for key in (bob_key, dave_key):
            error = assert_gateway_error(process.chat(key, GPT4O), 429, "RATE_LIMITED")
            assert "org" in error["message"]


@pytest.fixture(params=["org", "key"])
def token_quota_100(request, two_processes, llm):
    """A key under a monthly quota of 100 tokens: the org's (set through process A's
    API) or the key's own."""
    a, _b = two_processes
    key = llm.key()
    if request.param == "org":
        _org_settings(a.rest("alice"), monthly_token_quota=100)
    else:
        row = llm.key_row(key)
        row.monthly_token_quota = 100
        row.save(update_fields=["monthly_token_quota"])
    return request.param, key


def _quota_refused(process: GatewayProcess, key: str, max_tokens: int) -> dict:
    response = process.chat(key, {**GPT4O, "max_tokens": max_tokens})
    error = assert_gateway_error(response, 429, "QUOTA_EXCEEDED")
    assert 1 <= int(response.headers["Retry-After"]) <= 31 * 86400
    return error


def test_a_monthly_token_quota_is_one_budget_for_both_processes(
    two_processes, llm, token_quota_100
):
    a, b = two_processes
    scope, key = token_quota_100
    _ok(a.chat(key, {**GPT4O, "max_tokens": 50}))  # reserved P + 50 on A, settled to 7
    error = _quota_refused(b, key, 100 - 7 - P + 1)  # B sees A's 7: 7 + P + 49 > 100
    assert scope in error["message"] and "quota tokens 100" in error["message"]
    _ok(b.chat(key, {**GPT4O, "max_tokens": 100 - 7 - P}))  # 7 + P + 48 = 100 fits exactly
    _quota_refused(a, key, 42)  # A sees B's 7: 14 + P + 42 > 100
    _quota_refused(b, key, 42)


def test_parallel_calls_on_both_processes_cannot_overrun_a_quota(
    two_processes, llm, token_quota_100
):
    """Ten slow calls at once, five on each process, each reserving 50 of 100 tokens:
    two get through in all, whichever process they reached; once settled, the room
    left is the same on both."""
    a, b = two_processes
    _scope, key = token_quota_100
    body = {"model": "openai-main/fake-slow-3000", "messages": CHAT, "max_tokens": 50 - P}
    for process in (a, b):  # build the principal on both first: the race is on the quota
        _ok(
            httpx.get(
                f"{process.url}/api/llm/v1/models", headers={"Authorization": f"Bearer {key}"}
            )
        )
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(lambda i: (a, b)[i % 2].chat(key, body), range(10)))
    assert sorted(r.status_code for r in responses) == [200] * 2 + [429] * 8
    for response in responses:
        if response.status_code == 429:
            assert_gateway_error(response, 429, "QUOTA_EXCEEDED")
    # Settled to 2 x 7 tokens on whichever processes served them: 87 more is refused
    # on both, 86 fits.
    _quota_refused(a, key, 87 - P)
    _quota_refused(b, key, 87 - P)
    _ok(b.chat(key, {**GPT4O, "max_tokens": 86 - P}))
