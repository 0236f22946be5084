"""The REST API and the gateway answer the same credential the same way.

Both edges are adapters around one resolver (``keys.resolver``): each case
presents one credential to ``GET /api/v1/orgs/{org}/api-keys`` (any member),
to ``GET /api/llm/v1/models`` and to ``POST /api/llm/v1/chat/completions``, and
all three must agree on accept/refuse and the error code. The 2FA case was the
drift: the API refused a member's personal key (TWO_FACTOR_REQUIRED) while the
gateway let it through.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from inferia import clock
from keys.models import ServiceAccount
from orgs.models import Membership, Organization
from orgs.services import auth
from tests.conftest import PASSWORD, client_for
from tests.keys.conftest import mint

OK = (200, None)
UNAUTHENTICATED = (401, "AUTHENTICATION_FAILED")
TWO_FACTOR = (403, "TWO_FACTOR_REQUIRED")
NOT_FOUND = (404, "NOT_FOUND")


def _require_2fa(org: Organization) -> None:
    # Set directly: the toggle's own rules (who may turn it on) are not under test here.
    Organization.objects.filter(pk=org.pk).update(require_2fa=True)


def _jwt(user) -> str:
    return auth.token_pair_issue(user=user).access_token


# Each case: (cast, llm) -> (credential, org slug); the expected outcome on every edge.


def valid_personal_key(cast, llm):
    return llm.key(), "acme"


def personal_key_without_2fa_in_2fa_org(cast, llm):
    key = llm.key()
    _require_2fa(cast.acme)
    return key, "acme"


def key_of_removed_member(cast, llm):
    key = llm.key()
    membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
    response = client_for(cast.alice).delete(f"/api/v1/orgs/acme/members/{membership.pk}")
    assert response.status_code == 204, response.content
    return key, "acme"


def revoked_key(cast, llm):
    info = llm.key_info()
    response = client_for(cast.bob).delete(f"/api/v1/orgs/acme/api-keys/{info['id']}")
    assert response.status_code in (200, 204), response.content
    return info["key"], "acme"


def expired_key(cast, llm):
    key = llm.key(expires_in_days=1)
    clock.advance(2 * 86400)
    return key, "acme"


def key_of_deactivated_user(cast, llm):
    key = llm.key()
    auth.user_deactivate(user=cast.bob)
    return key, "acme"


def key_of_disabled_service_account(cast, llm):
    alice = client_for(cast.alice)
    response = alice.post(
        "/api/v1/orgs/acme/service-accounts",
        {"slug": "ci-bot", "name": "CI bot", "role": "member"},
        format="json",
    )
    assert response.status_code == 201, response.content
    key = mint(alice, permissions=["inference:run", "model:read"], service_account="ci-bot")["key"]
    account = ServiceAccount.all_orgs.get(org=cast.acme, slug="ci-bot")
    response = alice.patch(
        f"/api/v1/orgs/acme/service-accounts/{account.pk}", {"disabled": True}, format="json"
    )
    assert response.status_code == 200, response.content
    return key, "acme"


def access_jwt(cast, llm):
    return _jwt(cast.bob), "acme"


def expired_jwt(cast, llm):
    token = AccessToken(_jwt(cast.bob))
    token.set_exp(lifetime=timedelta(seconds=-60))  # re-signed below, with exp in the past
    return str(token), "acme"


def jwt_after_password_change(cast, llm):
    raw = _jwt(cast.bob)
    auth.password_change(
        user=cast.bob, current_password=PASSWORD, new_password="another-horse-battery-9"
    )
    return raw, "acme"


def jwt_without_2fa_in_2fa_org(cast, llm):
    raw = _jwt(cast.bob)
    _require_2fa(cast.acme)
    return raw, "acme"


def jwt_for_another_org(cast, llm):
    return _jwt(cast.bob), "globex"


CASES = [
    (valid_personal_key, OK),
    (personal_key_without_2fa_in_2fa_org, TWO_FACTOR),
    (key_of_removed_member, UNAUTHENTICATED),
    (revoked_key, UNAUTHENTICATED),
    (expired_key, UNAUTHENTICATED),
    (key_of_deactivated_user, UNAUTHENTICATED),
    (key_of_disabled_service_account, UNAUTHENTICATED),
    (access_jwt, OK),
    (expired_jwt, UNAUTHENTICATED),
    (jwt_after_password_change, UNAUTHENTICATED),
    (jwt_without_2fa_in_2fa_org, TWO_FACTOR),
    (jwt_for_another_org, NOT_FOUND),
]


def _outcome(status: int, body: dict) -> tuple[int, str | None]:
    if status == 200:
        return OK
    return status, body.get("error", {}).get("code")


def _api(raw: str, org: str) -> tuple[int, str | None]:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    response = client.get(f"/api/v1/orgs/{org}/api-keys")
    return _outcome(response.status_code, response.json())


def _gateway(llm, method: str, path: str, raw: str, org: str, body=None):
    response = httpx.request(
        method,
        f"{llm.base_url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {raw}", "OpenAI-Organization": org},
        timeout=30,
    )
    return _outcome(response.status_code, response.json())


@pytest.mark.parametrize(("make", "expected"), CASES, ids=[case.__name__ for case, _ in CASES])
def test_api_and_gateway_agree(cast, llm, make, expected):
    raw, org = make(cast, llm)
    answers = _answers(llm, raw, org)
    assert answers == dict.fromkeys(answers, expected)


# The same credential, answered once by every edge (so the gateway has cached its
# principal), then a change: every edge must refuse it alike on the very next call.


def _refresh(raw_refresh: str):
    return APIClient().post("/api/v1/auth/refresh", {"refresh_token": raw_refresh}, format="json")


def jwt_then_logout(cast, llm):
    pair = auth.token_pair_issue(user=cast.bob)

    def change():
        response = APIClient().post(
            "/api/v1/auth/logout", {"refresh_token": pair.refresh_token}, format="json"
        )
        assert response.status_code == 204, response.content

    return pair.access_token, "acme", change


def jwt_then_refresh_token_reuse(cast, llm):
    pair = auth.token_pair_issue(user=cast.bob)

    def change():
        assert _refresh(pair.refresh_token).status_code == 200
        # Reusing the rotated refresh token ends the whole login, its access tokens too.
        assert _refresh(pair.refresh_token).status_code == 401

    return pair.access_token, "acme", change


def jwt_then_password_change(cast, llm):
    def change():
        auth.password_change(
            user=cast.bob, current_password=PASSWORD, new_password="another-horse-battery-9"
        )

    return _jwt(cast.bob), "acme", change


def jwt_then_member_removed(cast, llm):
    def change():
        membership = Membership.all_orgs.get(org=cast.acme, user=cast.bob)
        response = client_for(cast.alice).delete(f"/api/v1/orgs/acme/members/{membership.pk}")
        assert response.status_code == 204, response.content

    return _jwt(cast.bob), "acme", change


def jwt_then_2fa_required(cast, llm):
    return _jwt(cast.bob), "acme", lambda: _require_2fa_announced(cast.acme)


def key_then_revoked(cast, llm):
    info = llm.key_info()

    def change():
        response = client_for(cast.bob).delete(f"/api/v1/orgs/acme/api-keys/{info['id']}")
        assert response.status_code in (200, 204), response.content

    return info["key"], "acme", change


def key_then_owner_removed(cast, llm):
    key = llm.key()
    _raw, _org, change = jwt_then_member_removed(cast, llm)
    return key, "acme", change


def key_then_2fa_required(cast, llm):
    return llm.key(), "acme", lambda: _require_2fa_announced(cast.acme)


def _require_2fa_announced(org: Organization) -> None:
    # As the service would, minus its own rules (who may turn it on): the flag, then
    # the epoch, so every gateway process drops what it cached for the org.
    from orgs.signals import access_changed

    _require_2fa(org)
    access_changed.send(sender=Organization, org_ids=[org.pk])


CHANGES = [
    (jwt_then_logout, UNAUTHENTICATED),
    (jwt_then_refresh_token_reuse, UNAUTHENTICATED),
    (jwt_then_password_change, UNAUTHENTICATED),
    (jwt_then_member_removed, NOT_FOUND),
    (jwt_then_2fa_required, TWO_FACTOR),
    (key_then_revoked, UNAUTHENTICATED),
    (key_then_owner_removed, UNAUTHENTICATED),
    (key_then_2fa_required, TWO_FACTOR),
]


def _answers(llm, raw: str, org: str) -> dict:
    return {
        "api": _api(raw, org),
        "gateway models": _gateway(llm, "GET", "/models", raw, org),
        "gateway chat": _gateway(
            llm,
            "POST",
            "/chat/completions",
            raw,
            org,
            {"model": "openai-main/gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
        ),
    }


@pytest.mark.parametrize(("make", "expected"), CHANGES, ids=[case.__name__ for case, _ in CHANGES])
def test_api_and_gateway_agree_right_after_a_change(cast, llm, make, expected):
    raw, org, change = make(cast, llm)
    before = _answers(llm, raw, org)
    assert before == dict.fromkeys(before, OK)  # the gateway has cached the principal now
    change()
    after = _answers(llm, raw, org)
    assert after == dict.fromkeys(after, expected)
