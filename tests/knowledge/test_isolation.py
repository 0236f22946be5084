"""No query returns a chunk of another org, of another collection, or of a collection the
caller may not search: through the query API and through chat retrieval, and from the
very next call after access is revoked.

Every collection here holds the same text, so only isolation keeps them apart: Acme's
``handbook`` (searchable by bob), Acme's ``secrets`` (alice's only) and Globex's
``handbook`` (the same name in another org)."""

from __future__ import annotations

import openai
import pytest

from gateway.fake_upstream import RECORDED
from knowledge.models import Chunk
from tests.conftest import assert_error, client_for
from tests.gateway.conftest import assert_gateway_error
from tests.knowledge.chunks import seed
from tests.knowledge.conftest import KB_URL

pytestmark = pytest.mark.django_db(transaction=True)

CHAT_MODEL = "openai-main/gpt-4o"
TEXTS = [
    "Employees receive twenty vacation days each year.",
    "The vacation days carry over until March.",
    "Ask your manager before booking vacation days.",
]
QUESTION = "How many vacation days do employees get?"
BOB_SEARCHES_HANDBOOK = (
    "authz_rules:\n"
    "  - models: ['*']\n    users: [alice]\n"
    "    knowledge_bases: [handbook, secrets]\n"
    "  - models: ['openai-main/*']\n    knowledge_bases: [handbook]\n    users: [bob]\n"
)
BOB_SEARCHES_NOTHING = (
    "authz_rules:\n"
    "  - models: ['*']\n    users: [alice]\n"
    "    knowledge_bases: [handbook, secrets]\n"
    "  - models: ['openai-main/*']\n    users: [bob]\n"
)
KEY_PERMISSIONS = ["inference:run", "inference:stream", "model:read", "knowledge_base:view"]


@pytest.fixture
def upstream_requests(fake_upstream):
    return RECORDED


@pytest.fixture
def world(kb_world):
    """The three collections with the same passages; the ids of Acme's handbook."""
    kb_world.create_kb()
    kb_world.create_kb("secrets")
    acme, globex = kb_world.cast.acme, kb_world.cast.globex
    mine = seed(acme, "handbook", TEXTS, document="handbook.md")
    seed(acme, "secrets", TEXTS, document="secret-plans.md")
    seed(globex, "handbook", TEXTS, document="globex-handbook.md")
    seed(globex, "globex-only", TEXTS, document="globex-only.md")
    kb_world.llm.grant(BOB_SEARCHES_HANDBOOK)
    kb_world.handbook_ids = {chunk.pk for chunk in mine}
    return kb_world


FOREIGN_DOCUMENTS = ("secret-plans.md", "globex-handbook.md", "globex-only.md")


def _chat(world, key, names, **options):
    return world.llm.sdk(key).chat.completions.create(
        model=CHAT_MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"knowledge_bases": names},
        **options,
    )


def _forwarded(recorded) -> str:
    """Everything the upstream got for chat completions, as one text."""
    import json

    return json.dumps([r["body"] for r in recorded if r["path"].endswith("/chat/completions")])


def test_the_query_api_returns_only_the_collections_own_chunks(world):
    for name in ("handbook", "secrets"):
        response = world.alice.post(
            f"{KB_URL}/{name}/query", {"query": QUESTION, "top_k": 50}, format="json"
        )
        assert response.status_code == 200, response.content
        results = response.json()["results"]
        assert len(results) == len(TEXTS)
        ids = {r["chunk_id"] for r in results}
        expected = set(
            Chunk.all_orgs.filter(org=world.cast.acme, knowledge_base__name=name).values_list(
                "pk", flat=True
            )
        )
        assert ids == expected
    assert Chunk.all_orgs.filter(org=world.cast.globex).count() == 2 * len(TEXTS)


def test_the_other_orgs_owner_cannot_query_acme(world):
    charlie = client_for(world.cast.charlie)
    response = charlie.post(f"{KB_URL}/handbook/query", {"query": QUESTION}, format="json")
    assert_error(response, 404, "NOT_FOUND")


def test_chat_passages_come_only_from_the_named_collection(world, upstream_requests):
    key = world.llm.key(permissions=KEY_PERMISSIONS)
    for stream in (False, True):
        RECORDED.clear()
        if stream:
            chunks = list(_chat(world, key, ["handbook"], stream=True))
            citations = chunks[0].model_extra["citations"]
        else:
            citations = _chat(world, key, ["handbook"]).model_extra["citations"]
        assert {c["chunk_id"] for c in citations} == world.handbook_ids
        assert {c["document"] for c in citations} == {"handbook.md"}
        sent = _forwarded(upstream_requests)
        assert "handbook.md" in sent
        assert not any(name in sent for name in FOREIGN_DOCUMENTS)


@pytest.mark.parametrize("name", ["secrets", "globex-only", "no-such-collection"])
def test_a_collection_the_caller_may_not_search_is_not_found(world, upstream_requests, name):
    key = world.llm.key(permissions=KEY_PERMISSIONS)
    response = world.llm.post(
        "/chat/completions",
        key,
        {
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": QUESTION}],
            "knowledge_bases": ["handbook", name],
        },
    )
    error = assert_gateway_error(response, 404, "NOT_FOUND")
    # The same answer whether the collection exists (here or in Globex) or not.
    assert error["message"] == "Knowledge base not found"
    assert upstream_requests == []


def test_an_api_key_without_the_view_scope_finds_no_collection(world, upstream_requests):
    key = world.llm.key(permissions=["inference:run", "inference:stream", "model:read"])
    with pytest.raises(openai.NotFoundError) as refused:
        _chat(world, key, ["handbook"])
    assert refused.value.body["message"] == "Knowledge base not found"
    assert upstream_requests == []


def test_a_role_without_the_view_permission_finds_no_collection(world, upstream_requests):
    alice = world.alice
    role = alice.post(
        "/api/v1/orgs/acme/roles",
        {
            "slug": "runner",
            "name": "Runner",
            "permissions": [*KEY_PERMISSIONS[:3], "api_key:create"],
        },
        format="json",
    )
    assert role.status_code == 201, role.content
    from orgs.models import Membership

    bob = Membership.all_orgs.get(org=world.cast.acme, user=world.cast.bob)
    changed = alice.patch(f"/api/v1/orgs/acme/members/{bob.pk}", {"role": "runner"}, format="json")
    assert changed.status_code == 200, changed.content
    key = world.llm.key(permissions=KEY_PERMISSIONS[:3])
    with pytest.raises(openai.NotFoundError):
        _chat(world, key, ["handbook"])
    bob_client = client_for(world.cast.bob)
    response = bob_client.post(f"{KB_URL}/handbook/query", {"query": QUESTION}, format="json")
    assert_error(response, 403, "PERMISSION_DENIED")
    assert upstream_requests == []


def test_a_revoked_grant_refuses_the_very_next_chat_call(world, upstream_requests):
    key = world.llm.key(permissions=KEY_PERMISSIONS)
    # Warm: the principal (with the collections it may search) is cached now.
    assert _chat(world, key, ["handbook"]).model_extra["citations"]
    assert _chat(world, key, ["handbook"]).model_extra["citations"]
    world.llm.grant(BOB_SEARCHES_NOTHING)
    RECORDED.clear()
    for stream in (False, True):
        with pytest.raises(openai.NotFoundError) as refused:
            if stream:
                list(_chat(world, key, ["handbook"], stream=True))
            else:
                _chat(world, key, ["handbook"])
        assert refused.value.body["message"] == "Knowledge base not found"
    assert upstream_requests == []
    # The query API too; and chat without retrieval still works for bob.
    bob = client_for(world.cast.bob)
    response = bob.post(f"{KB_URL}/handbook/query", {"query": QUESTION}, format="json")
    assert_error(response, 404, "NOT_FOUND")
    plain = world.llm.sdk(key).chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": QUESTION}]
    )
    assert "citations" not in (plain.model_extra or {})


def test_a_deleted_collection_is_gone_at_once(world, upstream_requests):
    key = world.llm.key(permissions=KEY_PERMISSIONS)
    assert _chat(world, key, ["handbook"]).model_extra["citations"]
    assert world.alice.delete(f"{KB_URL}/handbook").status_code == 204
    RECORDED.clear()
    with pytest.raises(openai.NotFoundError):
        _chat(world, key, ["handbook"])
    assert upstream_requests == []
    assert not Chunk.all_orgs.filter(pk__in=world.handbook_ids).exists()
