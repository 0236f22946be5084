"""Changing a provider account's base URL is as sensitive as replacing its secret
(a signed-in user, a fresh code for a 2FA user); a new base URL or secret is used
by the gateway from the very next call (tests/gateway/test_upstream_change_at_once.py)."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from keys.models import ProviderAccount
from tests.conftest import assert_error, code_now, enable_totp, to_step_start, wrong_code
from tests.gateway.conftest import UPSTREAM_SECRET
from tests.keys.conftest import (
    PRIVATE_BASE_URL,
    allow_private_upstream,
    create_provider_account,
    key_client,
    mint,
)

ORG = "/api/v1/orgs/acme"
ELSEWHERE = "http://127.0.0.1:9000/attacker/v1"
CHAT = {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def account(cast, alice_client) -> dict:
    allow_private_upstream(cast.acme)
    created = create_provider_account(alice_client, "openai-main", ["gpt-4o"])
    response = alice_client.put(
        f"{ORG}/provider-accounts/{created['id']}/secret",
        {"secret": UPSTREAM_SECRET},
        format="json",
    )
    assert response.status_code == 200, response.content
    return created


def _move(client, account_id, **extra):
    return client.patch(
        f"{ORG}/provider-accounts/{account_id}", {"base_url": ELSEWHERE, **extra}, format="json"
    )


def _base_url(account_id) -> str:
    return ProviderAccount.all_orgs.get(pk=account_id).base_url


def _moves_recorded() -> int:
    return AuditRecord.objects.filter(
        action="provider_account:manage", outcome="success", data__op="update"
    ).count()


def test_2fa_user_needs_a_fresh_code_to_move_the_base_url(cast, alice_client, account, clock_shift):
    to_step_start()
    device, _ = enable_totp(alice_client, cast.alice)
    assert_error(_move(alice_client, account["id"]), 401, "OTP_REQUIRED")
    assert_error(
        _move(alice_client, account["id"], otp_code=wrong_code(device)),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert _base_url(account["id"]) == PRIVATE_BASE_URL
    assert _moves_recorded() == 0
    clock_shift(30)  # the enrolment used this step's code
    response = _move(alice_client, account["id"], otp_code=code_now(device))
    assert response.status_code == 200, response.content
    assert _base_url(account["id"]) == ELSEWHERE
    record = AuditRecord.objects.get(action="provider_account:manage", data__op="update")
    assert record.data["changed"] == ["base_url"] and record.actor_user == cast.alice


def test_other_changes_need_no_code(cast, alice_client, account):
    enable_totp(alice_client, cast.alice)
    response = alice_client.patch(
        f"{ORG}/provider-accounts/{account['id']}",
        {"base_url": PRIVATE_BASE_URL, "tags": {"env": "prod"}},  # same URL: not a move
        format="json",
    )
    assert response.status_code == 200, response.content
    assert ProviderAccount.all_orgs.get(pk=account["id"]).tags == {"env": "prod"}


def test_api_key_cannot_move_the_base_url(cast, alice_client, account):
    key = mint(alice_client, name="ops", permissions=["provider_account:manage", "model:read"])
    error = assert_error(_move(key_client(key["key"]), account["id"]), 403, "PERMISSION_DENIED")
    assert "signed-in user" in error["message"]
    assert _base_url(account["id"]) == PRIVATE_BASE_URL
    assert _moves_recorded() == 0


def test_dashboard_asks_for_the_code_too(cast, alice_client, account, clock_shift):
    from tests.dashboard.conftest import page_client

    to_step_start()
    device, _ = enable_totp(alice_client, cast.alice)
    page = page_client(cast.alice)
    form = {
        "op": "update",
        "base_url": ELSEWHERE,
        "api_version": "",
        "models": "gpt-4o",
        "tags": "",
    }
    refused = page.post(f"/orgs/acme/provider-accounts/{account['id']}", form)
    assert refused.status_code == 400
    assert _base_url(account["id"]) == PRIVATE_BASE_URL
    clock_shift(30)
    saved = page.post(
        f"/orgs/acme/provider-accounts/{account['id']}", {**form, "otp_code": code_now(device)}
    )
    assert saved.status_code == 302, saved.content[:300]
    assert _base_url(account["id"]) == ELSEWHERE
