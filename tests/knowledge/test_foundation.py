"""Collections through the API, and an embedding call through the gateway's own path as
a delegated uploader (usage attributed to them)."""

from __future__ import annotations

import pytest

from audit.models import UsageRecord
from inferia.errors import AuthenticationFailed
from keys import delegation
from knowledge import embedding
from knowledge.models import KnowledgeBase
from orgs.scoping import org_scope
from tests.gateway.conftest import flush_usage
from tests.knowledge.conftest import EMBED_MODEL, KB_URL

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_list_and_embed_as_the_creator(kb_world):
    kb = kb_world.create_kb()
    assert kb["embedding_model"] == EMBED_MODEL
    listed = kb_world.alice.get(KB_URL).json()["results"]
    assert [k["name"] for k in listed] == ["handbook"]
    org = kb_world.cast.acme
    vectors = embedding.embed_as(
        org=org,
        model=EMBED_MODEL,
        texts=["vacation policy", "expense report"],
        user=kb_world.cast.alice,
    )
    assert len(vectors) == 2 and len(vectors[0]) == 64
    assert vectors[0] != vectors[1]
    flush_usage()
    with org_scope(org):
        usage = UsageRecord.objects.filter(model=EMBED_MODEL).get()
    assert usage.user_id == kb_world.cast.alice.pk


def test_a_delegated_credential_is_bound_to_its_model(kb_world):
    org = kb_world.cast.acme
    with pytest.raises(embedding.EmbeddingRefused) as refused:
        embedding.embed_with_credential(
            delegation.mint(org_id=org.pk, model=EMBED_MODEL, user_id=kb_world.cast.alice.pk),
            "openai-main/gpt-4o",
            ["hello"],
            org_hint=org.slug,
        )
    assert refused.value.status in (403, 404)


def test_a_forged_delegation_is_refused():
    with pytest.raises(AuthenticationFailed):
        delegation.verify("ifd_" + "x" * 40)


def test_the_api_refuses_a_delegated_credential(kb_world):
    from rest_framework.test import APIClient

    raw = delegation.mint(
        org_id=kb_world.cast.acme.pk, model=EMBED_MODEL, user_id=kb_world.cast.alice.pk
    )
    client = APIClient()
    response = client.get(KB_URL, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 401


def test_a_non_member_cannot_see_collections(kb_world):
    kb_world.create_kb()
    with org_scope(kb_world.cast.acme):
        assert KnowledgeBase.objects.count() == 1
