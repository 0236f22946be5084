"""Key names of the shared state, hash-tagged so one request's keys share a slot.

On a Redis Cluster a script may only touch keys of one slot, and the slot of a
key is the CRC16 of its hash tag (the text between the first ``{`` and ``}``).
Everything a gateway request's limit script reads or counts belongs to its org
(``inferia:{<org id>}:...``); a login throttle window is tagged by its own
hashed key; the usage stream and its dead letters are one key each.
"""

from __future__ import annotations

import hashlib

USAGE_STREAM = "inferia:usage"
USAGE_GROUP = "ingest"
DEAD_LETTERS = "inferia:usage:dead"


def tagged(tag: str, *parts: object) -> str:
    """``inferia:{<tag>}:<parts...>``: every key with the same tag is on one slot."""
    return ":".join([f"inferia:{{{tag}}}", *(str(part) for part in parts)])


def epoch(org_id: object) -> str:
    return tagged(str(org_id), "epoch")


def hashed(text: str) -> str:
    """A stable tag for a name that must not reach the store in clear."""
    return hashlib.sha256(text.encode()).hexdigest()[:40]
