"""The provider form: "test connection" through the gateway's guarded upstream path
(against the in-repo fake upstream), and per-model prices."""

from __future__ import annotations

import httpx
import pytest

from audit.models import AuditRecord
from inferia.errors import ValidationError
from keys import services
from keys.models import ProviderAccount
from orgs.access import resolve_member
from orgs.models import Organization
from orgs.scoping import org_scope
from tests.gateway.conftest import UPSTREAM_SECRET


def _allow(cast, hosts: list[str]) -> None:
    settings = {**cast.acme.settings, "allowed_private_hosts": hosts}
    Organization.objects.filter(pk=cast.acme.pk).update(settings=settings)
    cast.acme.refresh_from_db()


def _account(cast, fake_upstream, models) -> ProviderAccount:
    _allow(cast, [fake_upstream.url.removeprefix("http://")])
    with org_scope(cast.acme):
        return services.provider_account_create(
            access=resolve_member(cast.acme, cast.alice),
            name="openai-main",
            provider_type="openai",
            base_url=f"{fake_upstream.url}/v1",
            api_version="",
            models=models,
            tags={},
            secret=UPSTREAM_SECRET,
        )


def _recorded(fake_upstream) -> list[dict]:
    return httpx.get(f"{fake_upstream.url}/_requests").json()


@pytest.fixture
def upstream(fake_upstream):
    httpx.delete(f"{fake_upstream.url}/_requests")
    return fake_upstream


def _test(client, account, **kwargs):
    return client.post(f"/orgs/acme/provider-accounts/{account.pk}/test", follow=True, **kwargs)


def _last_test_record() -> AuditRecord:
    return (
        AuditRecord.objects.filter(action="provider_account:manage", data__op="test")
        .order_by("-seq")
        .first()
    )


# --- test connection --------------------------------------------------------------------------


def test_connection_ok_calls_the_provider_once_with_one_token(alice_page, cast, upstream):
    account = _account(cast, upstream, [{"name": "gpt-4o"}])
    page = _test(alice_page, account).content.decode()
    assert "Connection test passed." in page and "answered HTTP 200" in page
    assert UPSTREAM_SECRET not in page
    (call,) = _recorded(upstream)
    assert call["path"] == "/v1/chat/completions"
    assert call["body"]["max_tokens"] == 1 and call["body"]["model"] == "gpt-4o"
    assert call["headers"]["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    record = _last_test_record()
    assert record.outcome == "success" and record.actor_user_id == cast.alice.pk
    assert record.data["ok"] is True and record.data["status"] == 200
    assert UPSTREAM_SECRET not in str(record.data)


def test_connection_error_is_shown_sanitized_never_the_secret(alice_page, cast, upstream):
    # The fake upstream echoes the Authorization header in its error message.
    account = _account(cast, upstream, [{"name": "fake-error-401"}])
    page = _test(alice_page, account).content.decode()
    assert "Connection test failed." in page and "Upstream error 401" in page
    assert UPSTREAM_SECRET not in page and "[REDACTED]" in page
    record = _last_test_record()
    assert record.outcome == "failure" and record.data["status"] == 401
    assert UPSTREAM_SECRET not in str(record.data)


def test_connection_test_keeps_the_ssrf_guard(alice_page, cast, upstream):
    account = _account(cast, upstream, [{"name": "gpt-4o"}])
    _allow(cast, [])  # the org no longer allows the private address
    page = _test(alice_page, account).content.decode()
    assert "Connection test failed." in page and "private or link-local" in page
    assert _recorded(upstream) == []


def test_connection_test_without_models_calls_nothing(alice_page, cast, upstream):
    account = _account(cast, upstream, [])
    page = _test(alice_page, account).content.decode()
    assert "Enable at least one model first" in page and _recorded(upstream) == []


def test_connection_test_needs_manage_post_and_the_org(
    alice_page, bob_page, charlie_page, cast, upstream
):
    account = _account(cast, upstream, [{"name": "gpt-4o"}])
    url = f"/orgs/acme/provider-accounts/{account.pk}/test"
    assert alice_page.get(url).status_code == 405
    assert bob_page.post(url).status_code == 403
    assert charlie_page.post(f"/orgs/globex/provider-accounts/{account.pk}/test").status_code == 404
    assert _recorded(upstream) == []


# --- prices ---------------------------------------------------------------------------------------


def _update(client, account, **fields):
    data = {
        "op": "update",
        "base_url": account.base_url,
        "models": "\n".join(account.model_names),
        "tags": "",
        **fields,
    }
    return client.post(f"/orgs/acme/provider-accounts/{account.pk}", data)


def _public_account(cast) -> ProviderAccount:
    with org_scope(cast.acme):
        return services.provider_account_create(
            access=resolve_member(cast.acme, cast.alice),
            name="openai-main",
            provider_type="openai",
            base_url="https://8.8.8.8/v1",
            api_version="",
            models=[
                {
                    "name": "gpt-4o",
                    "input_price_per_million": 2.5,
                    "output_price_per_million": 10.0,
                },
                {"name": "o1"},
            ],
            tags={},
            secret="sk-live-" + "A" * 30,
        )


def test_prices_are_shown_and_edited_per_model(alice_page, cast):
    account = _public_account(cast)
    page = alice_page.get(f"/orgs/acme/provider-accounts/{account.pk}").content.decode()
    assert "gpt-4o: input price per million tokens" in page
    assert 'name="price_input_0"' in page and 'value="2.5"' in page
    response = _update(
        alice_page,
        account,
        price_input_0="3",
        price_output_0="12.125",
        price_input_1="0.5",
        price_output_1="",
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.enabled_models == [
        {"name": "gpt-4o", "input_price_per_million": 3.0, "output_price_per_million": 12.125},
        {"name": "o1", "input_price_per_million": 0.5},
    ]


@pytest.mark.parametrize(
    "value,message",
    [("-1", "greater than or equal to 0"), ("abc", "Enter a number."), ("NaN", "Enter a number.")],
)
def test_bad_prices_are_refused_and_nothing_changes(alice_page, cast, value, message):
    account = _public_account(cast)
    before = list(account.enabled_models)
    response = _update(alice_page, account, price_input_0=value, price_output_0="1")
    assert response.status_code == 400 and message in response.content.decode()
    account.refresh_from_db()
    assert account.enabled_models == before


def test_editing_the_model_list_keeps_the_prices(alice_page, cast):
    account = _public_account(cast)
    response = _update(alice_page, account, models="gpt-4o\no1\ngpt-4o-mini")
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.enabled_models[0]["input_price_per_million"] == 2.5
    assert account.enabled_models[2] == {"name": "gpt-4o-mini"}


def test_the_service_refuses_a_negative_price_from_any_edge(cast):
    account = _public_account(cast)
    with org_scope(cast.acme), pytest.raises(ValidationError):
        services.provider_account_update(
            access=resolve_member(cast.acme, cast.alice),
            account=account,
            changes={"models": [{"name": "gpt-4o", "input_price_per_million": -1.0}]},
        )
