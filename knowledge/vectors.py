"""Vector storage and hybrid search of knowledge-base chunks, on both databases.

PostgreSQL: pgvector. ``knowledge_chunk.embedding`` is an untyped ``vector`` column (each
collection embeds with its own model), so each dimension gets its own partial HNSW
index over ``embedding::vector(N)`` ``WHERE dims = N`` (``ensure_index``), and queries
use the same expression so the planner can take it. Full text: the stored ``search``
tsvector (migration 0002, the ``simple`` configuration) with ``websearch_to_tsquery``
and ``ts_rank_cd``.

SQLite (the embedded default): a float32 blob compared with sqlite-vec's
``vec_distance_cosine`` (an exact scan of the collection's chunks); full text: the FTS5
table ``knowledge_chunk_fts`` ranked with ``bm25()``.

``search`` is the one search every edge calls (the query API, the gateway's chat
retrieval, the benchmark). It reads only chunks of the given collection, of its own
organization, whose document is ready; the caller has already decided that the
collection may be searched (``knowledge.policy``).

The two rankings are fused with Reciprocal Rank Fusion: a chunk at rank r (from 1) of a
list scores 1 / (60 + r) from it; ``Hit.score`` is that sum scaled so that 1.0 means
"first in both lists" (first by vector only: 0.5). ``Hit.similarity`` is the cosine
similarity of the chunk and the query (what ``min_score`` compares with) and
``Hit.text_rank`` the full-text rank (``ts_rank_cd`` on PostgreSQL, ``-bm25`` on SQLite:
higher is better, comparable only within one answer), None when the chunk was not
among the full-text matches.

The query text follows web-search syntax on both databases (PostgreSQL's
``websearch_to_tsquery``): words must all occur, ``"quoted words"`` as a phrase,
``or`` between alternatives, ``-word`` excludes. On SQLite it is translated into FTS5
syntax with every term quoted, so nothing a user types is FTS5 syntax.
"""

from __future__ import annotations

import math
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from django.db import DatabaseError, connection, models, transaction

from inferia.errors import ValidationError
from knowledge.fields import to_blob, to_text
from knowledge.models import KnowledgeBase

# pgvector indexes ``vector`` columns of at most 2,000 dimensions with HNSW; wider
# embeddings are searched by an exact scan.
HNSW_MAX_DIMENSIONS = 2000
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
MAX_DIMENSIONS = 16000  # pgvector's limit for the type

TOP_K_DEFAULT = 5
TOP_K_MAX = 50
QUERY_MAX_CHARS = 2000
RRF_K = 60
# Candidates each ranking contributes to the fusion.
CANDIDATES_MIN = 40
CANDIDATES_PER_RESULT = 4
FILTERS_MAX = 16
FILTER_VALUE_MAX_CHARS = 500
# Metadata keys a filter may name: checked before they reach any SQL (where they are
# bound as parameters anyway).
FILTER_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
FTS_TERMS_MAX = 32
# Matches the full-text ranking orders at most (PostgreSQL): see ``_Postgres.text_ranks``.
TEXT_MATCHES_MAX = 10_000


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


# --- parameters --------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    """A search's validated parameters (``validate``)."""

    query: str
    top_k: int = TOP_K_DEFAULT
    min_score: float | None = None
    filters: Mapping[str, str | int | float | bool] | None = None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_filters(filters: Any, *, field: str = "filters") -> dict[str, Any]:
    """``{"key": value}`` equality on chunk metadata: keys ``FILTER_KEY_RE``, values a
    string, a finite number or a boolean. VALIDATION_ERROR with details by field path."""
    if filters is None:
        return {}
    if not isinstance(filters, dict):
        raise ValidationError(
            "Invalid metadata filters",
            details={field: ['An object of {"key": value} pairs.']},
        )
    errors: dict[str, list[str]] = {}
    if len(filters) > FILTERS_MAX:
        errors[field] = [f"At most {FILTERS_MAX} keys."]
    for key, value in filters.items():
        if not isinstance(key, str) or not FILTER_KEY_RE.fullmatch(key):
            errors[field] = [
                "Keys are 1-64 letters, digits, '_' or '-', starting with a letter or '_'."
            ]
            continue
        where = f"{field}.{key}"
        if isinstance(value, str):
            if len(value) > FILTER_VALUE_MAX_CHARS:
                errors[where] = [f"At most {FILTER_VALUE_MAX_CHARS} characters."]
        elif _is_number(value):
            if not math.isfinite(value) or abs(value) > 2**53:
                errors[where] = ["A finite number."]
        elif not isinstance(value, bool):
            errors[where] = ["A string, a number or a boolean."]
    if errors:
        raise ValidationError("Invalid metadata filters", details=errors)
    return dict(filters)


def validate_options(
    top_k: Any = TOP_K_DEFAULT, min_score: Any = None, filters: Any = None, *, prefix: str = ""
) -> tuple[int, float | None, dict[str, Any] | None]:
    """``top_k`` 1-50 (None: 5), ``min_score`` a similarity from -1 to 1 (or None),
    ``filters`` as ``validate_filters``; VALIDATION_ERROR with details by field path
    (``prefix`` + name)."""
    errors = _option_errors(top_k, min_score, filters, prefix)
    if errors:
        raise ValidationError("Invalid search parameters", details=errors)
    return _options(top_k, min_score, filters)


def _option_errors(top_k: Any, min_score: Any, filters: Any, prefix: str) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if top_k is not None and (
        not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= TOP_K_MAX
    ):
        errors[f"{prefix}top_k"] = [f"An integer from 1 to {TOP_K_MAX}."]
    if min_score is not None and (
        not _is_number(min_score) or not math.isfinite(min_score) or not -1 <= min_score <= 1
    ):
        errors[f"{prefix}min_score"] = ["A cosine similarity from -1 to 1."]
    try:
        validate_filters(filters, field=f"{prefix}filters")
    except ValidationError as error:
        errors.update(error.details or {})
    return errors


def _options(
    top_k: Any, min_score: Any, filters: Any
) -> tuple[int, float | None, dict[str, Any] | None]:
    return (
        TOP_K_DEFAULT if top_k is None else int(top_k),
        None if min_score is None else float(min_score),
        dict(filters) if filters else None,
    )


def validate(
    query: Any,
    top_k: Any = TOP_K_DEFAULT,
    min_score: Any = None,
    filters: Any = None,
    *,
    prefix: str = "",
) -> Params:
    """The parameters of a search, checked: ``query`` 1-2000 characters (not blank) and
    the options as ``validate_options``. VALIDATION_ERROR with details by field path."""
    errors = _option_errors(top_k, min_score, filters, prefix)
    if not isinstance(query, str) or not query.strip() or len(query) > QUERY_MAX_CHARS:
        errors[f"{prefix}query"] = [f"Text of 1 to {QUERY_MAX_CHARS} characters."]
    if errors:
        raise ValidationError("Invalid search parameters", details=errors)
    top_k, min_score, filters = _options(top_k, min_score, filters)
    # PostgreSQL's text cannot hold NUL: a space searches for the same words.
    query = query.replace("\x00", " ")
    return Params(query=query, top_k=top_k, min_score=min_score, filters=filters)


# --- the query text ----------------------------------------------------------------------

_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_WORD = re.compile(r"[^\W_]+")


@dataclass(frozen=True)
class _Term:
    words: tuple[str, ...]  # one word, or a phrase
    negated: bool


def _groups(text: str) -> list[list[_Term]]:
    """The query in web-search syntax as alternatives (``or``) of terms that must all
    match (or, negated, must not). Only words survive: punctuation, ``*``, ``NEAR(``,
    ``:`` or quotes are never operators of the underlying engine."""
    groups: list[list[_Term]] = [[]]
    count = 0
    for match in _TOKEN.finditer(text):
        negated_phrase, phrase, bare = match.groups()
        if phrase is not None:
            negated, words = bool(negated_phrase), tuple(_WORD.findall(phrase.lower()))
        else:
            if bare.lower() == "or":
                if groups[-1]:
                    groups.append([])
                continue
            negated = bare.startswith("-") and len(bare) > 1
            words = tuple(_WORD.findall(bare.lower()))
        if not words:
            continue
        groups[-1].append(_Term(words, negated))
        count += 1
        if count >= FTS_TERMS_MAX:
            break
    # An alternative made only of exclusions matches nearly everything: dropped.
    return [g for g in groups if any(not t.negated for t in g)]


def _fts5_quoted(term: _Term) -> str:
    # Words hold only letters and digits: inside double quotes they are plain text.
    return '"' + " ".join(term.words) + '"'


def fts5_query(text: str) -> str | None:
    """SQLite FTS5 syntax for ``text`` (every term quoted), None when it has no term."""
    parts = []
    for group in _groups(text):
        positive = " AND ".join(_fts5_quoted(t) for t in group if not t.negated)
        negative = " OR ".join(_fts5_quoted(t) for t in group if t.negated)
        parts.append(f"({positive}) NOT ({negative})" if negative else f"({positive})")
    return " OR ".join(parts) or None


# --- search ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    document_id: uuid.UUID
    document: str
    ordinal: int
    text: str
    metadata: dict[str, Any]
    score: float
    similarity: float
    text_rank: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "document_id": str(self.document_id),
            "document": self.document,
            "ordinal": self.ordinal,
            "text": self.text,
            "metadata": self.metadata,
            "score": self.score,
            "similarity": self.similarity,
            "text_rank": self.text_rank,
        }


def _db_uuid(value: Any) -> Any:
    return models.UUIDField().get_db_prep_value(value, connection, prepared=False)


def _candidates(top_k: int) -> int:
    return max(CANDIDATES_MIN, CANDIDATES_PER_RESULT * top_k)


def _fuse(vector_ids: Sequence[int], text_ranks: Sequence[tuple[int, float]]) -> dict[int, float]:
    scores: dict[int, float] = {}
    for rank, chunk_id in enumerate(vector_ids, start=1):
        scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    for rank, (chunk_id, _text_rank) in enumerate(text_ranks, start=1):
        scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
    best = 2.0 / (RRF_K + 1)
    return {chunk_id: score / best for chunk_id, score in scores.items()}


def search(
    kb: KnowledgeBase,
    query_vector: Sequence[float],
    query_text: str,
    *,
    top_k: int = TOP_K_DEFAULT,
    min_score: float | None = None,
    filters: Mapping[str, Any] | None = None,
) -> list[Hit]:
    """The ``top_k`` chunks of ``kb`` best matching the query (vector and full text,
    fused), best first. Only chunks of ready documents of ``kb``'s own organization;
    ``min_score`` drops hits whose cosine similarity is lower; ``filters`` keeps chunks
    whose metadata holds each ``key: value``. VALIDATION_ERROR on bad parameters."""
    params = validate(query_text, top_k, min_score, filters)
    vector = [float(v) for v in query_vector]
    if not 0 < len(vector) <= MAX_DIMENSIONS or not all(math.isfinite(v) for v in vector):
        raise ValidationError("Invalid query vector")
    backend = _Postgres if connection.vendor == "postgresql" else _Sqlite
    with transaction.atomic():
        engine = backend(kb, vector, params)
        vector_ids = engine.vector_ids()
        text_ranks = engine.text_ranks()
        fused = _fuse(vector_ids, text_ranks)
        rows = engine.rows(list(fused)) if fused else []
    text_rank_of = dict(text_ranks)
    hits = []
    for chunk_id, document_id, document, ordinal, text, metadata, similarity in rows:
        similarity = float(similarity)
        if params.min_score is not None and not similarity >= params.min_score:
            continue
        if isinstance(metadata, str | bytes):
            metadata = orjson.loads(metadata)
        hits.append(
            Hit(
                chunk_id=int(chunk_id),
                document_id=uuid.UUID(str(document_id)),
                document=document,
                ordinal=int(ordinal),
                text=text,
                metadata=metadata or {},
                score=round(fused[int(chunk_id)], 6),
                similarity=round(similarity, 6),
                text_rank=text_rank_of.get(int(chunk_id)),
            )
        )
    hits.sort(key=lambda h: (-h.score, -h.similarity, h.chunk_id))
    return hits[: params.top_k]


class _Engine(ABC):
    """One search on one database: the two rankings and the rows of the fused hits."""

    def __init__(self, kb: KnowledgeBase, vector: list[float], params: Params) -> None:
        self.kb_id = _db_uuid(kb.pk)
        self.org_id = _db_uuid(kb.org_id)
        self.dims = len(vector)
        self.vector = vector
        self.params = params
        self.candidates = _candidates(params.top_k)

    @abstractmethod
    def vector_ids(self) -> list[int]: ...

    @abstractmethod
    def text_ranks(self) -> list[tuple[int, float]]: ...

    @abstractmethod
    def rows(self, ids: list[int]) -> list[tuple]: ...


class _Postgres(_Engine):
    """pgvector's HNSW index, with an exact scan when its post-filtering falls short."""

    def __init__(self, kb: KnowledgeBase, vector: list[float], params: Params) -> None:
        super().__init__(kb, vector, params)
        self.vector_text = to_text(vector)
        self.metadata = orjson.dumps(params.filters).decode() if params.filters else None

    def _filters(self) -> tuple[str, list[Any]]:
        if self.metadata is None:
            return "", []
        return " AND c.metadata @> %s::jsonb", [self.metadata]

    def vector_sql(self, *, exact: bool) -> tuple[str, list[Any]]:
        """The vector ranking's SQL.

        Approximate: the inner query holds only what the partial HNSW index and the
        planner's statistics can judge (``dims = N`` with N a literal, so the index's
        predicate matches; the collection and org), ordered by the very expression the
        index holds and cut at what the index yields (``hnsw.ef_search``). The outer
        query drops chunks of documents not ready and those the metadata filters
        exclude. Exact: the same conditions in one join ordered by similarity, which no
        index serves (every chunk of the collection is compared)."""
        dims = int(self.dims)
        distance = f"(c.embedding::vector({dims})) <=> %s::vector({dims})"
        filters, filter_params = self._filters()
        ready = "d.knowledge_base_id = %s AND d.org_id = %s AND d.status = 'ready'"
        if exact:
            sql = (
                f"SELECT c.id FROM knowledge_chunk c "  # noqa: S608 - literals and checked ints only
                f"JOIN knowledge_document d ON d.id = c.document_id "
                f"WHERE c.dims = {dims} AND c.knowledge_base_id = %s AND c.org_id = %s "
                f"AND {ready}{filters} ORDER BY 1 - ({distance}) DESC, c.id LIMIT %s"
            )
            params = [self.kb_id, self.org_id, self.kb_id, self.org_id, *filter_params]
            return sql, [*params, self.vector_text, self.candidates]
        sql = (
            f"SELECT c.id FROM (SELECT c.id, c.document_id, c.metadata, "  # noqa: S608 - literals and checked ints only
            f"{distance} AS distance FROM knowledge_chunk c "
            f"WHERE c.dims = {dims} AND c.knowledge_base_id = %s AND c.org_id = %s "
            f"ORDER BY {distance} LIMIT %s) AS c "
            f"JOIN knowledge_document d ON d.id = c.document_id "
            f"WHERE {ready}{filters} ORDER BY c.distance, c.id LIMIT %s"
        )
        params = [
            self.vector_text,
            self.kb_id,
            self.org_id,
            self.vector_text,
            self.ef_search,
            self.kb_id,
            self.org_id,
            *filter_params,
            self.candidates,
        ]
        return sql, params

    @property
    def ef_search(self) -> int:
        # HNSW yields at most ef_search rows; what the outer conditions keep of them.
        return max(40, 2 * self.candidates)

    def vector_ids(self) -> list[int]:
        with connection.cursor() as cursor:
            if self.dims > HNSW_MAX_DIMENSIONS:
                return self._run(cursor, exact=True)
            cursor.execute(f"SET LOCAL hnsw.ef_search = {int(self.ef_search)}")
            ids = self._run(cursor, exact=False)
            if len(ids) < self.candidates and self._more_chunks_than(cursor, len(ids)):
                # Chunks of the collection were left out (not ready, filtered, or behind
                # chunks of other collections in the index): compare them all instead.
                ids = self._run(cursor, exact=True)
            return ids

    def _run(self, cursor, *, exact: bool) -> list[int]:
        sql, params = self.vector_sql(exact=exact)
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]

    def _more_chunks_than(self, cursor, count: int) -> bool:
        cursor.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM knowledge_chunk "  # noqa: S608 - literals and checked ints only
            f"WHERE knowledge_base_id = %s AND org_id = %s AND dims = {int(self.dims)} "
            f"LIMIT %s) AS found",
            [self.kb_id, self.org_id, count + 1],
        )
        return cursor.fetchone()[0] > count

    def text_ranks(self) -> list[tuple[int, float]]:
        """The full-text ranking: ``ts_rank_cd`` of the matching chunks, of at most
        ``TEXT_MATCHES_MAX`` of them. Ranking every match of a query made only of common
        words (most of a large collection) would read it all for a ranking that says
        little; such a query is ranked among the first matches found."""
        if not _groups(self.params.query):
            return []  # no word to look for
        filters, filter_params = self._filters()
        query = "websearch_to_tsquery('simple', %s)"
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT m.id, ts_rank_cd(m.search, {query}) AS rank FROM ("  # noqa: S608 - literals and checked ints only
                f"SELECT c.id, c.search FROM knowledge_chunk c "
                f"JOIN knowledge_document d ON d.id = c.document_id "
                f"WHERE c.dims = {int(self.dims)} AND c.knowledge_base_id = %s AND c.org_id = %s "
                f"AND d.knowledge_base_id = %s AND d.org_id = %s AND d.status = 'ready' "
                f"AND c.search @@ {query}{filters} LIMIT {int(TEXT_MATCHES_MAX)}) AS m "
                f"ORDER BY rank DESC, m.id LIMIT %s",
                [
                    self.params.query,
                    self.kb_id,
                    self.org_id,
                    self.kb_id,
                    self.org_id,
                    self.params.query,
                    *filter_params,
                    self.candidates,
                ],
            )
            return [(row[0], round(float(row[1]), 6)) for row in cursor.fetchall()]

    def rows(self, ids: list[int]) -> list[tuple]:
        dims = int(self.dims)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT c.id, c.document_id, d.name, c.ordinal, c.text, c.metadata, "  # noqa: S608 - literals and checked ints only
                f"1 - ((c.embedding::vector({dims})) <=> %s::vector({dims})) "
                f"FROM knowledge_chunk c JOIN knowledge_document d ON d.id = c.document_id "
                f"WHERE c.id = ANY(%s) AND c.dims = {dims} AND c.knowledge_base_id = %s "
                f"AND c.org_id = %s AND d.org_id = %s AND d.status = 'ready'",
                [self.vector_text, ids, self.kb_id, self.org_id, self.org_id],
            )
            return cursor.fetchall()


class _Sqlite(_Engine):
    """sqlite-vec's exact cosine distance and FTS5's bm25."""

    def __init__(self, kb: KnowledgeBase, vector: list[float], params: Params) -> None:
        super().__init__(kb, vector, params)
        self.blob = to_blob(vector)

    def _filters(self) -> tuple[str, list[Any]]:
        sql: list[str] = []
        params: list[Any] = []
        for key, value in (self.params.filters or {}).items():
            path = f'$."{key}"'  # the key matched FILTER_KEY_RE: no quote in it
            if isinstance(value, bool):
                sql.append("json_type(c.metadata, %s) = %s")
                params += [path, "true" if value else "false"]
            elif isinstance(value, str):
                sql.append(
                    "json_type(c.metadata, %s) = 'text' AND json_extract(c.metadata, %s) = %s"
                )
                params += [path, path, value]
            else:
                sql.append(
                    "json_type(c.metadata, %s) IN ('integer', 'real') "
                    "AND json_extract(c.metadata, %s) = %s"
                )
                params += [path, path, value]
        return "".join(f" AND {s}" for s in sql), params

    def _scope(self) -> tuple[str, list[Any]]:
        filters, filter_params = self._filters()
        sql = (
            "JOIN knowledge_document d ON d.id = c.document_id "
            "WHERE c.dims = %s AND c.knowledge_base_id = %s AND c.org_id = %s "
            "AND d.knowledge_base_id = %s AND d.org_id = %s AND d.status = 'ready'" + filters
        )
        return sql, [self.dims, self.kb_id, self.org_id, self.kb_id, self.org_id, *filter_params]

    def vector_ids(self) -> list[int]:
        scope, params = self._scope()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT c.id FROM knowledge_chunk c {scope} "  # noqa: S608 - literals and checked ints only
                f"ORDER BY vec_distance_cosine(c.embedding, %s), c.id LIMIT %s",
                [*params, self.blob, self.candidates],
            )
            return [row[0] for row in cursor.fetchall()]

    def text_ranks(self) -> list[tuple[int, float]]:
        match = fts5_query(self.params.query)
        if match is None:
            return []
        scope, params = self._scope()
        with connection.cursor() as cursor:
            # The full-text index answers the MATCH once, materialized first: joined
            # directly, SQLite may drive the join from the chunks and run the MATCH once
            # per chunk of the collection (seconds at 10k chunks).
            cursor.execute(
                "WITH m AS MATERIALIZED (SELECT rowid AS id, bm25(knowledge_chunk_fts) AS rank "  # noqa: S608 - literals and checked ints only
                "FROM knowledge_chunk_fts WHERE knowledge_chunk_fts MATCH %s) "
                f"SELECT c.id, m.rank FROM m JOIN knowledge_chunk c ON c.id = m.id {scope} "
                "ORDER BY m.rank, c.id LIMIT %s",
                [match, *params, self.candidates],
            )
            return [(row[0], round(-float(row[1]), 6)) for row in cursor.fetchall()]

    def rows(self, ids: list[int]) -> list[tuple]:
        scope, params = self._scope()
        marks = ", ".join(["%s"] * len(ids))
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT c.id, c.document_id, d.name, c.ordinal, c.text, c.metadata, "  # noqa: S608 - literals and checked ints only
                f"1 - vec_distance_cosine(c.embedding, %s) FROM knowledge_chunk c {scope} "
                f"AND c.id IN ({marks})",
                [self.blob, *params, *ids],
            )
            return cursor.fetchall()
