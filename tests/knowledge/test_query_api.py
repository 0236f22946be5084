"""``POST /api/v1/orgs/{org}/knowledge-bases/{name}/query``: the hybrid search through
the API, the query embedded as the caller through the gateway."""

from __future__ import annotations

import pytest
from django.db import connection

from audit.models import AuditRecord
from gateway.fake_upstream import fake_embedding
from knowledge import vectors
from knowledge.models import Chunk, DocumentStatus
from tests.conftest import assert_error, client_for
from tests.gateway.conftest import usage_rows
from tests.knowledge.chunks import DIMS, seed
from tests.knowledge.conftest import EMBED_MODEL, KB_URL

pytestmark = pytest.mark.django_db(transaction=True)

QUERY_URL = f"{KB_URL}/handbook/query"
PASSAGES = [
    "Employees receive twenty vacation days each year.",
    "Expense reports are due within thirty days of travel.",
    "The office is closed on public holidays.",
    "Security badges must be worn at all times in the building.",
    "Parental leave lasts sixteen weeks at full pay.",
    "Laptops are replaced every three years.",
    "Remote work needs the approval of your manager.",
]


@pytest.fixture
def handbook(kb_world):
    kb_world.create_kb()
    return seed(kb_world.cast.acme, "handbook", PASSAGES, document="policies.md")


def _query(client, body, url: str = QUERY_URL):
    return client.post(url, body, format="json")


def test_a_query_returns_the_best_passages_first(kb_world, handbook):
    response = _query(kb_world.alice, {"query": "how many vacation days do employees get"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["knowledge_base"] == "handbook"
    assert body["embedding_model"] == EMBED_MODEL
    results = body["results"]
    assert len(results) == 5  # the default top_k
    best = results[0]
    assert best["text"] == PASSAGES[0]
    assert set(best) == {
        "chunk_id",
        "document_id",
        "document",
        "ordinal",
        "text",
        "metadata",
        "score",
        "similarity",
        "text_rank",
    }
    assert best["document"] == "policies.md" and best["ordinal"] == 0
    assert best["chunk_id"] == handbook[0].pk
    expected = sum(
        a * b
        for a, b in zip(
            fake_embedding("how many vacation days do employees get", DIMS),
            fake_embedding(PASSAGES[0], DIMS),
            strict=True,
        )
    )
    assert best["similarity"] == pytest.approx(expected, abs=1e-4)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert 0 < scores[0] <= 1


def test_the_query_is_embedded_as_the_caller_and_audited(kb_world, handbook):
    response = _query(kb_world.alice, {"query": "vacation days"})
    assert response.status_code == 200
    usage = usage_rows(1, model=EMBED_MODEL, endpoint="embeddings")
    assert usage[0].user_id == kb_world.cast.alice.pk
    record = AuditRecord.objects.filter(
        action="knowledge_base:view", data__op="query", org=kb_world.cast.acme
    ).get()
    assert record.actor_user_id == kb_world.cast.alice.pk
    assert record.data["results"] == len(response.json()["results"])


def test_a_rare_keyword_ranks_by_text_when_the_vectors_are_equal(kb_world):
    kb_world.create_kb()
    same = fake_embedding("general company information", DIMS)
    texts = [
        "General company information about the offices.",
        "General company information, see form zyxwvut for the details.",
        "More general company information for everyone.",
    ]
    seed(kb_world.cast.acme, "handbook", texts, embeddings=[same, same, same])
    results = _query(kb_world.alice, {"query": "zyxwvut"}).json()["results"]
    assert results[0]["text"] == texts[1]
    assert results[0]["text_rank"] is not None and results[0]["text_rank"] > 0
    assert {r["similarity"] for r in results} == {results[0]["similarity"]}
    assert all(r["text_rank"] is None for r in results[1:])
    assert results[0]["score"] > results[1]["score"]


def test_metadata_filters_keep_matching_chunks_only(kb_world):
    kb_world.create_kb()
    texts = ["Vacation policy for France.", "Vacation policy for Germany.", "Vacation policy."]
    metadata = [
        {"country": "fr", "year": 2024, "public": True},
        {"country": "de", "year": 2025, "public": False},
        {"country": "1", "year": "2024", "public": "true"},
    ]
    seed(kb_world.cast.acme, "handbook", texts, metadata=metadata)

    def texts_for(filters):
        response = _query(kb_world.alice, {"query": "vacation policy", "filters": filters})
        assert response.status_code == 200, response.content
        return sorted(r["text"] for r in response.json()["results"])

    assert texts_for({"country": "fr"}) == [texts[0]]
    assert texts_for({"year": 2024}) == [texts[0]]  # the string "2024" is not the number
    assert texts_for({"year": 2024.0, "country": "fr"}) == [texts[0]]
    assert texts_for({"public": False}) == [texts[1]]
    assert texts_for({"public": True}) == [texts[0]]  # nor "true" the boolean
    assert texts_for({"country": "1"}) == [texts[2]]
    assert texts_for({"country": "fr", "year": 2025}) == []
    assert texts_for({"missing": "x"}) == []
    assert len(texts_for({})) == 3


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"country": {"nested": 1}}, "filters.country"),
        ({"country": ["fr"]}, "filters.country"),
        ({"country": None}, "filters.country"),
        ({"bad key": "x"}, "filters"),
        ({"a'); DROP TABLE knowledge_chunk; --": "x"}, "filters"),
        ({'x" OR 1=1 --': "x"}, "filters"),
        ({"$.path": "x"}, "filters"),
        ({f"k{i}": i for i in range(17)}, "filters"),
        ({"country": "x" * 501}, "filters.country"),
    ],
)
def test_bad_filters_are_validation_errors(kb_world, handbook, filters, field):
    response = _query(kb_world.alice, {"query": "vacation", "filters": filters})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert field in error["details"], error
    assert Chunk.all_orgs.count() == len(PASSAGES)


def test_filters_must_be_an_object(kb_world, handbook):
    response = _query(kb_world.alice, {"query": "vacation", "filters": ["country"]})
    error = assert_error(response, 400, "VALIDATION_ERROR")
    assert "filters" in error["details"]


def test_min_score_drops_dissimilar_passages(kb_world, handbook):
    everything = _query(kb_world.alice, {"query": "vacation days", "top_k": 50}).json()["results"]
    assert len(everything) == len(PASSAGES)
    threshold = 0.2
    kept = _query(
        kb_world.alice, {"query": "vacation days", "top_k": 50, "min_score": threshold}
    ).json()["results"]
    assert kept and len(kept) < len(everything)
    assert all(r["similarity"] >= threshold for r in kept)
    assert {r["chunk_id"] for r in kept} == {
        r["chunk_id"] for r in everything if r["similarity"] >= threshold
    }
    none = _query(kb_world.alice, {"query": "vacation days", "min_score": 1.0}).json()
    assert none["results"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "x", "top_k": 0}, "top_k"),
        ({"query": "x", "top_k": 51}, "top_k"),
        ({"query": "x", "top_k": "many"}, "top_k"),
        ({"query": "x", "min_score": 1.5}, "min_score"),
        ({"query": "x", "min_score": -2}, "min_score"),
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 2001}, "query"),
        ({}, "query"),
        ({"query": "x", "unknown": 1}, "unknown"),
    ],
)
def test_bad_parameters_are_validation_errors(kb_world, handbook, body, field):
    error = assert_error(_query(kb_world.alice, body), 400, "VALIDATION_ERROR")
    assert field in error["details"], error


def test_top_k_bounds_are_inclusive(kb_world, handbook):
    one = _query(kb_world.alice, {"query": "vacation", "top_k": 1}).json()["results"]
    assert len(one) == 1
    fifty = _query(kb_world.alice, {"query": "vacation", "top_k": 50}).json()["results"]
    assert len(fifty) == len(PASSAGES)
    longest = _query(kb_world.alice, {"query": "v" * 2000})
    assert longest.status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"unbalanced quote',
        "*",
        "vacation*",
        "NEAR(vacation days",
        "NEAR(vacation days, 2)",
        "-",
        "-vacation",
        "- -- ---",
        "vacation -days",
        "vacation OR",
        "OR",
        "AND NOT",
        "text: vacation",
        "{text} : vacation",
        "^vacation",
        "vacation AND (days",
        "'; DROP TABLE knowledge_chunk; --",
        "😀 vacation",
    ],
)
def test_full_text_syntax_in_the_query_never_errors(kb_world, handbook, query):
    response = _query(kb_world.alice, {"query": query})
    assert response.status_code == 200, (query, response.content)
    assert isinstance(response.json()["results"], list)
    assert Chunk.all_orgs.count() == len(PASSAGES)


def test_web_search_syntax_in_the_full_text_ranking(kb_world, handbook):
    def text_hits(query):
        results = _query(kb_world.alice, {"query": query, "top_k": 50}).json()["results"]
        return sorted(r["text"] for r in results if r["text_rank"] is not None)

    assert text_hits("vacation days") == [PASSAGES[0]]
    assert text_hits("days") == sorted([PASSAGES[0], PASSAGES[1]])
    assert text_hits("days -vacation") == [PASSAGES[1]]
    assert text_hits('"thirty days"') == [PASSAGES[1]]
    assert text_hits('"days thirty"') == []
    assert text_hits("laptops or badges") == sorted([PASSAGES[3], PASSAGES[5]])


def test_only_ready_documents_are_searched(kb_world):
    kb_world.create_kb()
    acme = kb_world.cast.acme
    seed(acme, "handbook", ["Vacation days: twenty."], document="ready.md")
    for status in (
        DocumentStatus.QUEUED,
        DocumentStatus.PARSING,
        DocumentStatus.EMBEDDING,
        DocumentStatus.FAILED,
    ):
        seed(
            acme, "handbook", [f"Vacation days: {status}."], document=f"{status}.md", status=status
        )
    results = _query(kb_world.alice, {"query": "vacation days", "top_k": 50}).json()["results"]
    assert [r["document"] for r in results] == ["ready.md"]


# --- who may query -----------------------------------------------------------------------


def test_an_unknown_collection_is_404(kb_world, handbook):
    response = _query(kb_world.alice, {"query": "x"}, url=f"{KB_URL}/nope/query")
    assert_error(response, 404, "NOT_FOUND")


def test_another_org_gets_404(kb_world, handbook):
    charlie = client_for(kb_world.cast.charlie)
    assert_error(_query(charlie, {"query": "vacation"}), 404, "NOT_FOUND")


def test_unauthenticated_is_401(kb_world, handbook):
    from rest_framework.test import APIClient

    assert_error(_query(APIClient(), {"query": "vacation"}), 401, "AUTHENTICATION_FAILED")


def test_a_member_without_a_grant_gets_404(kb_world, handbook):
    bob = client_for(kb_world.cast.bob)
    assert_error(_query(bob, {"query": "vacation"}), 404, "NOT_FOUND")


def test_a_manager_without_a_grant_sees_it_but_may_not_search(kb_world, handbook):
    dave = client_for(kb_world.cast.dave)  # an admin: lists every collection
    assert dave.get(f"{KB_URL}/handbook").status_code == 200
    error = assert_error(_query(dave, {"query": "vacation"}), 403, "PERMISSION_DENIED")
    assert "handbook" in error["message"]


def test_a_grant_without_the_embedding_model_gets_the_gateways_403(kb_world, handbook):
    kb_world.llm.grant(
        "authz_rules:\n"
        "  - models: ['*']\n    users: [alice]\n"
        "  - knowledge_bases: [handbook]\n    users: [bob]\n"
    )
    bob = client_for(kb_world.cast.bob)
    error = assert_error(_query(bob, {"query": "vacation"}), 403, "PERMISSION_DENIED")
    assert EMBED_MODEL in error["message"]


def test_a_granted_member_may_query(kb_world, handbook):
    kb_world.llm.grant(
        "authz_rules:\n"
        "  - models: ['openai-main/fake-embed']\n    knowledge_bases: [handbook]\n"
        "    users: [bob]\n"
    )
    bob = client_for(kb_world.cast.bob)
    response = _query(bob, {"query": "vacation days"})
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["text"] == PASSAGES[0]
    usage = usage_rows(1, model=EMBED_MODEL, endpoint="embeddings")
    assert usage[0].user_id == kb_world.cast.bob.pk


def test_an_api_key_needs_the_view_scope(kb_world, handbook):
    kb_world.llm.grant(
        "authz_rules:\n"
        "  - models: ['openai-main/fake-embed']\n    knowledge_bases: [handbook]\n"
        "    users: [bob]\n"
    )
    from rest_framework.test import APIClient

    without = kb_world.llm.key(permissions=["inference:run"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {without}")
    assert_error(_query(client, {"query": "vacation"}), 403, "PERMISSION_DENIED")

    scoped = kb_world.llm.key(permissions=["inference:run", "knowledge_base:view"])
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {scoped}")
    response = _query(client, {"query": "vacation days"})
    assert response.status_code == 200, response.content
    assert response.json()["results"][0]["text"] == PASSAGES[0]


# --- PostgreSQL: the HNSW index and its fallback ------------------------------------------


@pytest.fixture
def postgres():
    if connection.vendor != "postgresql":
        from tests.conftest import require_or_skip

        require_or_skip("needs PostgreSQL with pgvector (DATABASE_URL)")


def _forced_index(kb, query: str, *, explain: bool) -> list:
    """The approximate vector SQL of ``search``, with plans that sort disfavoured: what
    the planner does for a collection large enough that sorting it all costs more."""
    from django.db import transaction

    params = vectors.validate(query, 5)
    engine = vectors._Postgres(kb, fake_embedding(query, DIMS), params)
    sql, args = engine.vector_sql(exact=False)
    with transaction.atomic(), connection.cursor() as cursor:
        # Plans that sort every chunk of the collection (exact) cost more than any other.
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("SET LOCAL hnsw.ef_search = 80")
        cursor.execute(("EXPLAIN " if explain else "") + sql, args)
        return [row[0] for row in cursor.fetchall()]


def test_the_vector_ranking_can_use_the_hnsw_index(postgres, kb_world, handbook):
    from tests.knowledge.chunks import kb_row

    kb = kb_row(kb_world.cast.acme)
    plan = "\n".join(_forced_index(kb, "vacation", explain=True))
    assert f"Index Scan using {vectors.index_name(DIMS)}" in plan, plan


def test_hnsw_post_filtering_falls_back_to_an_exact_scan(postgres, kb_world):
    """A small collection behind a large one of the same dimension: the index's nearest
    neighbours are all the large one's, filtered away; the exact scan finds them."""
    from tests.knowledge.chunks import kb_row

    kb_world.create_kb()
    kb_world.create_kb("archive")
    acme = kb_world.cast.acme
    seed(acme, "archive", [f"Vacation days archive entry {i}." for i in range(600)])
    mine = seed(acme, "handbook", ["Parental leave lasts sixteen weeks."])
    query = "vacation days archive entry"
    # Through the index alone, the handbook's one chunk is not among what it yields.
    assert _forced_index(kb_row(acme), query, explain=False) == []
    results = _query(kb_world.alice, {"query": query}).json()["results"]
    assert [r["chunk_id"] for r in results] == [mine[0].pk]
