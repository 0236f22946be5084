"""Envelope encryption for secrets at rest (TOTP seeds now, provider secrets next).

Each secret gets its own AES-256-GCM data key; the data key is wrapped by the
first master key of the ring ``INFERIA_MASTER_KEYS`` (``id:base64key,...``);
every key of the ring unwraps. The caller's ``context`` (the row's identity)
is bound in as associated data, so a ciphertext copied to another row fails.
Bad ciphertext raises ``DecryptionError``: never returned as is.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_VERSION = 1


class DecryptionError(Exception):
    """The ciphertext is damaged, bound to another row, or its master key is gone."""


@dataclass(frozen=True)
class KeyRing:
    primary_id: str
    keys: dict[str, bytes]

    def __repr__(self) -> str:  # never show key material
        return f"KeyRing(primary_id={self.primary_id!r}, ids={list(self.keys)!r})"


def parse_key_ring(spec: str) -> KeyRing:
    """Parse ``id:base64key,...``; each key must be 32 bytes. Raises ImproperlyConfigured."""
    keys: dict[str, bytes] = {}
    order: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        key_id, sep, encoded = part.partition(":")
        if not sep or not key_id or not key_id.isalnum():
            raise ImproperlyConfigured("INFERIA_MASTER_KEYS entries must look like id:base64key")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError as exc:
            raise ImproperlyConfigured(f"master key {key_id} is not valid base64") from exc
        if len(raw) != 32:
            raise ImproperlyConfigured(f"master key {key_id} must be 32 bytes")
        if key_id in keys:
            raise ImproperlyConfigured(f"master key id {key_id} appears twice")
        keys[key_id] = raw
        order.append(key_id)
    if not order:
        raise ImproperlyConfigured("INFERIA_MASTER_KEYS holds no key")
    return KeyRing(primary_id=order[0], keys=keys)


@lru_cache(maxsize=4)
def _ring_for(spec: str) -> KeyRing:
    return parse_key_ring(spec)


def key_ring() -> KeyRing:
    return _ring_for(settings.INFERIA_MASTER_KEYS)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encrypt(plaintext: bytes, *, context: str) -> str:
    """Encrypt ``plaintext`` bound to ``context``; returns a self-describing token."""
    ring = key_ring()
    data_key = AESGCM.generate_key(bit_length=256)
    wrap_nonce, nonce = os.urandom(12), os.urandom(12)
    wrapped = AESGCM(ring.keys[ring.primary_id]).encrypt(
        wrap_nonce, data_key, f"wrap:{context}".encode()
    )
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, context.encode())
    envelope = {
        "v": _VERSION,
        "kid": ring.primary_id,
        "wn": _b64(wrap_nonce),
        "wk": _b64(wrapped),
        "n": _b64(nonce),
        "ct": _b64(ciphertext),
    }
    return json.dumps(envelope, separators=(",", ":"))


_FIELDS = ("kid", "wn", "wk", "n", "ct")


def _load(token: str) -> dict:
    try:
        envelope = json.loads(token)
        if envelope.get("v") != _VERSION:
            raise DecryptionError("unknown envelope version")
    except (ValueError, AttributeError) as exc:
        raise DecryptionError("malformed envelope") from exc
    # A field of another type (a list, a number, null) is damage too, not a TypeError.
    if not all(isinstance(envelope.get(field), str) for field in _FIELDS):
        raise DecryptionError("malformed envelope")
    return envelope


def _unwrap(envelope: dict, context: str) -> bytes:
    ring = key_ring()
    master = ring.keys.get(envelope.get("kid", ""))
    if master is None:
        raise DecryptionError("the master key of this secret is not in the key ring")
    try:
        return AESGCM(master).decrypt(
            base64.b64decode(envelope["wn"]),
            base64.b64decode(envelope["wk"]),
            f"wrap:{context}".encode(),
        )
    except (InvalidTag, KeyError, ValueError) as exc:
        raise DecryptionError("data key cannot be unwrapped for this context") from exc


def decrypt(token: str, *, context: str) -> bytes:
    """Decrypt a token made by ``encrypt`` with the same ``context``. Raises DecryptionError."""
    envelope = _load(token)
    data_key = _unwrap(envelope, context)
    try:
        return AESGCM(data_key).decrypt(
            base64.b64decode(envelope["n"]), base64.b64decode(envelope["ct"]), context.encode()
        )
    except (InvalidTag, KeyError, ValueError) as exc:
        raise DecryptionError("ciphertext does not decrypt for this context") from exc


def rewrap(token: str, *, context: str) -> str:
    """Re-wrap the data key with the current primary master key (rotation)."""
    envelope = _load(token)
    data_key = _unwrap(envelope, context)
    ring = key_ring()
    if envelope["kid"] == ring.primary_id:
        return token
    wrap_nonce = os.urandom(12)
    envelope["kid"] = ring.primary_id
    envelope["wn"] = _b64(wrap_nonce)
    envelope["wk"] = _b64(
        AESGCM(ring.keys[ring.primary_id]).encrypt(wrap_nonce, data_key, f"wrap:{context}".encode())
    )
    return json.dumps(envelope, separators=(",", ":"))
