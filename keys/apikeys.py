"""The API key format: ``ifr_<public id>_<secret><checksum>``.

Other bearer secrets of the platform (SCIM tokens: ``ifs_...``) use the same format
under their own prefix (the ``prefix`` argument), so one generator, parser and
constant-time comparison serves them all, and a credential of one kind is never
mistaken for another.

The public id (12 base62 characters) identifies the key in lists, logs and
audit; the secret has 44 base62 characters (over 256 bits); the last six
characters are a base62 CRC32 of the rest, so secret scanners (and we, before
touching the database) can tell a real key from a typo. Only the SHA-256 of
the whole key is stored: keys are random, so a slow hasher buys nothing, and
no pepper ties them to ``SECRET_KEY``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass

PREFIX = "ifr"
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PUBLIC_ID_LENGTH = 12
SECRET_LENGTH = 44
CHECKSUM_LENGTH = 6


@functools.cache
def _key_re(prefix: str) -> re.Pattern[str]:
    return re.compile(
        rf"^{prefix}_([0-9A-Za-z]{{{PUBLIC_ID_LENGTH}}})_([0-9A-Za-z]{{{SECRET_LENGTH + CHECKSUM_LENGTH}}})$"
    )


@dataclass(frozen=True)
class NewKey:
    public_id: str
    plaintext: str
    digest: str
    last_four: str


def _random(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(ALPHABET[rest])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECKSUM_LENGTH)


def digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate(public_id: str | None = None, *, prefix: str = PREFIX) -> NewKey:
    public_id = public_id or _random(PUBLIC_ID_LENGTH)
    body = f"{prefix}_{public_id}_{_random(SECRET_LENGTH)}"
    plaintext = body + _checksum(body)
    return NewKey(
        public_id=public_id, plaintext=plaintext, digest=digest(plaintext), last_four=plaintext[-4:]
    )


def looks_like_key(raw: str, *, prefix: str = PREFIX) -> bool:
    return raw.startswith(f"{prefix}_")


def parse_public_id(raw: str, *, prefix: str = PREFIX) -> str | None:
    """The public id of a well-formed key with a valid checksum, else None."""
    match = _key_re(prefix).match(raw)
    if match is None:
        return None
    body, checksum = raw[:-CHECKSUM_LENGTH], raw[-CHECKSUM_LENGTH:]
    if not hmac.compare_digest(_checksum(body), checksum):
        return None
    return match.group(1)


def matches(raw: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(raw), stored_digest)
