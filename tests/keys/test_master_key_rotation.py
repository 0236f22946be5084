"""Master key rotation: put a new key first in INFERIA_MASTER_KEYS, run
``manage.py rotate_master_key``, drop the old key; every provider secret and
TOTP seed stays readable. (inferia.crypto caches the ring by its spec string,
so changing the setting in a test takes effect at once.)"""

from __future__ import annotations

import base64
import io
import json

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django_otp.oath import TOTP

from inferia import clock, crypto
from keys.models import ProviderAccount
from keys.services import provider_secret_plaintext
from orgs.models import TOTPDevice
from tests.conftest import PASSWORD, assert_error, enable_totp
from tests.keys.providers import OTHER_SECRET, SECRET, create_account, put_secret

K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(bytes(range(100, 132))).decode()
K3 = base64.b64encode(bytes(range(200, 232))).decode()
GLOBEX_SECRET = "globex0a1b2c3d4e5f60718293a4b5c6d7e8f9"


def _envelopes() -> dict[str, dict]:
    """Every stored envelope by row, read with a raw cursor."""
    found = {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT name, encrypted_secret FROM {connection.ops.quote_name(ProviderAccount._meta.db_table)}"  # noqa: S608
        )
        for name, token in cursor.fetchall():
            if token:
                found[f"account:{name}"] = json.loads(token)
        cursor.execute(
            f"SELECT id, encrypted_seed FROM {connection.ops.quote_name(TOTPDevice._meta.db_table)}"  # noqa: S608
        )
        for pk, token in cursor.fetchall():
            found[f"totp:{pk}"] = json.loads(token)
    return found


def _code(seed: bytes) -> str:
    generator = TOTP(seed, step=30, digits=6)
    generator.time = clock.time()
    return str(generator.token()).zfill(6)


def _login(client, username: str, seed: bytes):
    return client.post(
        "/api/v1/auth/login",
        {"username": username, "password": PASSWORD, "otp_code": _code(seed)},
        format="json",
    )


def _rotate() -> str:
    out = io.StringIO()
    call_command("rotate_master_key", stdout=out)
    return out.getvalue()


@pytest.fixture
def estate(cast, settings, alice_client, charlie_client, monkeypatch):
    """Secrets and TOTP devices in two orgs, all wrapped by k1."""
    settings.INFERIA_MASTER_KEYS = f"k1:{K1}"
    settings.INFERIA_SECRET_REF_ALLOWLIST = ["env:INFERIA_UPSTREAM_"]
    monkeypatch.setenv("INFERIA_UPSTREAM_REF", "by-reference")
    ids = {
        "main": create_account(alice_client, name="main", secret=SECRET)["id"],
        "azure": create_account(
            alice_client, name="azure", provider_type="azure_openai", secret=OTHER_SECRET
        )["id"],
        "globex": create_account(charlie_client, org="globex", name="globex", secret=GLOBEX_SECRET)[
            "id"
        ],
        "ref": create_account(alice_client, name="ref", secret_ref="env:INFERIA_UPSTREAM_REF")[
            "id"
        ],
        "empty": create_account(alice_client, name="empty")["id"],
    }
    alice_device, _ = enable_totp(alice_client, cast.alice)
    charlie_device, _ = enable_totp(charlie_client, cast.charlie)
    seeds = {"alice": alice_device.seed_plaintext(), "charlie": charlie_device.seed_plaintext()}
    envelopes = _envelopes()
    assert len(envelopes) == 5 and {e["kid"] for e in envelopes.values()} == {"k1"}
    return ids, seeds


def _plaintexts(ids) -> dict[str, str]:
    return {
        name: provider_secret_plaintext(ProviderAccount.all_orgs.get(pk=ids[name]))
        for name in ("main", "azure", "globex", "ref")
    }


EXPECTED = {"main": SECRET, "azure": OTHER_SECRET, "globex": GLOBEX_SECRET, "ref": "by-reference"}


def test_rotation_rewraps_everything_and_the_old_key_can_go(
    cast, settings, estate, anon_client, clock_shift
):
    ids, seeds = estate
    before = _envelopes()

    settings.INFERIA_MASTER_KEYS = f"k2:{K2},k1:{K1}"
    assert _plaintexts(ids) == EXPECTED  # old envelopes still open with k1 in the ring
    output = _rotate()
    assert "k2" in output and "3 provider secrets" in output and "2 TOTP seeds" in output

    after = _envelopes()
    assert set(after) == set(before)
    assert {e["kid"] for e in after.values()} == {"k2"}
    for row, envelope in after.items():
        # The data key was re-wrapped; the data itself was not re-encrypted.
        assert (envelope["ct"], envelope["n"]) == (before[row]["ct"], before[row]["n"])
        assert envelope["wk"] != before[row]["wk"]
    assert _plaintexts(ids) == EXPECTED

    clock_shift(30)
    assert _login(anon_client, "alice", seeds["alice"]).status_code == 200
    assert _login(anon_client, "charlie", seeds["charlie"]).status_code == 200

    # Running again changes nothing.
    assert "0 provider secrets, 0 SSO client secrets, 0 TOTP seeds" in _rotate()
    assert _envelopes() == after

    # k1 leaves the ring: everything still decrypts and verifies.
    settings.INFERIA_MASTER_KEYS = f"k2:{K2}"
    assert _plaintexts(ids) == EXPECTED
    for device in TOTPDevice.objects.all():
        assert device.seed_plaintext() in seeds.values()
    clock_shift(30)
    assert _login(anon_client, "alice", seeds["alice"]).status_code == 200
    assert _login(anon_client, "charlie", seeds["charlie"]).status_code == 200


def test_without_rotation_dropping_the_old_key_breaks_decryption(cast, settings, estate):
    ids, seeds = estate
    settings.INFERIA_MASTER_KEYS = f"k2:{K2}"
    for name in ("main", "azure", "globex"):
        with pytest.raises(crypto.DecryptionError):
            provider_secret_plaintext(ProviderAccount.all_orgs.get(pk=ids[name]))
    for device in TOTPDevice.objects.all():
        with pytest.raises(crypto.DecryptionError):
            device.seed_plaintext()
    # A reference does not depend on the ring.
    assert provider_secret_plaintext(ProviderAccount.all_orgs.get(pk=ids["ref"])) == "by-reference"
    # Putting k1 back (anywhere in the ring) restores access.
    settings.INFERIA_MASTER_KEYS = f"k2:{K2},k1:{K1}"
    assert _plaintexts(ids) == EXPECTED


def test_rotation_with_the_old_key_missing_fails_and_changes_nothing(cast, settings, estate):
    ids, _seeds = estate
    before = _envelopes()
    settings.INFERIA_MASTER_KEYS = f"k2:{K2}"
    with pytest.raises(crypto.DecryptionError):
        _rotate()
    assert _envelopes() == before
    settings.INFERIA_MASTER_KEYS = f"k1:{K1}"
    assert _plaintexts(ids) == EXPECTED


def test_secrets_written_after_the_ring_changes_use_the_new_key(
    cast, settings, estate, dave_client
):
    ids, _seeds = estate
    settings.INFERIA_MASTER_KEYS = f"k2:{K2},k1:{K1}"
    created = create_account(dave_client, name="fresh", secret="fresh-secret-value-1234")
    replaced = put_secret(dave_client, ids["main"], secret="replaced-secret-value-5678")
    assert replaced.status_code == 200, replaced.content
    envelopes = _envelopes()
    assert envelopes["account:fresh"]["kid"] == "k2" and envelopes["account:main"]["kid"] == "k2"
    assert envelopes["account:azure"]["kid"] == "k1"  # untouched until the rotation
    settings.INFERIA_MASTER_KEYS = f"k2:{K2}"
    assert (
        provider_secret_plaintext(ProviderAccount.all_orgs.get(pk=created["id"]))
        == "fresh-secret-value-1234"
    )
    assert (
        provider_secret_plaintext(ProviderAccount.all_orgs.get(pk=ids["main"]))
        == "replaced-secret-value-5678"
    )
    with pytest.raises(crypto.DecryptionError):
        provider_secret_plaintext(ProviderAccount.all_orgs.get(pk=ids["azure"]))


def test_two_rotations_in_a_row(cast, settings, estate, anon_client, clock_shift):
    ids, seeds = estate
    settings.INFERIA_MASTER_KEYS = f"k2:{K2},k1:{K1}"
    _rotate()
    settings.INFERIA_MASTER_KEYS = f"k3:{K3},k2:{K2}"
    assert "3 provider secrets, 0 SSO client secrets, 2 TOTP seeds" in _rotate()
    settings.INFERIA_MASTER_KEYS = f"k3:{K3}"
    assert {e["kid"] for e in _envelopes().values()} == {"k3"}
    assert _plaintexts(ids) == EXPECTED
    clock_shift(30)
    assert _login(anon_client, "alice", seeds["alice"]).status_code == 200


def test_totp_login_fails_closed_while_the_seed_cannot_be_read(
    cast, settings, estate, anon_client, clock_shift
):
    _ids, seeds = estate
    settings.INFERIA_MASTER_KEYS = f"k2:{K2}"
    clock_shift(30)
    response = _login(anon_client, "alice", seeds["alice"])
    # An operator error (the seed's master key is gone): refused in the error shape, no token.
    error = assert_error(response, 500, "INTERNAL_ERROR")
    assert "access_token" not in response.content.decode() and "k1" not in error["message"]


@pytest.mark.parametrize(
    "ring",
    [
        "",
        "k1",
        f"k1:{base64.b64encode(b'short').decode()}",
        "k1:not-base64!!",
        f"k1:{K1},k1:{K2}",
        f"k-1:{K1}",
    ],
)
def test_rotation_refuses_a_broken_ring(cast, settings, estate, ring):
    before = _envelopes()
    settings.INFERIA_MASTER_KEYS = ring
    with pytest.raises(ImproperlyConfigured):
        _rotate()
    assert _envelopes() == before


def test_api_reports_secret_status_unchanged_by_rotation(cast, settings, estate, alice_client):
    ids, _seeds = estate
    listing_before = alice_client.get("/api/v1/orgs/acme/provider-accounts").json()["results"]
    settings.INFERIA_MASTER_KEYS = f"k2:{K2},k1:{K1}"
    _rotate()
    listing_after = alice_client.get("/api/v1/orgs/acme/provider-accounts").json()["results"]
    strip = [{k: v for k, v in item.items() if k != "updated_at"} for item in listing_before]
    assert [{k: v for k, v in item.items() if k != "updated_at"} for item in listing_after] == strip
    assert_error(alice_client.get("/api/v1/orgs/globex/provider-accounts"), 404, "NOT_FOUND")
