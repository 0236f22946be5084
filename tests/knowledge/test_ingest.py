"""The ingestion task, held back until the test runs it: progress seen through the API,
atomic replacement by a re-upload, failures that leave nothing half-ingested, the
uploader's identity and limits at embedding time, and redelivery."""

from __future__ import annotations

import httpx
import pytest
from django.db import connection, transaction
from django.db.models.signals import post_save

from audit.models import UsageRecord
from gateway.fake_upstream import RECORDED
from knowledge import ingestion
from knowledge.models import Chunk, Document, DocumentSource, KnowledgeBase
from knowledge.vectors import index_name
from orgs.scoping import org_scope
from tests.gateway.conftest import flush_usage
from tests.knowledge.conftest import EMBED_MODEL
from tests.knowledge.uploads import (
    chunks_of,
    doc_url,
    docs_url,
    document,
    upload_text,
    uploaded,
)

pytestmark = pytest.mark.django_db(transaction=True)

SENTENCES = " ".join(f"Sentence number {i} of the travel policy." for i in range(40))


def _statuses(client) -> dict[str, str]:
    return {d["name"]: d["status"] for d in client.get(docs_url()).json()["results"]}


def test_progress_is_visible_through_the_api(kb_world, held_ingestion, gateway_server, settings):
    kb_world.create_kb(chunk_size=300, chunk_overlap=0)
    settings.INFERIA_KB_EMBED_BATCH = 2
    body = uploaded(upload_text(kb_world.alice, "travel", SENTENCES))
    assert body["status"] == "queued" and body["chunks_total"] == 0
    assert kb_world.alice.get(doc_url(body["id"])).json()["status"] == "queued"

    # Each saved state as another client sees it: over HTTP, once committed.
    token = kb_world.alice._credentials["HTTP_AUTHORIZATION"]
    seen: list[tuple[str, int, int]] = []

    def look() -> None:
        answer = httpx.get(
            f"{gateway_server.url}{doc_url(body['id'])}",
            headers={"Authorization": token},
            timeout=30,
        ).json()
        seen.append((answer["status"], answer["chunks_done"], answer["chunks_total"]))

    def saved(sender, instance, created, **kwargs) -> None:
        if str(instance.pk) == body["id"] and not created:
            transaction.on_commit(look)

    post_save.connect(saved, sender=Document, weak=False)
    try:
        assert held_ingestion.run(body["id"]) == "ready"
    finally:
        post_save.disconnect(saved, sender=Document)
    total = document(body["id"]).chunks_total
    assert total >= 5
    expected = [("parsing", 0, 0), ("embedding", 0, total)]
    expected += [("embedding", done, total) for done in range(2, total, 2)]
    expected += [("embedding", total, total), ("ready", total, total)]
    assert seen == expected
    # One embedding call per batch of two.
    assert [len(r["body"]["input"]) for r in RECORDED] == [2] * (total // 2) + [1] * (total % 2)


def test_a_reupload_replaces_the_document_atomically(kb_world, held_ingestion):
    kb_world.create_kb()
    old = uploaded(upload_text(kb_world.alice, "policy", "Old policy: 20 vacation days."))
    held_ingestion.run(old["id"])
    old_chunks = [c.pk for c in chunks_of(old["id"])]
    new = uploaded(upload_text(kb_world.alice, "policy", "New policy: 25 vacation days."))
    assert new["version"] == 2 and new["status"] == "queued"
    # Until the new version is ready, the old one is what a search finds.
    assert document(old["id"]).status == "ready"
    assert [c.pk for c in chunks_of(old["id"])] == old_chunks
    listed = kb_world.alice.get(docs_url()).json()["results"]
    assert [(d["version"], d["status"]) for d in listed] == [(2, "queued"), (1, "ready")]

    assert held_ingestion.run(new["id"]) == "ready"
    assert not Document.all_orgs.filter(pk=old["id"]).exists()
    assert not Chunk.all_orgs.filter(pk__in=old_chunks).exists()
    (ready,) = Document.all_orgs.filter(name="policy")
    assert str(ready.pk) == new["id"] and ready.status == "ready" and ready.version == 2
    assert [c.text for c in Chunk.all_orgs.all()] == ["New policy: 25 vacation days."]


def test_a_failed_reupload_keeps_the_old_version(kb_world, held_ingestion):
    kb_world.create_kb()
    old = uploaded(
        upload_text(
            kb_world.alice, "page", "<p>Opening hours: 9 to 5.</p>", content_type="text/html"
        )
    )
    held_ingestion.run(old["id"])
    broken = uploaded(
        upload_text(kb_world.alice, "page", "<script>only()</script>", content_type="text/html")
    )
    assert held_ingestion.run(broken["id"]) == "failed"
    failed = kb_world.alice.get(doc_url(broken["id"])).json()
    assert failed["status"] == "failed"
    assert failed["status_reason"] == "The document holds no text."
    assert failed["chunks_done"] == 0
    assert document(old["id"]).status == "ready"
    assert [c.text for c in chunks_of(old["id"])] == ["Opening hours: 9 to 5."]
    assert not Chunk.all_orgs.filter(document_id=broken["id"]).exists()
    assert not DocumentSource.all_orgs.exists()


def test_an_older_version_finishing_after_a_newer_one_discards_itself(kb_world, held_ingestion):
    kb_world.create_kb()
    first = uploaded(upload_text(kb_world.alice, "faq", "Version one."))
    held_ingestion.run(first["id"])
    second = uploaded(upload_text(kb_world.alice, "faq", "Version two."))
    third = uploaded(upload_text(kb_world.alice, "faq", "Version three."))
    assert held_ingestion.run(third["id"]) == "ready"
    assert held_ingestion.run(second["id"]) == "discarded"
    (only,) = Document.all_orgs.filter(name="faq")
    assert str(only.pk) == third["id"] and only.status == "ready"
    assert [c.text for c in Chunk.all_orgs.all()] == ["Version three."]


def test_a_newer_version_still_pending_lets_an_older_one_become_ready(kb_world, held_ingestion):
    kb_world.create_kb()
    second = uploaded(upload_text(kb_world.alice, "faq", "Version one."))
    third = uploaded(upload_text(kb_world.alice, "faq", "Version two."))
    assert held_ingestion.run(second["id"]) == "ready"
    assert document(third["id"]).status == "queued"
    assert held_ingestion.run(third["id"]) == "ready"
    assert [d.version for d in Document.all_orgs.all()] == [2]


def test_a_redelivered_task_leaves_a_settled_document_alone(kb_world, held_ingestion):
    kb_world.create_kb()
    body = uploaded(upload_text(kb_world.alice, "a", "Some text to embed."))
    assert held_ingestion.run(body["id"]) == "ready"
    chunks = [(c.pk, c.text) for c in chunks_of(body["id"])]
    calls = len(RECORDED)
    assert held_ingestion.run(body["id"]) == "ready"
    assert [(c.pk, c.text) for c in chunks_of(body["id"])] == chunks
    assert len(RECORDED) == calls
    failed = uploaded(
        upload_text(kb_world.alice, "b", "<style>x</style>", content_type="text/html")
    )
    assert held_ingestion.run(failed["id"]) == "failed"
    assert held_ingestion.run(failed["id"]) == "failed"


def test_an_interrupted_ingestion_starts_over_when_redelivered(kb_world, held_ingestion, settings):
    kb_world.create_kb(chunk_size=300, chunk_overlap=0)
    body = uploaded(upload_text(kb_world.alice, "travel", SENTENCES))
    # A worker died mid-way: the document says embedding, with stray chunks stored.
    row = document(body["id"])
    with org_scope(kb_world.cast.acme):
        Chunk.objects.create(
            org=row.org, knowledge_base=row.knowledge_base, document=row, ordinal=0, text="stray"
        )
    Document.all_orgs.filter(pk=row.pk).update(status="embedding", chunks_total=99, chunks_done=1)
    assert held_ingestion.run(body["id"]) == "ready"
    row = document(body["id"])
    texts = [c.text for c in chunks_of(body["id"])]
    assert "stray" not in texts and len(texts) == row.chunks_total == row.chunks_done


def test_usage_is_the_uploaders_and_batches_keep_within_the_prompt_limit(kb_world, held_ingestion):
    kb_world.create_kb(chunk_size=300, chunk_overlap=0)
    kb_world.llm.org_settings(max_prompt_chars=1000)
    body = uploaded(upload_text(kb_world.alice, "travel", SENTENCES))
    assert held_ingestion.run(body["id"]) == "ready"
    inputs = [r["body"]["input"] for r in RECORDED if r["path"] == "/v1/embeddings"]
    assert len(inputs) > 1
    assert all(sum(len(t) for t in batch) <= 1000 for batch in inputs)
    assert sum(len(batch) for batch in inputs) == document(body["id"]).chunks_total
    flush_usage()
    with org_scope(kb_world.cast.acme):
        usage = list(UsageRecord.objects.filter(model=EMBED_MODEL))
    assert len(usage) == len(inputs)
    assert {u.user_id for u in usage} == {kb_world.cast.alice.pk}
    assert all(u.status_code == 200 for u in usage)


def test_an_uploader_who_lost_access_meanwhile_fails_with_the_gateways_reason(
    kb_world, held_ingestion
):
    kb_world.create_kb()
    body = uploaded(upload_text(kb_world.alice, "a", "Some text to embed."))
    # Alice keeps the collection but no longer any model.
    kb_world.llm.grant("authz_rules:\n  - knowledge_bases: [handbook]\n    users: [alice]\n")
    assert held_ingestion.run(body["id"]) == "failed"
    failed = kb_world.alice.get(doc_url(body["id"])).json()
    assert failed["status"] == "failed"
    assert failed["status_reason"].startswith("Embedding failed: ")
    assert EMBED_MODEL in failed["status_reason"]
    assert "Traceback" not in failed["status_reason"]
    assert not Chunk.all_orgs.exists()
    assert not DocumentSource.all_orgs.exists()


def test_an_uploader_whose_grant_was_withdrawn_meanwhile_is_not_ingested(kb_world, held_ingestion):
    kb_world.create_kb()
    body = uploaded(upload_text(kb_world.alice, "a", "Some text to embed."))
    # Alice keeps every model but no rule grants her the collection any more.
    kb_world.llm.grant("authz_rules:\n  - models: ['*']\n    users: [alice]\n")
    calls = len(RECORDED)
    assert held_ingestion.run(body["id"]) == "failed"
    reason = document(body["id"]).status_reason
    assert reason == "No access rule lets you add data to knowledge base handbook"
    assert len(RECORDED) == calls  # nothing was embedded
    assert not Chunk.all_orgs.exists() and not DocumentSource.all_orgs.exists()


def test_an_uploader_removed_from_the_org_meanwhile_is_not_ingested(kb_world, held_ingestion):
    from orgs.models import Membership
    from tests.conftest import client_for

    kb_world.create_kb()
    kb_world.llm.grant(
        "authz_rules:\n"
        "  - models: ['*']\n    knowledge_bases: [handbook]\n    users: [alice, dave]\n"
    )
    body = uploaded(upload_text(client_for(kb_world.cast.dave), "a", "From Dave."))
    membership = Membership.all_orgs.get(org=kb_world.cast.acme, user=kb_world.cast.dave)
    assert kb_world.alice.delete(f"/api/v1/orgs/acme/members/{membership.pk}").status_code == 204
    assert held_ingestion.run(body["id"]) == "failed"
    reason = document(body["id"]).status_reason
    assert reason == "The uploader is no longer a member of this organization"
    assert not Chunk.all_orgs.exists()


def test_a_key_revoked_before_ingestion_fails_the_document(kb_world, held_ingestion):
    from rest_framework.test import APIClient

    kb_world.create_kb()
    info = kb_world.llm.key_info(
        kb_world.alice,
        permissions=["knowledge_base:view", "knowledge_base:add_data", "inference:run"],
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {info['key']}")
    body = uploaded(upload_text(client, "keyed", "Uploaded with a key."))
    revoked = kb_world.alice.delete(f"/api/v1/orgs/acme/api-keys/{info['id']}")
    assert revoked.status_code == 200
    assert held_ingestion.run(body["id"]) == "failed"
    reason = document(body["id"]).status_reason
    assert reason == (
        f"The API key {info['prefix']} this document was uploaded with is no longer valid "
        "(revoked or expired)"
    )
    assert info["key"] not in reason
    assert not Chunk.all_orgs.exists()


def test_the_first_document_sets_the_dimensions_and_a_mismatch_fails(kb_world):
    kb = kb_world.create_kb("small", embedding_model="openai-main/fake-embed-32")
    body = uploaded(upload_text(kb_world.alice, "a", "Thirty-two dimensions.", kb="small"))
    assert body["status"] == "ready"
    assert {c.dims for c in chunks_of(body["id"])} == {32}
    assert all(len(c.embedding) == 32 for c in chunks_of(body["id"]))
    assert KnowledgeBase.all_orgs.get(pk=kb["id"]).dimensions == 32
    if connection.vendor == "postgresql":  # the dimension's HNSW index was made for it
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [index_name(32)])
            (definition,) = cursor.fetchone()
        assert "hnsw" in definition and "(dims = 32)" in definition
    # A collection holding 16-dimensional vectors cannot take 32-dimensional ones.
    KnowledgeBase.all_orgs.filter(pk=kb["id"]).update(dimensions=16)
    refused = uploaded(upload_text(kb_world.alice, "b", "Another text.", kb="small"))
    assert refused["status"] == "failed"
    assert "32-dimensional vectors" in refused["status_reason"]
    assert "16-dimensional" in refused["status_reason"]
    assert not Chunk.all_orgs.filter(document_id=refused["id"]).exists()


def test_a_rate_limited_ingestion_run_eagerly_fails_at_once_with_the_reason(kb_world):
    kb_world.create_kb("limited", embedding_model="openai-main/fake-error-429")
    body = uploaded(upload_text(kb_world.alice, "a", "Some text.", kb="limited"))
    # Eager (in the web process): nothing to wait for, one call and a clear failure.
    assert len(RECORDED) == 1
    assert body["status"] == "failed"
    assert body["status_reason"].startswith("Embedding failed: ")
    assert not Chunk.all_orgs.exists()


def test_a_rate_limited_ingestion_waits_and_resumes_where_it_stopped(
    kb_world, held_ingestion, settings
):
    kb_world.create_kb(chunk_size=100, chunk_overlap=0)
    settings.INFERIA_KB_EMBED_BATCH = 1
    text = "\n\n".join(f"Part {i} of the travel policy, about trains and planes." for i in range(6))
    body = uploaded(upload_text(kb_world.alice, "travel", text))
    kb_world.llm.org_settings(requests_per_minute=2)
    with org_scope(kb_world.cast.acme), pytest.raises(ingestion.Deferred) as deferred:
        ingestion.document_ingest(body["id"], last_attempt=False)  # as a worker's first try
    assert 1 <= deferred.value.countdown <= ingestion.MAX_DEFER_SECONDS
    row = document(body["id"])
    assert row.status == "embedding" and row.chunks_done == 2
    assert row.chunks_total > 2
    assert DocumentSource.all_orgs.filter(document_id=body["id"]).exists()
    # The limit is lifted; the retried task embeds only what is left.
    kb_world.llm.org_settings(requests_per_minute=1000)
    RECORDED.clear()
    assert held_ingestion.run(body["id"]) == "ready"
    row = document(body["id"])
    assert len([r for r in RECORDED if r["path"] == "/v1/embeddings"]) == row.chunks_total - 2
    assert [c.ordinal for c in chunks_of(body["id"])] == list(range(row.chunks_total))


def test_a_document_deleted_before_or_during_ingestion_just_stops(kb_world, held_ingestion):
    kb_world.create_kb()
    kb_world.create_kb("other")
    body = uploaded(upload_text(kb_world.alice, "a", "Some text."))
    assert kb_world.alice.delete(doc_url(body["id"])).status_code == 204
    assert held_ingestion.run(body["id"]) == "gone"
    other = uploaded(upload_text(kb_world.alice, "b", "More text.", kb="other"))
    assert kb_world.alice.delete("/api/v1/orgs/acme/knowledge-bases/other").status_code == 204
    assert held_ingestion.run(other["id"]) == "gone"
    assert not Chunk.all_orgs.exists() and not Document.all_orgs.exists()
    assert _statuses(kb_world.alice) == {}
