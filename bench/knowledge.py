"""Knowledge-base search on PostgreSQL + pgvector: HNSW beside an exact scan, in one run.

    .ci/pgvector                                  # PostgreSQL 16 + pgvector on :5433
    .venv/bin/python bench/knowledge.py --sizes 10000,1000000 --queries 200

``DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5433/bench_knowledge``, made
if missing) must be a database of its own: the run empties its knowledge tables.
Migrated by the product's migrations; the org ``bench-kb``, its provider account (the
in-repo fake upstream's ``fake-embed``) and the collection are made through the
product's services.

For each size: ``size`` chunks of generated text (30 words from a Zipf-distributed
vocabulary of 20,000 made-up words; one document per 100 chunks) with their 64-dim
``gateway.fake_upstream.fake_embedding`` vectors are loaded with ``COPY`` (secondary
indexes dropped first and rebuilt after, foreign-key triggers off: the rows are
consistent by construction), then the product's HNSW index is built
(``knowledge.vectors.ensure_index``, with ``maintenance_work_mem`` and parallel
maintenance workers). Then ``--queries`` queries (3 consecutive words of a random
chunk; their vectors computed locally: the embedding call is the gateway's cost,
measured in ``bench/run.py``) go through four paths, each timed per query:

1. ``knowledge.vectors.search``, top 10, as the query API and chat retrieval call it
   (vector and full-text rankings fused; HNSW as the planner chooses);
2. the same function with index scans off (``enable_indexscan``): its exact scan;
3. raw SQL, vector ranking only, the HNSW index (``hnsw.ef_search`` as ``search`` sets
   it for top 10: 80);
4. raw SQL, vector ranking only, exact (index scans off: a parallel sequential scan).

Recall@10 compares (3) with (4): the share of the exact top 10 the index found,
counting a hit whose distance ties the 10th exact one as found. For ``search`` the
agreement of (1) with (2) is reported the same way (the top 10 ids in common).

Ingestion (pages/s with the fake embedder, ``--ingest-pages``): 10-page PDFs of
generated text (a page is 3,000 characters) go through the product's own pipeline, one
after another: the upload service (``knowledge.documents.document_upload``: checks,
storage, audit) and the ingestion task, run eagerly in this process (parse with pypdf,
chunk, embed through the gateway application in-process as the bench user, against the
in-repo fake upstream in its own process, write, swap to ready).
"""

from __future__ import annotations

import argparse
import base64
import bisect
import itertools
import json
import os
import platform
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5433/bench_knowledge"
SLUG = "bench-kb"
ACCOUNT = "kb-upstream"
EMBED_MODEL = f"{ACCOUNT}/fake-embed"
SECRET = "sk-bench-fake-upstream-secret"  # noqa: S105 - the fake upstream's
KB_NAME = "bench"
INGEST_KB_NAME = "bench-ingest"  # the ingestion measurement's own collection
DIMS = 64
WORDS_PER_CHUNK = 30
CHUNKS_PER_DOCUMENT = 100
VOCABULARY = 20_000
TOP_K = 10
SEARCH_EF = 80  # what vectors.search sets for top 10: max(40, 2 x 40 candidates)
WARMUP = 10
COPY_BATCH = 20_000


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _environment(url: str) -> None:
    """What the settings need for a run against ``url`` (keys generated per run)."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inferia.settings")
    os.environ.setdefault("INFERIA_PRINT_CONFIG", "0")
    os.environ.setdefault("INFERIA_VAR_DIR", tempfile.mkdtemp(prefix="bench-knowledge-"))
    os.environ.setdefault("INFERIA_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("INFERIA_JWT_SIGNING_KEY", secrets.token_urlsafe(64))
    os.environ.setdefault(
        "INFERIA_MASTER_KEYS", "k1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    )
    os.environ.setdefault("INFERIA_ALLOWED_HOSTS", "127.0.0.1,localhost")


def _create_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    base, _, name = url.rpartition("/")
    name = name.split("?", 1)[0]
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        log(f"created database {name}")


# --- generated text -----------------------------------------------------------------------


def _vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["an", "er", "is", "on"]
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    ordered = sorted(words)
    rng.shuffle(ordered)
    weights = [1.0 / (rank + 1) for rank in range(len(ordered))]  # Zipf, s = 1
    return ordered, list(itertools.accumulate(weights))


class Corpus:
    """Deterministic chunk texts: chunk ``i`` of a run is the same in every run."""

    def __init__(self, seed: int = 15) -> None:
        self.words, self.cumulative = _vocabulary(random.Random(seed))  # noqa: S311 - data
        self.seed = seed

    def text(self, index: int) -> str:
        rng = random.Random(self.seed * 1_000_003 + index)  # noqa: S311 - data
        total = self.cumulative[-1]
        picks = [
            self.words[bisect.bisect(self.cumulative, rng.random() * total)]
            for _ in range(WORDS_PER_CHUNK)
        ]
        return " ".join(picks).capitalize() + "."

    def query(self, rng: random.Random, size: int) -> str:
        words = self.text(rng.randrange(size)).rstrip(".").lower().split()
        start = rng.randrange(len(words) - 3)
        return " ".join(words[start : start + 3])


# --- loading ------------------------------------------------------------------------------


def setup() -> tuple[Any, Any, Any, Any]:
    """The org, its user, the searched collection and the ingestion measurement's (made
    once, through the product's services)."""
    from keys import access_rules, services
    from knowledge import services as kb_services
    from knowledge.models import KnowledgeBase
    from orgs.access import access_for_user
    from orgs.models import Organization, User
    from orgs.scoping import org_scope
    from orgs.services import tenancy

    org = Organization.objects.filter(slug=SLUG).first()
    user = User.objects.filter(username=SLUG).first()
    if org is None or user is None:
        user = user or User(username=SLUG, email="bench-kb@example.com")
        user.set_unusable_password()
        user.save()
        org = tenancy.organization_create(user=user, slug=SLUG, name="Knowledge benchmark")
        org.settings = {"allowed_private_hosts": ["127.0.0.1:9"]}
        org.save(update_fields=["settings"])
    access = access_for_user(org, user)
    with org_scope(org):
        kb = KnowledgeBase.objects.filter(name=KB_NAME).first()
        if kb is None:
            services.provider_account_create(
                access=access,
                name=ACCOUNT,
                provider_type="openai",
                base_url="http://127.0.0.1:9/v1",  # set to the fake upstream when used
                models=[{"name": "fake-embed"}],
                secret=SECRET,
            )
            access_rules.access_rules_replace(
                access=access,
                document={
                    "authz_rules": [
                        {"models": [f"{ACCOUNT}/*"], "knowledge_bases": ["*"], "users": [SLUG]}
                    ]
                },
            )
            access = access_for_user(org, user)
            kb = kb_services.kb_create(access=access, name=KB_NAME, embedding_model=EMBED_MODEL)
        ingest_kb = KnowledgeBase.objects.filter(name=INGEST_KB_NAME).first()
        if ingest_kb is None:
            ingest_kb = kb_services.kb_create(
                access=access_for_user(org, user),
                name=INGEST_KB_NAME,
                embedding_model=EMBED_MODEL,
            )
    return org, user, kb, ingest_kb


def _secondary_indexes(cursor) -> list[tuple[str, str]]:
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'knowledge_chunk' "
        "AND indexname NOT LIKE '%%_pkey' AND indexname NOT LIKE 'knowledge_chunk_hnsw_%%'"
    )
    return cursor.fetchall()


def _rows(org, kb, documents: list, corpus: Corpus, size: int) -> Iterable[bytes]:
    from gateway.fake_upstream import fake_embedding
    from knowledge.fields import to_text

    prefix = f"{org.pk}\t{kb.pk}\t"
    batch: list[str] = []
    for index in range(size):
        text = corpus.text(index)
        document = documents[index // CHUNKS_PER_DOCUMENT]
        metadata = json.dumps({"section": index % 8})
        vector = to_text(fake_embedding(text, DIMS))
        batch.append(
            f"{prefix}{document.pk}\t{index % CHUNKS_PER_DOCUMENT}\t{text}\t{metadata}"
            f"\t{DIMS}\t{vector}\n"
        )
        if len(batch) == COPY_BATCH:
            yield "".join(batch).encode()
            batch.clear()
    if batch:
        yield "".join(batch).encode()


def _documents(org, kb, size: int) -> list:
    """The ready documents ``size`` chunks belong to (``CHUNKS_PER_DOCUMENT`` each)."""
    from django.utils import timezone

    from knowledge.models import Document, DocumentStatus
    from orgs.scoping import org_scope

    now = timezone.now()
    with org_scope(org):
        return Document.objects.bulk_create(
            [
                Document(
                    org=org,
                    knowledge_base=kb,
                    name=f"doc-{number:07d}.md",
                    content_type="text/markdown",
                    sha256="0" * 64,
                    status=DocumentStatus.READY,
                    chunks_total=CHUNKS_PER_DOCUMENT,
                    chunks_done=CHUNKS_PER_DOCUMENT,
                    ready_at=now,
                )
                for number in range((size + CHUNKS_PER_DOCUMENT - 1) // CHUNKS_PER_DOCUMENT)
            ],
            batch_size=5000,
        )


def load(org, kb, corpus: Corpus, size: int) -> dict[str, float]:
    """Empty the collection, then ``size`` chunks by COPY and every index rebuilt."""
    from django.db import connection

    from knowledge import vectors

    timings: dict[str, float] = {}
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE knowledge_chunk, knowledge_documentsource, knowledge_document")
        cursor.execute(f"DROP INDEX IF EXISTS {vectors.index_name(DIMS)}")
        indexes = _secondary_indexes(cursor)
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
    documents = _documents(org, kb, size)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # Foreign-key triggers off for the load (superuser): the rows reference the
        # org, collection and documents just made.
        cursor.execute("SET session_replication_role = replica")
        columns = "org_id, knowledge_base_id, document_id, ordinal, text, metadata, dims, embedding"
        with cursor.cursor.copy(f"COPY knowledge_chunk ({columns}) FROM STDIN") as copy:
            for data in _rows(org, kb, documents, corpus, size):
                copy.write(data)
        cursor.execute("SET session_replication_role = DEFAULT")
    timings["copy_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '2GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 2")
        for _name, definition in indexes:
            cursor.execute(definition)
        cursor.execute("VACUUM ANALYZE knowledge_chunk")
        cursor.execute("ANALYZE knowledge_document")
    timings["indexes_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '2GB'")
        cursor.execute("SET max_parallel_maintenance_workers = 2")
    if not vectors.ensure_index(DIMS):
        raise RuntimeError("the HNSW index could not be built")
    timings["hnsw_seconds"] = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute("RESET max_parallel_maintenance_workers")
        cursor.execute("ANALYZE knowledge_chunk")
        cursor.execute(
            "SELECT pg_total_relation_size('knowledge_chunk'), "
            f"pg_relation_size('{vectors.index_name(DIMS)}')"
        )
        total, hnsw = cursor.fetchone()
    timings["table_mb"] = total / 2**20
    timings["hnsw_mb"] = hnsw / 2**20
    return timings


def _loaded(kb) -> int:
    """Chunks of the bench collection, when its HNSW index exists (else -1)."""
    from django.db import connection

    from knowledge import vectors

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [vectors.index_name(DIMS)])
        if cursor.fetchone() is None:
            return -1
        cursor.execute("SELECT count(*) FROM knowledge_chunk WHERE knowledge_base_id = %s", [kb.pk])
        return cursor.fetchone()[0]


# --- queries ------------------------------------------------------------------------------


def _raw_sql(kb) -> str:
    """The vector ranking alone: what ``search``'s inner query asks of the index."""
    return (
        f"SELECT c.id, (c.embedding::vector({DIMS})) <=> %s::vector({DIMS}) AS distance "  # noqa: S608
        f"FROM knowledge_chunk c WHERE c.dims = {DIMS} AND c.knowledge_base_id = %s "
        f"AND c.org_id = %s ORDER BY (c.embedding::vector({DIMS})) <=> %s::vector({DIMS}) "
        f"LIMIT {TOP_K}"
    )


def _settings(cursor, *, exact: bool) -> None:
    cursor.execute(f"SET enable_indexscan = {'off' if exact else 'on'}")


def _timed(function: Callable[[Any], Any], items: list) -> tuple[list[float], list[Any]]:
    for item in items[:WARMUP]:
        function(item)
    times, results = [], []
    for item in items:
        started = time.perf_counter()
        results.append(function(item))
        times.append((time.perf_counter() - started) * 1000)
    return times, results


def _plan_uses_hnsw(kb, vector_text: str) -> bool:
    from django.db import connection

    from knowledge import vectors

    with connection.cursor() as cursor:
        cursor.execute("SET hnsw.ef_search = 80")
        cursor.execute("EXPLAIN " + _raw_sql(kb), [vector_text, kb.pk, kb.org_id, vector_text])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    return vectors.index_name(DIMS) in plan


def _recall(found: list[tuple[int, float]], exact: list[tuple[int, float]]) -> float:
    if not exact:
        return 1.0
    ids = {chunk_id for chunk_id, _ in exact}
    worst = max(distance for _, distance in exact)
    hits = sum(1 for chunk_id, distance in found if chunk_id in ids or distance <= worst + 1e-6)
    return min(hits, len(exact)) / len(exact)


def measure_queries(
    org, kb, corpus: Corpus, size: int, count: int, ef_searches: list[int]
) -> dict[str, Any]:
    from django.db import connection

    from gateway.fake_upstream import fake_embedding
    from knowledge import vectors
    from knowledge.fields import to_text

    rng = random.Random(size)  # noqa: S311 - generated queries, not secrets
    texts = [corpus.query(rng, size) for _ in range(count)]
    queries = [(text, fake_embedding(text, DIMS)) for text in texts]
    out: dict[str, Any] = {"hnsw_in_plan": _plan_uses_hnsw(kb, to_text(queries[0][1]))}

    def search(query):
        text, vector = query
        return [hit.chunk_id for hit in vectors.search(kb, vector, text, top_k=TOP_K)]

    def raw(query):
        _text, vector = query
        vector_text = to_text(vector)
        with connection.cursor() as cursor:
            cursor.execute(_raw_sql(kb), [vector_text, kb.pk, kb.org_id, vector_text])
            return cursor.fetchall()

    lines = {}
    for exact in (False, True):
        with connection.cursor() as cursor:
            _settings(cursor, exact=exact)
        name = "exact" if exact else "hnsw"
        log(f"{size:,} chunks: vectors.search, {name}")
        lines[f"search_{name}"] = _timed(search, queries)
        for ef in [SEARCH_EF] if exact else ef_searches:
            with connection.cursor() as cursor:
                cursor.execute(f"SET hnsw.ef_search = {int(ef)}")
            line = "raw_exact" if exact else f"raw_hnsw_{ef}"
            log(f"{size:,} chunks: raw SQL vector-only, {name} {'' if exact else ef}")
            lines[line] = _timed(raw, queries)
    with connection.cursor() as cursor:
        cursor.execute("RESET enable_indexscan")
        cursor.execute("RESET hnsw.ef_search")
    for name, (times, _results) in lines.items():
        out[name] = {
            "p50_ms": statistics.median(times),
            "p99_ms": _percentile(times, 99),
            "mean_ms": statistics.fmean(times),
        }
    raw_exact = lines["raw_exact"][1]
    for ef in ef_searches:
        out[f"raw_hnsw_{ef}"]["recall_at_10"] = statistics.fmean(
            _recall(found, exact)
            for found, exact in zip(lines[f"raw_hnsw_{ef}"][1], raw_exact, strict=True)
        )
    search_hnsw, search_exact = lines["search_hnsw"][1], lines["search_exact"][1]
    out["search_hnsw"]["agreement_at_10"] = statistics.fmean(
        len(set(a) & set(b)) / max(1, len(b))
        for a, b in zip(search_hnsw, search_exact, strict=True)
    )
    out["queries"] = count
    return out


def _percentile(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(percent / 100 * len(ordered)) - 1))
    return ordered[rank]


# --- ingestion ----------------------------------------------------------------------------


def measure_ingestion(
    ingest: Callable[[Any], Any], documents: list[Any], *, pages: Callable[[Any], int]
) -> dict[str, float]:
    """INGESTION HOOK: pages/s of the upload pipeline with the fake embedder.

    ``ingest(document)`` runs one document's whole ingestion (parse, chunk, embed through
    the gateway, write) and returns when it is ready; ``pages(document)`` counts its
    pages (``measure_pipeline`` passes the product's upload and ingestion)."""
    started = time.perf_counter()
    total_pages = 0
    for document in documents:
        ingest(document)
        total_pages += pages(document)
    seconds = time.perf_counter() - started
    return {
        "documents": len(documents),
        "pages": total_pages,
        "seconds": seconds,
        "pages_per_second": total_pages / seconds if seconds else 0.0,
    }


PAGE_CHARACTERS = 3000


def measure_pipeline(org, user, kb, corpus: Corpus, pages: int) -> dict[str, Any]:
    """Pages/s of the whole upload pipeline with the fake embedder: for each 10-page PDF,
    the upload service (checks, storage, audit), then the ingestion task run eagerly
    (parse with pypdf, chunk, embed through the gateway as the uploader, write, swap to
    ready): ``measure_ingestion`` with the product's own ``ingest``."""
    from knowledge import documents
    from knowledge.models import Document, DocumentStatus
    from orgs.access import access_for_user
    from orgs.scoping import org_scope
    from tests.knowledge.files import pdf

    pages_per_document = 10
    count = max(1, pages // pages_per_document)
    blobs = []
    index = 10**9  # not the search corpus's chunks
    for _ in range(count + 1):  # the first one warms up
        texts = []
        for _page in range(pages_per_document):
            parts: list[str] = []
            while sum(len(p) + 1 for p in parts) < PAGE_CHARACTERS:
                parts.append(corpus.text(index))
                index += 1
            # Lines of about 90 characters, as a PDF page holds them.
            words = " ".join(parts)[:PAGE_CHARACTERS].split()
            lines, line = [], ""
            for word in words:
                if len(line) + len(word) > 90:
                    lines.append(line)
                    line = ""
                line = f"{line} {word}".strip()
            texts.append("\n".join([*lines, line]))
        blobs.append(pdf(*texts, compress=True))
    written = {"chunks": 0}

    def ingest(number: int) -> None:
        with org_scope(org):
            document = documents.document_upload(
                access=access_for_user(org, user),
                kb=kb,
                name=f"pipeline-{number:05d}.pdf",
                data=blobs[number],
                content_type="application/pdf",
            )
            document.refresh_from_db()
        if document.status != DocumentStatus.READY:
            raise RuntimeError(f"ingestion ended {document.status}: {document.status_reason}")
        written["chunks"] += document.chunks_total

    with org_scope(org):
        Document.objects.filter(knowledge_base=kb).delete()  # a previous run's
    ingest(0)
    written["chunks"] = 0
    result = measure_ingestion(
        ingest, list(range(1, count + 1)), pages=lambda number: pages_per_document
    )
    result["chunks"] = written["chunks"]
    result["chunks_per_second"] = written["chunks"] / result["seconds"]
    result["chunk_size"] = kb.chunk_size
    return result


class FakeUpstream:
    """``python -m gateway.fake_upstream`` in its own process (not this one's GIL)."""

    def __init__(self) -> None:
        import socket
        import subprocess

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.fake_upstream",
                "--port",
                str(self.port),
                "--no-record",
            ],
            cwd=Path(__file__).resolve().parent.parent,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the fake upstream did not start") from None
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def point_account_at(org, user, url: str) -> None:
    """The bench account's base URL and secret, through the product's services."""
    from inferia import store
    from keys import services
    from keys.models import ProviderAccount
    from orgs.access import access_for_user
    from orgs.scoping import org_scope

    host = url.split("://", 1)[1]
    org.settings = {**org.settings, "allowed_private_hosts": [host]}
    org.save(update_fields=["settings"])
    access = access_for_user(org, user)
    with org_scope(org):
        account = ProviderAccount.objects.get(name=ACCOUNT)
        services.provider_account_update(
            access=access, account=account, changes={"base_url": f"{url}/v1"}
        )
        # Encrypted again with this run's master key (each run makes its own keys).
        services.provider_account_set_secret(access=access, account=account, secret=SECRET)
    store.bump_epoch(org.pk)


# --- report -------------------------------------------------------------------------------


def _paths(ef_searches: list[int]) -> list[tuple[str, str]]:
    return [
        ("search_hnsw", "`vectors.search` (hybrid, as the API), HNSW"),
        ("search_exact", "`vectors.search` (hybrid), exact scan"),
        *((f"raw_hnsw_{ef}", f"raw SQL vector-only, HNSW, ef_search {ef}") for ef in ef_searches),
        ("raw_exact", "raw SQL vector-only, exact scan"),
    ]


def render(
    results: list[dict[str, Any]], meta: dict[str, Any], ingestion: dict[str, Any] | None = None
) -> str:
    lines = [
        f"## Knowledge-base search ({meta['postgres']}, pgvector {meta['pgvector']}, "
        f"{meta['cpus']} CPUs, {DIMS}-dim fake_embedding vectors, top {TOP_K})",
        "",
        "| chunks | COPY load | other indexes | HNSW build | HNSW size | table + indexes |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        load = r["load"]
        if load is None:
            lines.append(f"| {r['size']:,} | (reused) | | | | |")
            continue
        lines.append(
            f"| {r['size']:,} | {load['copy_seconds']:.1f} s | {load['indexes_seconds']:.1f} s "
            f"| {load['hnsw_seconds']:.1f} s | {load['hnsw_mb']:.0f} MB | {load['table_mb']:.0f} MB |"
        )
    lines += [
        "",
        "| chunks | query path | p50 ms | p99 ms | mean ms | recall@10 vs exact |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        q = r["queries"]
        for key, label in _paths(meta["ef_search"]):
            line = q[key]
            if "recall_at_10" in line:
                quality = f"{line['recall_at_10']:.3f}"
            elif "agreement_at_10" in line:
                quality = f"{line['agreement_at_10']:.3f} (same top 10)"
            else:
                quality = "1 (reference)"
            lines.append(
                f"| {r['size']:,} | {label} | {line['p50_ms']:.2f} | {line['p99_ms']:.2f} "
                f"| {line['mean_ms']:.2f} | {quality} |"
            )
    lines += [
        "",
        f"{results[0]['queries']['queries'] if results else 0} queries per path and size "
        "(3 words of a random chunk), after "
        f"{WARMUP} warm-up queries; the planner chose the HNSW index for the vector-only SQL: "
        + ", ".join(
            f"{r['size']:,}: {'yes' if r['queries']['hnsw_in_plan'] else 'no'}" for r in results
        )
        + ".",
    ]
    if ingestion is not None:
        lines += [
            "",
            "| ingestion: upload service + ingestion task (pypdf, chunking, embedding "
            "through the gateway, writes) | pages/s | chunks/s | pages | chunks | seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| 10-page PDFs, fake embedder, {ingestion['chunk_size']}-character chunks, "
            f"a page = {PAGE_CHARACTERS} characters, limits on the {meta['store']} "
            f"| {ingestion['pages_per_second']:.1f} | {ingestion['chunks_per_second']:.1f} "
            f"| {ingestion['pages']} | {ingestion['chunks']} | {ingestion['seconds']:.2f} |",
        ]
    return "\n".join(lines)


# --- the embedded default ---------------------------------------------------------------


def load_embedded(org, kb, corpus: Corpus, size: int) -> dict[str, float]:
    """Empty the collection, then ``size`` chunks through the ORM (SQLite has no COPY)."""
    from django.db import transaction

    from gateway.fake_upstream import fake_embedding
    from knowledge.models import Chunk, Document
    from orgs.scoping import org_scope

    started = time.perf_counter()
    with org_scope(org), transaction.atomic():
        Document.objects.filter(knowledge_base=kb).delete()
        documents = _documents(org, kb, size)
        for start in range(0, size, COPY_BATCH):
            Chunk.objects.bulk_create(
                [
                    Chunk(
                        org=org,
                        knowledge_base=kb,
                        document=documents[index // CHUNKS_PER_DOCUMENT],
                        ordinal=index % CHUNKS_PER_DOCUMENT,
                        text=corpus.text(index),
                        metadata={"section": index % 8},
                        dims=DIMS,
                        embedding=fake_embedding(corpus.text(index), DIMS),
                    )
                    for index in range(start, min(size, start + COPY_BATCH))
                ],
                batch_size=2000,
            )
    return {"insert_seconds": time.perf_counter() - started}


def measure_queries_embedded(kb, corpus: Corpus, size: int, count: int) -> dict[str, Any]:
    from django.db import connection

    from gateway.fake_upstream import fake_embedding
    from knowledge import vectors
    from knowledge.fields import to_blob

    rng = random.Random(size)  # noqa: S311 - generated queries, not secrets
    texts = [corpus.query(rng, size) for _ in range(count)]
    queries = [(text, fake_embedding(text, DIMS)) for text in texts]
    sql = (
        "SELECT id, vec_distance_cosine(embedding, %s) AS distance FROM knowledge_chunk "
        "WHERE knowledge_base_id = %s AND dims = %s ORDER BY distance LIMIT %s"
    )

    def search(query):
        text, vector = query
        return [hit.chunk_id for hit in vectors.search(kb, vector, text, top_k=TOP_K)]

    def raw(query):
        _text, vector = query
        with connection.cursor() as cursor:
            cursor.execute(sql, [to_blob(vector), kb.pk.hex, DIMS, TOP_K])
            return cursor.fetchall()

    out: dict[str, Any] = {"queries": count}
    for name, function in (("search_exact", search), ("raw_exact", raw)):
        log(f"{size:,} chunks: {name} (SQLite)")
        times, _results = _timed(function, queries)
        out[name] = {
            "p50_ms": statistics.median(times),
            "p99_ms": _percentile(times, 99),
            "mean_ms": statistics.fmean(times),
        }
    return out


def main_embedded(args, sizes: list[int]) -> str:
    """The same measurements on the embedded default (SQLite + sqlite-vec)."""
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "inferia.settings"
    os.environ["INFERIA_PRINT_CONFIG"] = "0"
    os.environ["INFERIA_VAR_DIR"] = tempfile.mkdtemp(prefix="bench-knowledge-embedded-")
    os.environ["INFERIA_CELERY_EAGER"] = "1"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    org, user, kb, ingest_kb = setup()
    with connection.cursor() as cursor:
        cursor.execute("SELECT sqlite_version(), vec_version()")
        sqlite_version, vec_version = cursor.fetchone()
    corpus = Corpus()
    lines = [
        f"## Knowledge-base search, embedded default (SQLite {sqlite_version}, sqlite-vec "
        f"{vec_version}, {os.cpu_count()} CPUs, {DIMS}-dim fake_embedding vectors, top {TOP_K})",
        "",
        "| chunks | insert | query path | p50 ms | p99 ms | mean ms |",
        "| ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for size in sizes:
        log(f"{size:,} chunks: inserting (SQLite)")
        timings = load_embedded(org, kb, corpus, size)
        queries = measure_queries_embedded(kb, corpus, size, args.queries)
        for key, label in (
            ("search_exact", "`vectors.search` (hybrid, as the API): exact scan"),
            ("raw_exact", "raw SQL vector-only (`vec_distance_cosine`): exact scan"),
        ):
            line = queries[key]
            lines.append(
                f"| {size:,} | {timings['insert_seconds']:.1f} s | {label} "
                f"| {line['p50_ms']:.2f} | {line['p99_ms']:.2f} | {line['mean_ms']:.2f} |"
            )
    if args.ingest_pages > 0:
        log(f"ingestion pipeline: {args.ingest_pages} pages of PDF (SQLite)")
        upstream = FakeUpstream()
        try:
            point_account_at(org, user, upstream.url)
            ingestion = measure_pipeline(org, user, ingest_kb, corpus, args.ingest_pages)
        finally:
            upstream.stop()
        lines += [
            "",
            "| ingestion (upload service + ingestion task), 10-page PDFs, fake embedder "
            "| pages/s | chunks/s | pages | chunks | seconds |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
            f"| SQLite, limits on the database | {ingestion['pages_per_second']:.1f} "
            f"| {ingestion['chunks_per_second']:.1f} | {ingestion['pages']} "
            f"| {ingestion['chunks']} | {ingestion['seconds']:.2f} |",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="chunk counts, comma-separated")
    parser.add_argument("--queries", type=int, default=200, help="queries per path and size")
    parser.add_argument(
        "--ef-search",
        default=f"{SEARCH_EF},200",
        help="hnsw.ef_search values of the raw HNSW lines (vectors.search sets its own)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep a collection left by the previous run when it holds exactly the size",
    )
    parser.add_argument(
        "--ingest-pages",
        type=int,
        default=200,
        help="pages for the embedding + chunk-write measurement (0: skip it)",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="the embedded default instead: SQLite + sqlite-vec in a temporary directory "
        "(an exact scan is its only path; no HNSW)",
    )
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    ef_searches = [int(e) for e in args.ef_search.split(",") if e.strip()]
    if args.queries < 1 or not sizes or min(sizes) < 100:
        parser.error("--queries >= 1 and sizes of at least 100 chunks")

    if args.embedded:
        table = main_embedded(args, sizes)
        print(table)
        if args.markdown:
            args.markdown.write_text(table + "\n")
        return
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith("postgres"):
        sys.exit("bench/knowledge.py measures PostgreSQL + pgvector: DATABASE_URL=postgres://...")
    _create_database(url)
    _environment(url)
    # Ingestion tasks run in this process as their upload commits (measure_pipeline).
    os.environ["INFERIA_CELERY_EAGER"] = "1"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    org, user, kb, ingest_kb = setup()
    with connection.cursor() as cursor:
        cursor.execute("SELECT version(), extversion FROM pg_extension WHERE extname = 'vector'")
        version, pgvector = cursor.fetchone()
    meta = {
        "postgres": " ".join(version.split()[:2]),
        "pgvector": pgvector,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "ef_search": ef_searches,
    }
    corpus = Corpus()
    results = []
    for size in sizes:
        timings: dict[str, float] | None = None
        if args.reuse and _loaded(kb) == size:
            log(f"{size:,} chunks: reusing the loaded collection")
        else:
            log(f"{size:,} chunks: loading")
            started = time.perf_counter()
            timings = load(org, kb, corpus, size)
            log(
                f"{size:,} chunks: loaded in {time.perf_counter() - started:.1f} s "
                f"(COPY {timings['copy_seconds']:.1f} s, HNSW {timings['hnsw_seconds']:.1f} s)"
            )
        queries = measure_queries(org, kb, corpus, size, args.queries, ef_searches)
        results.append({"size": size, "load": timings, "queries": queries})
    ingestion = None
    if args.ingest_pages > 0:
        log(f"ingestion pipeline: {args.ingest_pages} pages of PDF")
        upstream = FakeUpstream()
        try:
            point_account_at(org, user, upstream.url)
            ingestion = measure_pipeline(org, user, ingest_kb, corpus, args.ingest_pages)
        finally:
            upstream.stop()
    meta["store"] = "redis" if os.environ.get("REDIS_URL") else "database"
    table = render(results, meta, ingestion)
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n")
    if args.json:
        args.json.write_text(
            json.dumps({"meta": meta, "results": results, "ingestion": ingestion}, indent=2)
        )


if __name__ == "__main__":
    main()
