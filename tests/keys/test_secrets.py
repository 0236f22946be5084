"""Upstream secrets: encrypted at rest and bound to their row, never shown again
(API, audit, admin, repr, logs, SQL), replaced only with a fresh second factor,
and secret references resolved only inside the operator's allowlist."""

from __future__ import annotations

import base64
import json
import logging
import os

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditRecord
from inferia import crypto
from inferia.errors import ValidationError as InferiaValidationError
from keys import secret_refs
from keys.models import ProviderAccount
from keys.services import provider_secret_plaintext
from orgs.models import TOTPDevice
from tests.conftest import assert_error, code_now, enable_totp, to_step_start, wrong_code
from tests.keys.conftest import key_client, mint
from tests.keys.providers import (
    OTHER_SECRET,
    SECRET,
    accounts_url,
    create_account,
    dump_database,
    put_secret,
)


def _row(account_id) -> ProviderAccount:
    return ProviderAccount.all_orgs.get(pk=account_id)


@pytest.fixture
def account(cast, alice_client):
    return create_account(alice_client, secret=SECRET)


@pytest.fixture
def empty_account(cast, alice_client):
    return create_account(alice_client, name="no-secret-yet")


# --- at rest ----------------------------------------------------------------------------------


def test_row_holds_an_envelope_not_the_plaintext(cast, account):
    row = _row(account["id"])
    envelope = json.loads(row.encrypted_secret)
    assert set(envelope) == {"v", "kid", "wn", "wk", "n", "ct"}
    assert envelope["kid"] == crypto.key_ring().primary_id
    table = connection.ops.quote_name(ProviderAccount._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608
        rows = cursor.fetchall()
    assert len(rows) == 1
    raw = repr(rows[0])
    assert row.encrypted_secret in raw  # the row we think we read
    assert SECRET not in raw
    assert base64.b64encode(SECRET.encode()).decode() not in raw
    # Nowhere in the whole database either (audit, sessions, anything).
    everything = dump_database()
    assert SECRET not in everything and base64.b64encode(SECRET.encode()).decode() not in everything
    assert provider_secret_plaintext(row) == SECRET


def test_same_plaintext_encrypts_differently_per_row(cast, alice_client, account):
    twin = create_account(alice_client, name="twin", secret=SECRET)
    first, second = _row(account["id"]), _row(twin["id"])
    assert first.encrypted_secret != second.encrypted_secret
    assert provider_secret_plaintext(first) == provider_secret_plaintext(second) == SECRET


def test_replaced_secret_leaves_no_plaintext_behind(cast, dave_client):
    body = create_account(dave_client, secret=SECRET)
    response = put_secret(dave_client, body["id"], secret=OTHER_SECRET)
    assert response.status_code == 200, response.content
    everything = dump_database()
    assert SECRET not in everything and OTHER_SECRET not in everything
    assert provider_secret_plaintext(_row(body["id"])) == OTHER_SECRET


# --- never shown ------------------------------------------------------------------------------


def test_secret_never_leaves_through_api_audit_logs_sql_or_repr(
    cast, dave_client, vera_client, caplog
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")  # Django's own default is INFO
    responses = []
    with CaptureQueriesContext(connection) as queries:
        created = dave_client.post(
            accounts_url(),
            {
                "name": "openai-main",
                "provider_type": "openai",
                "base_url": "https://8.8.8.8",
                "secret": SECRET,
                "models": ["gpt-4o"],
            },
            format="json",
        )
        assert created.status_code == 201, created.content
        account_id = created.json()["id"]
        responses.append(created)
        responses.append(
            dave_client.patch(
                accounts_url("acme", account_id), {"tags": {"env": "prod"}}, format="json"
            )
        )
        responses.append(put_secret(dave_client, account_id, secret=OTHER_SECRET))
        responses.append(dave_client.get(accounts_url()))
        responses.append(dave_client.get(accounts_url("acme", account_id)))
        # Refusals carrying a secret in the request do not echo it.
        responses.append(
            dave_client.post(
                accounts_url(),
                {
                    "name": "openai-main",
                    "provider_type": "openai",
                    "base_url": "https://8.8.8.8",
                    "secret": SECRET,
                },
                format="json",
            )
        )
        responses.append(put_secret(dave_client, account_id, secret=SECRET, secret_ref="env:X"))
        responses.append(put_secret(vera_client, account_id, secret=SECRET))
        responses.append(
            dave_client.post(
                accounts_url(),
                {
                    "name": "bad name",
                    "provider_type": "openai",
                    "base_url": "https://8.8.8.8",
                    "secret": SECRET,
                },
                format="json",
            )
        )
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 200, 409, 400, 403, 400]
    for response in responses:
        text = response.content.decode()
        assert SECRET not in text and OTHER_SECRET not in text

    row = _row(account_id)
    assert provider_secret_plaintext(row) == OTHER_SECRET  # the negatives below are not vacuous
    for text in (repr(row), str(row)):
        assert SECRET not in text and OTHER_SECRET not in text and row.encrypted_secret not in text

    records = list(AuditRecord.objects.all())
    assert any(
        r.action == "provider_account:manage" and r.data.get("op") == "set_secret" for r in records
    )
    for record in records:
        text = json.dumps(record.data) + record.actor_label + record.user_agent + record.target_id
        assert SECRET not in text and OTHER_SECRET not in text

    # SQL logging was on (django.db.backends at DEBUG), and it holds ciphertext only.
    assert any(
        "keys_provideraccount" in r.getMessage()
        for r in caplog.records
        if r.name == "django.db.backends"
    )
    log_text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert SECRET not in log_text and OTHER_SECRET not in log_text
    sql_text = json.dumps(queries.captured_queries)
    assert "keys_provideraccount" in sql_text
    assert SECRET not in sql_text and OTHER_SECRET not in sql_text


def test_admin_change_page_never_shows_the_secret(cast, admin_client, account):
    row = _row(account["id"])
    page = admin_client.get(f"/admin/keys/provideraccount/{row.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "openai-main" in html  # the right page
    assert SECRET not in html and row.encrypted_secret not in html
    assert json.loads(row.encrypted_secret)["ct"] not in html
    listing = admin_client.get("/admin/keys/provideraccount/")
    assert listing.status_code == 200 and SECRET not in listing.content.decode()


# --- bound to its row -------------------------------------------------------------------------


def test_ciphertext_copied_to_another_row_of_the_same_org_fails(cast, alice_client, account):
    other = create_account(alice_client, name="other", secret=OTHER_SECRET)
    stolen = _row(account["id"]).encrypted_secret
    ProviderAccount.all_orgs.filter(pk=other["id"]).update(encrypted_secret=stolen)
    with pytest.raises(crypto.DecryptionError):
        provider_secret_plaintext(_row(other["id"]))
    assert provider_secret_plaintext(_row(account["id"])) == SECRET  # the original still works


def test_ciphertext_copied_to_another_org_fails(cast, charlie_client, account):
    globex = create_account(charlie_client, org="globex", name="openai-main", secret=OTHER_SECRET)
    stolen = _row(account["id"]).encrypted_secret
    ProviderAccount.all_orgs.filter(pk=globex["id"]).update(encrypted_secret=stolen)
    with pytest.raises(crypto.DecryptionError):
        provider_secret_plaintext(_row(globex["id"]))


def test_totp_seed_ciphertext_does_not_decrypt_as_a_provider_secret(cast, alice_client, account):
    device, _codes = enable_totp(alice_client, cast.alice)
    ProviderAccount.all_orgs.filter(pk=account["id"]).update(encrypted_secret=device.encrypted_seed)
    with pytest.raises(crypto.DecryptionError):
        provider_secret_plaintext(_row(account["id"]))


def _flip(encoded: str) -> str:
    raw = bytearray(base64.b64decode(encoded))
    raw[0] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


TAMPERINGS = {
    "ciphertext bit": lambda e: {**e, "ct": _flip(e["ct"])},
    "nonce bit": lambda e: {**e, "n": _flip(e["n"])},
    "wrapped key bit": lambda e: {**e, "wk": _flip(e["wk"])},
    "wrap nonce bit": lambda e: {**e, "wn": _flip(e["wn"])},
    "unknown master key id": lambda e: {**e, "kid": "zz"},
    "unknown version": lambda e: {**e, "v": 2},
    "missing field": lambda e: {k: v for k, v in e.items() if k != "ct"},
    "ciphertext not base64": lambda e: {**e, "ct": "%%%"},
    "truncated ciphertext": lambda e: {**e, "ct": e["ct"][:8]},
    "kid of the wrong type": lambda e: {**e, "kid": ["k1"]},
    "nonce of the wrong type": lambda e: {**e, "wn": 12},
    "ciphertext null": lambda e: {**e, "ct": None},
    "envelope in a list": lambda e: [e],
}


@pytest.mark.parametrize("tamper", list(TAMPERINGS))
def test_tampered_envelope_raises_decryption_error(cast, account, tamper):
    row = _row(account["id"])
    token = json.dumps(TAMPERINGS[tamper](json.loads(row.encrypted_secret)))
    ProviderAccount.all_orgs.filter(pk=row.pk).update(encrypted_secret=token)
    with pytest.raises(crypto.DecryptionError) as caught:
        provider_secret_plaintext(_row(row.pk))
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("token", ["not json", '{"v": 1', "null", "42", '"a string"'])
def test_malformed_token_raises_decryption_error(cast, account, token):
    ProviderAccount.all_orgs.filter(pk=account["id"]).update(encrypted_secret=token)
    with pytest.raises(crypto.DecryptionError):
        provider_secret_plaintext(_row(account["id"]))


# --- setting and replacing ----------------------------------------------------------------------


def test_first_secret_needs_no_code_even_with_2fa(cast, alice_client, empty_account, clock_shift):
    enable_totp(alice_client, cast.alice)
    clock_shift(5)
    response = put_secret(alice_client, empty_account["id"], secret=SECRET)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (
        body["has_secret"] is True
        and body["secret_kind"] == "encrypted"
        and body["secret_updated_at"]
    )
    assert SECRET not in response.content.decode()
    assert provider_secret_plaintext(_row(empty_account["id"])) == SECRET
    audit = AuditRecord.objects.get(action="provider_account:manage", data__op="set_secret")
    assert audit.data["kind"] == "encrypted" and audit.actor_user_id == cast.alice.pk


def test_replacing_a_secret_with_2fa_needs_a_fresh_code(cast, alice_client, account, clock_shift):
    to_step_start()
    device, recovery_codes = enable_totp(alice_client, cast.alice)
    before = _row(account["id"])

    missing = put_secret(alice_client, account["id"], secret=OTHER_SECRET)
    assert_error(missing, 401, "OTP_REQUIRED")
    wrong = put_secret(
        alice_client, account["id"], secret=OTHER_SECRET, otp_code=wrong_code(device)
    )
    assert_error(wrong, 401, "AUTHENTICATION_FAILED")
    recovery = put_secret(
        alice_client, account["id"], secret=OTHER_SECRET, otp_code=recovery_codes[0]
    )
    assert_error(recovery, 401, "AUTHENTICATION_FAILED")  # a recovery code is not a fresh code
    unchanged = _row(account["id"])
    assert unchanged.encrypted_secret == before.encrypted_secret
    assert unchanged.secret_updated_at == before.secret_updated_at
    assert not AuditRecord.objects.filter(data__op="set_secret").exists()
    assert AuditRecord.objects.filter(action="auth:reverify", outcome="denied").exists()

    clock_shift(30)
    code = code_now(device)
    replaced = put_secret(alice_client, account["id"], secret=OTHER_SECRET, otp_code=code)
    assert replaced.status_code == 200, replaced.content
    assert replaced.json()["secret_updated_at"] != account["secret_updated_at"]
    after = _row(account["id"])
    assert after.secret_updated_at > before.secret_updated_at
    assert provider_secret_plaintext(after) == OTHER_SECRET
    assert AuditRecord.objects.filter(data__op="set_secret", actor_user=cast.alice).count() == 1

    # The same code cannot be replayed.
    replay = put_secret(alice_client, account["id"], secret=SECRET, otp_code=code)
    assert_error(replay, 401, "AUTHENTICATION_FAILED")
    assert provider_secret_plaintext(_row(account["id"])) == OTHER_SECRET


def test_replacing_without_2fa_needs_no_code(cast, dave_client, account, clock_shift):
    clock_shift(60)
    response = put_secret(dave_client, account["id"], secret=OTHER_SECRET)
    assert response.status_code == 200, response.content
    assert response.json()["secret_updated_at"] != account["secret_updated_at"]
    assert provider_secret_plaintext(_row(account["id"])) == OTHER_SECRET


def test_api_key_cannot_replace_an_existing_secret(cast, alice_client, account):
    key = key_client(
        mint(alice_client, permissions=["provider_account:manage", "provider_account:view"])["key"]
    )
    # The key does hold the scope: it may change the account itself.
    assert (
        key.patch(
            accounts_url("acme", account["id"]), {"tags": {"env": "prod"}}, format="json"
        ).status_code
        == 200
    )
    response = put_secret(key, account["id"], secret=OTHER_SECRET)
    assert_error(response, 403, "PERMISSION_DENIED")
    assert provider_secret_plaintext(_row(account["id"])) == SECRET
    assert (
        _row(account["id"]).secret_updated_at.isoformat().replace("+00:00", "Z")
        == account["secret_updated_at"]
    )


def test_switching_between_secret_and_reference(cast, dave_client, account, settings, monkeypatch):
    settings.INFERIA_SECRET_REF_ALLOWLIST = ["env:INFERIA_UPSTREAM_"]
    monkeypatch.setenv("INFERIA_UPSTREAM_MAIN", OTHER_SECRET)
    to_ref = put_secret(dave_client, account["id"], secret_ref="env:INFERIA_UPSTREAM_MAIN")
    assert to_ref.status_code == 200, to_ref.content
    assert to_ref.json()["secret_kind"] == "reference"
    row = _row(account["id"])
    assert row.encrypted_secret == "" and row.secret_ref == "env:INFERIA_UPSTREAM_MAIN"
    assert provider_secret_plaintext(row) == OTHER_SECRET
    back = put_secret(dave_client, account["id"], secret=SECRET)
    assert back.json()["secret_kind"] == "encrypted"
    row = _row(account["id"])
    assert row.secret_ref == "" and provider_secret_plaintext(row) == SECRET


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "secret"),
        ({"secret": ""}, "secret"),
        ({"secret": "x" * 8193}, "secret"),
        ({"secret": ["a", "b"]}, "secret"),
        ({"otp_code": "123456"}, "secret"),
    ],
)
def test_invalid_secret_input_is_400(cast, dave_client, account, body, field):
    error = assert_error(put_secret(dave_client, account["id"], **body), 400, "VALIDATION_ERROR")
    assert field in error["details"]
    assert provider_secret_plaintext(_row(account["id"])) == SECRET


@pytest.mark.parametrize("who", ["vera", "bob"])
def test_put_secret_without_manage_permission_is_403(
    cast, who, vera_client, bob_client, account, empty_account
):
    client = {"vera": vera_client, "bob": bob_client}[who]
    for target in (account, empty_account):
        assert_error(
            put_secret(client, target["id"], secret=OTHER_SECRET), 403, "PERMISSION_DENIED"
        )
    assert provider_secret_plaintext(_row(account["id"])) == SECRET
    assert not _row(empty_account["id"]).has_secret


def test_object_grant_lets_a_member_replace_that_secret(cast, alice_client, bob_client, account):
    granted = alice_client.post(
        accounts_url("acme", account["id"], "/grants"), {"user": "bob"}, format="json"
    )
    assert granted.status_code == 200, granted.content
    response = put_secret(bob_client, account["id"], secret=OTHER_SECRET)
    assert response.status_code == 200, response.content
    assert provider_secret_plaintext(_row(account["id"])) == OTHER_SECRET


def test_put_secret_on_another_orgs_account_is_404(cast, charlie_client, account):
    for org in ("acme", "globex"):
        assert_error(
            put_secret(charlie_client, account["id"], org=org, secret=OTHER_SECRET),
            404,
            "NOT_FOUND",
        )
    assert provider_secret_plaintext(_row(account["id"])) == SECRET


def test_put_secret_unauthenticated_is_401(cast, anon_client, account):
    assert_error(
        put_secret(anon_client, account["id"], secret=OTHER_SECRET), 401, "AUTHENTICATION_FAILED"
    )
    assert provider_secret_plaintext(_row(account["id"])) == SECRET


def test_account_without_secret_has_no_plaintext(cast, empty_account):
    with pytest.raises(InferiaValidationError):
        provider_secret_plaintext(_row(empty_account["id"]))


# --- secret references ------------------------------------------------------------------------


@pytest.fixture
def allowed_dir(settings, tmp_path):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    settings.INFERIA_SECRET_REF_ALLOWLIST = ["env:INFERIA_UPSTREAM_", f"file:{allowed}/"]
    return allowed


@pytest.fixture
def resolutions(monkeypatch):
    """Every name a secret backend was asked to resolve."""
    calls: list[str] = []
    for backend in secret_refs.BACKENDS.values():

        def spy(name, _original=backend.resolve):
            calls.append(name)
            return _original(name)

        monkeypatch.setattr(backend, "resolve", spy)
    return calls


def test_allowed_env_reference_resolves(cast, alice_client, allowed_dir, resolutions, monkeypatch):
    monkeypatch.setenv("INFERIA_UPSTREAM_OPENAI", "env-upstream-value-123")
    body = create_account(alice_client, secret_ref="env:INFERIA_UPSTREAM_OPENAI")
    assert (
        body["has_secret"] is True
        and body["secret_kind"] == "reference"
        and body["secret_updated_at"]
    )
    row = _row(body["id"])
    assert row.secret_ref == "env:INFERIA_UPSTREAM_OPENAI" and row.encrypted_secret == ""
    assert provider_secret_plaintext(row) == "env-upstream-value-123"
    assert resolutions == ["INFERIA_UPSTREAM_OPENAI"]


def test_allowed_file_reference_resolves(cast, alice_client, allowed_dir, resolutions):
    secret_file = allowed_dir / "openai.key"
    secret_file.write_text("file-upstream-value-456\n")
    body = create_account(alice_client, secret_ref=f"file:{secret_file}")
    assert body["secret_kind"] == "reference"
    assert str(secret_file) not in json.dumps(body)
    assert provider_secret_plaintext(_row(body["id"])) == "file-upstream-value-456"
    assert resolutions == [os.path.realpath(secret_file)]


REFUSED_REFS = [
    "env:HOME",
    "env:PATH",
    "env:INFERIA_SECRET_KEY",
    "env:INFERIA_MASTER_KEYS",
    "env:INFERIA_UPSTREAM",  # one character short of the allowed prefix
    "file:/etc/passwd",
    "file:/proc/self/environ",
    "file:{allowed}/../outside.txt",
    "file:{allowed}/sub/../../outside.txt",
    "file:{allowed}/link-to-outside",
    "file:{allowed}/dir-link/outside.txt",
    "file:{tmp}/allowed-twin/secret",  # shares the allowed prefix without the slash
    "file:{allowed}",  # the directory itself
    "file:outside.txt",  # relative: resolved against the server's working directory
]


@pytest.fixture
def outside(tmp_path, allowed_dir):
    """Readable files outside the allowed directory, and links to them from inside it."""
    target = tmp_path / "outside.txt"
    target.write_text("outside-value-789")
    (allowed_dir / "link-to-outside").symlink_to(target)
    (allowed_dir / "dir-link").symlink_to(tmp_path, target_is_directory=True)
    (allowed_dir / "sub").mkdir()
    twin = tmp_path / "allowed-twin"
    twin.mkdir()
    (twin / "secret").write_text("twin-value")
    return target


def _ref(template: str, tmp_path) -> str:
    return template.format(allowed=tmp_path / "allowed", tmp=tmp_path)


@pytest.mark.parametrize("template", REFUSED_REFS)
def test_reference_outside_the_allowlist_is_refused_at_create(
    cast, alice_client, outside, resolutions, tmp_path, template, monkeypatch
):
    monkeypatch.setenv("INFERIA_SECRET_KEY", "server-only-value")
    monkeypatch.chdir(tmp_path)
    response = alice_client.post(
        accounts_url(),
        {
            "name": "sneaky",
            "provider_type": "openai",
            "base_url": "https://8.8.8.8",
            "secret_ref": _ref(template, tmp_path),
        },
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "secret_ref" in error["details"]
    for leaked in ("outside-value-789", "twin-value", "server-only-value", "root:"):
        assert leaked not in response.content.decode()
    assert resolutions == []
    assert not ProviderAccount.all_orgs.exists()


@pytest.mark.parametrize("template", REFUSED_REFS)
def test_reference_outside_the_allowlist_is_refused_on_replace(
    cast, dave_client, outside, resolutions, tmp_path, template
):
    body = create_account(dave_client, secret=SECRET)
    response = put_secret(dave_client, body["id"], secret_ref=_ref(template, tmp_path))
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "secret_ref" in error["details"]
    assert resolutions == []
    row = _row(body["id"])
    assert row.secret_ref == "" and provider_secret_plaintext(row) == SECRET


def test_allowed_references_are_refused_once_the_allowlist_is_empty(
    cast, alice_client, allowed_dir, resolutions, settings, monkeypatch
):
    monkeypatch.setenv("INFERIA_UPSTREAM_OPENAI", "env-upstream-value-123")
    (allowed_dir / "k").write_text("file-value")
    stored = create_account(alice_client, secret_ref="env:INFERIA_UPSTREAM_OPENAI")
    settings.INFERIA_SECRET_REF_ALLOWLIST = []
    for ref in ("env:INFERIA_UPSTREAM_OPENAI", f"file:{allowed_dir}/k"):
        response = alice_client.post(
            accounts_url(),
            {
                "name": "again",
                "provider_type": "openai",
                "base_url": "https://8.8.8.8",
                "secret_ref": ref,
            },
            format="json",
        )
        assert "secret_ref" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
    # A reference stored earlier is checked again at use.
    with pytest.raises(InferiaValidationError):
        provider_secret_plaintext(_row(stored["id"]))
    assert resolutions == []


@pytest.mark.parametrize(
    "ref",
    [
        "vault:secret/openai",
        "ssm:/prod/openai",
        "http://169.254.169.254/latest/meta-data",
        "INFERIA_UPSTREAM_X",
        "ENV:INFERIA_UPSTREAM_X",
        "env:",
        "file:",
        ":INFERIA_UPSTREAM_X",
    ],
)
def test_unknown_reference_scheme_is_400(cast, alice_client, allowed_dir, resolutions, ref):
    response = alice_client.post(
        accounts_url(),
        {"name": "x", "provider_type": "openai", "base_url": "https://8.8.8.8", "secret_ref": ref},
        format="json",
    )
    assert "secret_ref" in assert_error(response, 400, "VALIDATION_ERROR")["details"]
    assert resolutions == [] and not ProviderAccount.all_orgs.exists()


def test_secret_and_reference_together_are_400(
    cast, alice_client, dave_client, allowed_dir, monkeypatch
):
    monkeypatch.setenv("INFERIA_UPSTREAM_OPENAI", "env-upstream-value-123")
    both = {"secret": SECRET, "secret_ref": "env:INFERIA_UPSTREAM_OPENAI"}
    response = alice_client.post(
        accounts_url(),
        {"name": "x", "provider_type": "openai", "base_url": "https://8.8.8.8", **both},
        format="json",
    )
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert {"secret", "secret_ref"} & set(error["details"])
    assert not ProviderAccount.all_orgs.exists()
    body = create_account(dave_client, name="y")
    error = assert_error(put_secret(dave_client, body["id"], **both), 400, "VALIDATION_ERROR")
    assert {"secret", "secret_ref"} & set(error["details"])
    assert not _row(body["id"]).has_secret


def test_reference_is_never_resolved_for_a_viewer_or_another_org(
    cast, vera_client, charlie_client, dave_client, allowed_dir, resolutions
):
    body = create_account(dave_client, name="target")
    assert_error(
        put_secret(vera_client, body["id"], secret_ref="env:HOME"), 403, "PERMISSION_DENIED"
    )
    assert_error(
        put_secret(charlie_client, body["id"], org="globex", secret_ref="env:HOME"),
        404,
        "NOT_FOUND",
    )
    assert resolutions == [] and not _row(body["id"]).has_secret


def test_totp_seed_is_stored_as_an_envelope(cast, alice_client):
    # enable_totp stores the seed with the same envelope scheme (not in clear).
    device, _ = enable_totp(alice_client, cast.alice)
    stored = TOTPDevice.objects.get(pk=device.pk).encrypted_seed
    assert json.loads(stored)["kid"] == crypto.key_ring().primary_id
    assert device.seed_plaintext().hex() not in dump_database()
