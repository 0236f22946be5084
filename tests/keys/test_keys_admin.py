"""The operator console for keys/: provider secrets are write-only, the emergency
revoke action is audited and takes effect at once, key digests are never shown,
and every changelist renders across organizations."""

from __future__ import annotations

import json
import re

import pytest

from audit.models import AuditRecord
from keys.models import AccessRule, ApiKey, ProviderAccount, ServiceAccount
from keys.services import provider_secret_plaintext
from tests.conftest import assert_error, client_for
from tests.keys.conftest import key_client, mint
from tests.keys.providers import OTHER_SECRET, PUBLIC_URL, SECRET, create_account, dump_database

ADMIN_SECRET = "adminset7c1e9b3a5d7f9e1c3b5a7d9f1e3c5b7a"


def _change_url(account_id) -> str:
    return f"/admin/keys/provideraccount/{account_id}/change/"


def _form(row: ProviderAccount, **overrides) -> dict:
    """The change form as a browser posts it, unchanged unless overridden."""
    data = {
        "org": row.org_id,
        "name": row.name,
        "provider_type": row.provider_type,
        "base_url": row.base_url,
        "api_version": row.api_version,
        "deployments": json.dumps(row.deployments),
        "enabled_models": json.dumps(row.enabled_models),
        "tags": json.dumps(row.tags),
        "secret_ref": row.secret_ref,
        "new_secret": "",
    }
    data.update(overrides)
    return data


def _password_inputs(html: str) -> list[str]:
    return re.findall(r"<input[^>]*type=\"password\"[^>]*>", html)


def _form_errors(response) -> str:
    return " ".join(
        re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode(), re.S)
    )


@pytest.fixture
def account(cast, alice_client):
    body = create_account(alice_client, models=["gpt-4o"], tags={"env": "prod"}, secret=SECRET)
    return ProviderAccount.all_orgs.get(pk=body["id"])


# --- provider accounts: write-only secret -------------------------------------------------------


def test_change_form_has_an_empty_write_only_secret_field(cast, admin_client, account):
    page = admin_client.get(_change_url(account.pk))
    assert page.status_code == 200
    html = page.content.decode()
    inputs = _password_inputs(html)
    assert len(inputs) == 1 and 'name="new_secret"' in inputs[0]
    assert "value=" not in inputs[0]
    assert SECRET not in html and account.encrypted_secret not in html
    assert 'name="encrypted_secret"' not in html


def test_setting_the_secret_in_admin_encrypts_it(cast, admin_client, account, clock_shift):
    clock_shift(60)
    response = admin_client.post(_change_url(account.pk), _form(account, new_secret=ADMIN_SECRET))
    assert response.status_code == 302, _form_errors(response)
    row = ProviderAccount.all_orgs.get(pk=account.pk)
    assert row.encrypted_secret != account.encrypted_secret
    assert json.loads(row.encrypted_secret)["kid"]
    assert row.secret_updated_at > account.secret_updated_at
    assert provider_secret_plaintext(row) == ADMIN_SECRET
    assert ADMIN_SECRET not in dump_database()
    record = AuditRecord.objects.get(action="provider_account:manage", data__op="admin_change")
    assert record.actor_label == "admin:admin" and record.org_id == cast.acme.pk
    assert record.data["secret_set"] is True
    assert ADMIN_SECRET not in json.dumps(record.data)
    # The API sees a new secret, never its value.
    detail = admin_client.get(_change_url(account.pk)).content.decode()
    assert ADMIN_SECRET not in detail


def test_saving_without_a_new_secret_keeps_the_old_one(cast, admin_client, account):
    response = admin_client.post(_change_url(account.pk), _form(account, tags='{"env": "staging"}'))
    assert response.status_code == 302, _form_errors(response)
    row = ProviderAccount.all_orgs.get(pk=account.pk)
    assert row.tags == {"env": "staging"}
    assert row.encrypted_secret == account.encrypted_secret
    assert row.secret_updated_at == account.secret_updated_at
    assert provider_secret_plaintext(row) == SECRET
    assert AuditRecord.objects.get(data__op="admin_change").data["secret_set"] is False


def test_a_refused_form_does_not_echo_the_typed_secret(cast, admin_client, account):
    response = admin_client.post(
        _change_url(account.pk),
        _form(account, base_url="http://169.254.169.254", new_secret=OTHER_SECRET),
    )
    assert response.status_code == 200 and "base_url" in response.content.decode()
    html = response.content.decode()
    assert OTHER_SECRET not in html
    assert all("value=" not in tag for tag in _password_inputs(html))
    assert provider_secret_plaintext(ProviderAccount.all_orgs.get(pk=account.pk)) == SECRET


def test_adding_an_account_in_admin_binds_the_secret_to_the_new_row(cast, admin_client):
    data = {
        "org": cast.globex.pk,
        "name": "admin-made",
        "provider_type": "anthropic",
        "base_url": PUBLIC_URL,
        "api_version": "",
        "deployments": "{}",
        "enabled_models": "[]",
        "tags": "{}",
        "secret_ref": "",
        "new_secret": ADMIN_SECRET,
    }
    response = admin_client.post("/admin/keys/provideraccount/add/", data)
    assert response.status_code == 302, _form_errors(response)
    row = ProviderAccount.all_orgs.get(name="admin-made")
    assert row.org_id == cast.globex.pk and row.has_secret and row.secret_updated_at
    assert provider_secret_plaintext(row) == ADMIN_SECRET
    assert ADMIN_SECRET not in row.encrypted_secret
    record = AuditRecord.objects.get(data__op="admin_create")
    assert record.org_id == cast.globex.pk and record.data["secret_set"] is True


def test_emptied_json_boxes_mean_none(cast, admin_client):
    data = {
        "org": cast.acme.pk,
        "name": "bare",
        "provider_type": "openai",
        "base_url": PUBLIC_URL,
        "api_version": "",
        "deployments": "",
        "enabled_models": "",
        "tags": "",
        "secret_ref": "",
        "new_secret": "",
    }
    response = admin_client.post("/admin/keys/provideraccount/add/", data)
    assert response.status_code == 302, _form_errors(response)
    row = ProviderAccount.all_orgs.get(name="bare")
    assert (row.deployments, row.enabled_models, row.tags, row.has_secret) == ({}, [], {}, False)


def test_duplicate_name_in_admin_is_a_form_error(cast, admin_client, account, charlie_client):
    data = _form(account)
    response = admin_client.post("/admin/keys/provideraccount/add/", data)
    assert response.status_code == 200
    assert "already exists" in _form_errors(response)
    assert ProviderAccount.all_orgs.filter(name=account.name).count() == 1
    # The same name in another org is fine.
    response = admin_client.post(
        "/admin/keys/provideraccount/add/", {**data, "org": cast.globex.pk}
    )
    assert response.status_code == 302, _form_errors(response)


def test_tenant_users_cannot_open_the_admin(cast, client, account):
    client.force_login(cast.alice)  # owner of Acme, not staff
    response = client.get(_change_url(account.pk))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = client.post(_change_url(account.pk), _form(account, new_secret=ADMIN_SECRET))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert provider_secret_plaintext(ProviderAccount.all_orgs.get(pk=account.pk)) == SECRET


# --- API keys: emergency revoke, no digests --------------------------------------------------------


@pytest.fixture
def keys(cast, alice_client, bob_client, charlie_client):
    minted = {
        "alice": mint(alice_client, name="alice-key"),
        "bob": mint(bob_client, name="bob-key"),
        "charlie": mint(charlie_client, org="globex", name="charlie-key"),
    }
    for owner, body in minted.items():
        org = "globex" if owner == "charlie" else "acme"
        assert (
            key_client(body["key"]).get(f"/api/v1/orgs/{org}/access-rules/effective").status_code
            == 200
        )
    return minted


def _revoke(admin_client, *ids):
    return admin_client.post(
        "/admin/keys/apikey/",
        {"action": "revoke_selected", "_selected_action": [str(i) for i in ids]},
    )


def test_revoke_action_revokes_across_orgs_and_audits(cast, admin_client, keys):
    response = _revoke(admin_client, keys["alice"]["id"], keys["charlie"]["id"])
    assert response.status_code == 302
    assert ApiKey.all_orgs.get(pk=keys["alice"]["id"]).revoked_at is not None
    assert ApiKey.all_orgs.get(pk=keys["charlie"]["id"]).revoked_at is not None
    assert ApiKey.all_orgs.get(pk=keys["bob"]["id"]).revoked_at is None

    records = AuditRecord.objects.filter(action="api_key:revoke")
    assert {(r.org_id, r.target_type, r.target_id) for r in records} == {
        (cast.acme.pk, "keys.apikey", keys["alice"]["id"]),
        (cast.globex.pk, "keys.apikey", keys["charlie"]["id"]),
    }
    for record in records:
        assert record.actor_label == "admin:admin" and record.actor_user.is_superuser
        assert record.data["via"] == "admin" and record.outcome == "success"
        assert all(body["key"] not in json.dumps(record.data) for body in keys.values())

    # Refused at once; the unselected key still works.
    assert_error(
        key_client(keys["alice"]["key"]).get("/api/v1/orgs/acme/access-rules/effective"),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert_error(
        key_client(keys["charlie"]["key"]).get("/api/v1/orgs/globex/access-rules/effective"),
        401,
        "AUTHENTICATION_FAILED",
    )
    assert (
        key_client(keys["bob"]["key"]).get("/api/v1/orgs/acme/access-rules/effective").status_code
        == 200
    )
    # The owner sees it as revoked through the API.
    listing = client_for(cast.alice).get("/api/v1/orgs/acme/api-keys").json()["results"]
    assert {item["id"]: item["status"] for item in listing}[keys["alice"]["id"]] == "revoked"


def test_revoking_an_already_revoked_key_is_not_audited_again(cast, admin_client, keys):
    _revoke(admin_client, keys["alice"]["id"])
    first_revoked_at = ApiKey.all_orgs.get(pk=keys["alice"]["id"]).revoked_at
    _revoke(admin_client, keys["alice"]["id"], keys["bob"]["id"])
    assert ApiKey.all_orgs.get(pk=keys["alice"]["id"]).revoked_at == first_revoked_at
    assert (
        AuditRecord.objects.filter(action="api_key:revoke", target_id=keys["alice"]["id"]).count()
        == 1
    )
    assert (
        AuditRecord.objects.filter(action="api_key:revoke", target_id=keys["bob"]["id"]).count()
        == 1
    )


def test_tenant_user_cannot_run_the_revoke_action(cast, client, keys):
    client.force_login(cast.alice)
    response = _revoke(client, keys["bob"]["id"])
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert ApiKey.all_orgs.get(pk=keys["bob"]["id"]).revoked_at is None
    assert not AuditRecord.objects.filter(action="api_key:revoke").exists()


def test_key_admin_never_shows_the_digest_or_the_key(cast, admin_client, keys):
    row = ApiKey.all_orgs.get(pk=keys["alice"]["id"])
    change = admin_client.get(f"/admin/keys/apikey/{row.pk}/change/")
    listing = admin_client.get("/admin/keys/apikey/")
    search = admin_client.get("/admin/keys/apikey/", {"q": row.secret_digest})
    for response in (change, listing, search):
        assert response.status_code == 200
        html = response.content.decode()
        assert "secret_digest" not in html and "Secret digest" not in html
        for body in keys.values():
            assert body["key"] not in html
    for response in (change, listing):  # (the search box echoes its own query)
        assert row.secret_digest not in response.content.decode()
    assert keys["alice"]["prefix"] in change.content.decode()
    assert keys["alice"]["prefix"] in listing.content.decode()
    assert keys["alice"]["prefix"] not in search.content.decode()  # digests are not searchable
    assert (
        admin_client.get("/admin/keys/apikey/add/").status_code == 403
    )  # minted through the API only


# --- changelists -----------------------------------------------------------------------------------


@pytest.fixture
def populated(cast, alice_client, charlie_client, service_account, keys):
    create_account(alice_client, secret=SECRET)
    create_account(charlie_client, org="globex", name="globex-openai", secret=OTHER_SECRET)
    response = alice_client.put(
        "/api/v1/orgs/acme/access-rules.yaml",
        "authz_rules:\n  - models: [openai-main/*]\n    users: [bob]\n",
        content_type="application/yaml",
    )
    assert response.status_code == 200, response.content
    assert ServiceAccount.all_orgs.count() == 1 and AccessRule.all_orgs.count() == 1


@pytest.mark.parametrize("model", ["serviceaccount", "apikey", "provideraccount", "accessrule"])
def test_changelists_render_every_org_for_a_superuser(cast, admin_client, populated, model):
    url = f"/admin/keys/{model}/"
    for params in ({}, {"q": "a"}, {"org__id__exact": str(cast.acme.pk)}):
        response = admin_client.get(url, params)
        assert response.status_code == 200, (params, response.status_code)
        html = response.content.decode()
        assert SECRET not in html and OTHER_SECRET not in html
    everything = admin_client.get(url).content.decode()
    if model == "provideraccount":
        assert "openai-main" in everything and "globex-openai" in everything
    if model == "apikey":
        prefixes = [key.prefix for key in ApiKey.all_orgs.all()]
        assert len(prefixes) == 3 and all(prefix in everything for prefix in prefixes)


def test_changelists_need_staff(cast, client, populated):
    client.force_login(cast.alice)
    for model in ("serviceaccount", "apikey", "provideraccount", "accessrule"):
        response = client.get(f"/admin/keys/{model}/")
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
