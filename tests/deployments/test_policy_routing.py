"""Policy routing: callers without access to a ``requires_access`` target are served by
the next one ("GPT-4 for managers"), a ``max_quota_percent`` target is left once the
org has used that much of its monthly quota, and the answer, the usage record and the
audit record name the target that answered, at that target's prices."""

from __future__ import annotations

import pytest

from tests.conftest import client_for
from tests.deployments.routing_fixtures import audit_of, target, usage_of
from tests.gateway.conftest import assert_gateway_error

TARGET = "X-Inferia-Target"
MANAGERS_ONLY = {
    "targets": [
        target("gpt4", "openai-main", "gpt-4o", requires_access=True),
        target(
            "mini",
            "openai-main",
            "gpt-4o-mini",
            priority=1,
            input_price_per_million=1000,
            output_price_per_million=2000,
        ),
    ]
}


@pytest.fixture
def managers(fleet, cast):
    """bob (a member) may use the deployment and gpt-4o-mini; dave (the manager) the
    deployment and gpt-4o."""
    fleet.llm.grant(
        "authz_rules:\n"
        "  - models: ['deployment/*', 'openai-main/gpt-4o-mini']\n    users: [bob]\n"
        "  - models: ['deployment/*', 'openai-main/gpt-4o']\n    users: [dave]\n"
    )
    fleet.deploy("assistant", MANAGERS_ONLY)
    return fleet.key(cast.bob), fleet.llm.key(client_for(cast.dave))


def test_a_caller_without_access_to_the_first_target_is_served_by_the_next(
    backend, fleet, managers
):
    member_key, manager_key = managers
    member = fleet.chat(member_key, "deployment/assistant")
    assert member.status_code == 200 and member.headers[TARGET] == "mini"
    manager = fleet.chat(manager_key, "deployment/assistant")
    assert manager.status_code == 200 and manager.headers[TARGET] == "gpt4"
    # The upstream got gpt-4o-mini for the member, gpt-4o for the manager.
    assert fleet.calls_to(fleet.healthy, "gpt-4o-mini") == 1
    assert fleet.calls_to(fleet.healthy, "gpt-4o") == 1
    member_audit, manager_audit = audit_of(member), audit_of(manager)
    assert (member_audit.data["target"], member_audit.data["target_fqn"]) == (
        "mini",
        "openai-main/gpt-4o-mini",
    )
    assert member_audit.data["attempts"] == [{"target": "gpt4", "outcome": "skipped:access"}]
    assert manager_audit.data["target"] == "gpt4"
    assert manager_audit.actor_label != member_audit.actor_label


def test_cost_follows_the_target_that_answered(fleet, managers):
    member_key, manager_key = managers
    member = usage_of(fleet.chat(member_key, "deployment/assistant"))
    # The fake upstream reports 1 prompt and 6 completion tokens; mini's own prices.
    assert (member.prompt_tokens, member.completion_tokens) == (1, 6)
    assert member.cost == pytest.approx((1 * 1000 + 6 * 2000) / 1e6)
    manager = usage_of(fleet.chat(manager_key, "deployment/assistant"))
    # gpt-4o at its account's prices (whole micro-units, as for any model).
    assert manager.cost == pytest.approx(int(1 * 2.5 + 6 * 10.0) / 1e6)


def test_a_caller_who_may_use_no_target_is_refused(fleet, cast):
    fleet.llm.grant("authz_rules:\n  - models: ['deployment/*']\n    users: [bob]\n")
    fleet.deploy(
        "exclusive", {"targets": [target("gpt4", "openai-main", "gpt-4o", requires_access=True)]}
    )
    response = fleet.chat(fleet.key(), "deployment/exclusive")
    assert_gateway_error(response, 403, "PERMISSION_DENIED")
    assert fleet.calls_to(fleet.healthy) == 0


def test_above_the_quota_threshold_calls_go_to_the_cheaper_target(backend, fleet):
    fleet.llm.org_settings(monthly_token_quota=10_000)
    fleet.deploy(
        "thrifty",
        {
            "targets": [
                target("premium", "openai-main", "gpt-4o", max_quota_percent=0.1),
                target("budget", "slow-up", "gpt-4o", priority=1),
            ]
        },
    )
    key = fleet.key()
    # Each call settles to 7 tokens: 0, 7, then 14 of 10,000 used before the call.
    answered = [
        fleet.chat(key, "deployment/thrifty", max_tokens=5).headers[TARGET] for _ in range(3)
    ]
    assert answered == ["premium", "premium", "budget"]
    last = fleet.chat(key, "deployment/thrifty", max_tokens=5)
    assert last.headers[TARGET] == "budget"
    assert audit_of(last).data["attempts"] == [{"target": "premium", "outcome": "skipped:quota"}]


def test_without_an_org_quota_the_threshold_never_applies(fleet):
    fleet.deploy(
        "thrifty",
        {"targets": [target("premium", "openai-main", "gpt-4o", max_quota_percent=0)]},
    )
    response = fleet.chat(fleet.key(), "deployment/thrifty")
    assert response.status_code == 200 and response.headers[TARGET] == "premium"
