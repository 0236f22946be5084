"""A vector column on both databases: pgvector's ``vector`` on PostgreSQL, a float32
blob (what sqlite-vec's distance functions read) on SQLite.

The column carries no dimension, since each knowledge base embeds with its own model;
``Chunk.dims`` holds it, and PostgreSQL indexes each dimension with its own partial
HNSW index (``knowledge.vectors.ensure_index``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from django.db import models


def to_blob(values: Sequence[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def from_blob(data: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(data) // 4}f", data))


def to_text(values: Sequence[float]) -> str:
    """pgvector's text form: ``[0.1,0.2]`` (repr keeps every float exact)."""
    return "[" + ",".join(repr(float(v)) for v in values) + "]"


def from_text(text: str) -> list[float]:
    inner = text.strip()[1:-1]
    return [float(v) for v in inner.split(",")] if inner else []


class VectorField(models.Field):
    description = "A vector of floats (pgvector on PostgreSQL, a float32 blob on SQLite)"

    def db_type(self, connection) -> str:
        return "vector" if connection.vendor == "postgresql" else "blob"

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        if connection.vendor == "postgresql":
            return to_text(value)
        return to_blob(value)

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        if isinstance(value, memoryview | bytes | bytearray):
            return from_blob(bytes(value))
        if isinstance(value, str):
            return from_text(value)
        return [float(v) for v in value]

    def to_python(self, value):
        if value is None or isinstance(value, list):
            return value
        return self.from_db_value(value, None, None)
