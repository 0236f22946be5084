"""Envelope encryption: round trip, binding to a row, tampering, key rotation, bad rings."""

from __future__ import annotations

import base64
import json
import secrets

import pytest
from django.core.exceptions import ImproperlyConfigured

from inferia import crypto
from inferia.crypto import DecryptionError, decrypt, encrypt, parse_key_ring, rewrap

CONTEXT = "orgs.totpdevice:1:42"


def _key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def ring(settings):
    """A fresh one-key ring; returns a function that replaces it."""

    def use(spec: str) -> None:
        settings.INFERIA_MASTER_KEYS = spec

    old = f"old:{_key()}"
    use(old)
    use.old = old
    return use


def _tampered(token: str, field: str) -> str:
    envelope = json.loads(token)
    raw = bytearray(base64.b64decode(envelope[field]))
    raw[0] ^= 0x01
    envelope[field] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(envelope)


def test_round_trip(ring):
    secret = b"JBSWY3DPEHPK3PXP seed bytes \x00\xff"
    token = encrypt(secret, context=CONTEXT)
    assert decrypt(token, context=CONTEXT) == secret
    assert b"JBSWY3DP" not in token.encode() and "JBSWY3DP" not in token
    assert json.loads(token)["kid"] == "old"


def test_each_encryption_is_different(ring):
    first, second = encrypt(b"same", context=CONTEXT), encrypt(b"same", context=CONTEXT)
    assert first != second
    assert decrypt(first, context=CONTEXT) == decrypt(second, context=CONTEXT) == b"same"


def test_empty_plaintext_round_trips(ring):
    assert decrypt(encrypt(b"", context=CONTEXT), context=CONTEXT) == b""


def test_ciphertext_is_bound_to_its_row(ring):
    token = encrypt(b"seed", context="orgs.totpdevice:1:42")
    for other in ("orgs.totpdevice:2:42", "orgs.totpdevice:1:43", "", "orgs.totpdevice:1:42 "):
        with pytest.raises(DecryptionError):
            decrypt(token, context=other)


@pytest.mark.parametrize("field", ["ct", "n", "wk", "wn"])
def test_tampering_with_any_part_fails(ring, field):
    token = encrypt(b"seed", context=CONTEXT)
    with pytest.raises(DecryptionError):
        decrypt(_tampered(token, field), context=CONTEXT)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not json",
        "[]",
        "null",
        '{"v": 2}',
        '{"v": 1}',
        '{"v": 1, "kid": "old", "wn": "%%%", "wk": "", "n": "", "ct": ""}',
    ],
)
def test_malformed_tokens_fail_with_decryption_error(ring, token):
    with pytest.raises(DecryptionError):
        decrypt(token, context=CONTEXT)


def test_a_token_whose_master_key_is_gone_fails(ring):
    token = encrypt(b"seed", context=CONTEXT)
    ring(f"new:{_key()}")
    with pytest.raises(DecryptionError, match="not in the key ring"):
        decrypt(token, context=CONTEXT)


def test_rotation_new_primary_first_old_still_decrypts_and_rewrap_moves_to_new(ring):
    token = encrypt(b"seed", context=CONTEXT)
    new = f"new:{_key()}"
    ring(f"{new},{ring.old}")

    assert decrypt(token, context=CONTEXT) == b"seed"
    assert json.loads(encrypt(b"x", context=CONTEXT))["kid"] == "new"  # new secrets use the new key

    rewrapped = rewrap(token, context=CONTEXT)
    assert json.loads(rewrapped)["kid"] == "new"
    assert json.loads(rewrapped)["ct"] == json.loads(token)["ct"]  # only the data key is re-wrapped
    assert decrypt(rewrapped, context=CONTEXT) == b"seed"
    assert rewrap(rewrapped, context=CONTEXT) == rewrapped  # already on the primary: unchanged

    ring(new)  # the old key retired: the re-wrapped token still opens, the old one not
    assert decrypt(rewrapped, context=CONTEXT) == b"seed"
    with pytest.raises(DecryptionError):
        decrypt(token, context=CONTEXT)


def test_rewrap_checks_the_context_too(ring):
    token = encrypt(b"seed", context=CONTEXT)
    ring(f"new:{_key()},{ring.old}")
    with pytest.raises(DecryptionError):
        rewrap(token, context="orgs.totpdevice:2:42")


@pytest.mark.parametrize(
    "spec",
    [
        "",
        " , ",
        "nokey",
        ":" + base64.b64encode(bytes(32)).decode(),
        "k-1:" + base64.b64encode(bytes(32)).decode(),
        "k1:not*base64",
        "k1:" + base64.b64encode(bytes(16)).decode(),
        "k1:" + base64.b64encode(bytes(33)).decode(),
        "k1:{k},k1:{k}".format(k=base64.b64encode(bytes(32)).decode()),
    ],
)
def test_malformed_key_rings_are_improperly_configured(spec, settings):
    with pytest.raises(ImproperlyConfigured):
        parse_key_ring(spec)
    settings.INFERIA_MASTER_KEYS = spec
    with pytest.raises(ImproperlyConfigured):
        encrypt(b"seed", context=CONTEXT)


def test_key_ring_parses_order_and_never_shows_keys():
    first, second = _key(), _key()
    parsed = parse_key_ring(f" k2:{first} , k1:{second} ")
    assert parsed.primary_id == "k2"
    assert list(parsed.keys) == ["k2", "k1"]
    assert parsed.keys["k1"] == base64.b64decode(second)
    assert first not in repr(parsed) and second not in repr(parsed)


def test_settings_key_ring_is_the_one_in_use(settings):
    assert crypto.key_ring() == parse_key_ring(settings.INFERIA_MASTER_KEYS)
