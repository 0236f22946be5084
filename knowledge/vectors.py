"""Vector storage and search of knowledge-base chunks, on both databases.

PostgreSQL: pgvector. ``knowledge_chunk.embedding`` is an untyped ``vector`` column (each
collection embeds with its own model), so each dimension gets its own partial HNSW
index over ``embedding::vector(N)`` ``WHERE dims = N`` (``ensure_index``), and queries
use the same expression so the planner can take it.

SQLite (the embedded default): a float32 blob compared with sqlite-vec's
``vec_distance_cosine``: an exact scan of the collection's chunks.
"""

from __future__ import annotations

from django.db import DatabaseError, connection

# pgvector indexes ``vector`` columns of at most 2,000 dimensions with HNSW; wider
# embeddings are searched by an exact scan.
HNSW_MAX_DIMENSIONS = 2000
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64


def index_name(dims: int) -> str:
    return f"knowledge_chunk_hnsw_{int(dims)}"


def ensure_index(dims: int) -> bool:
    """Create the HNSW index for ``dims`` on PostgreSQL if missing (outside a transaction,
    serialized by an advisory lock). True when such an index exists afterwards."""
    dims = int(dims)
    if connection.vendor != "postgresql" or not 0 < dims <= HNSW_MAX_DIMENSIONS:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(hashtext(%s))", [index_name(dims)])
        try:
            cursor.execute(
                f"CREATE INDEX IF NOT EXISTS {index_name(dims)} ON knowledge_chunk "
                f"USING hnsw ((embedding::vector({dims})) vector_cosine_ops) "
                f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) "
                f"WHERE dims = {dims}"
            )
        except DatabaseError:
            return False
        finally:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [index_name(dims)])
    return True
