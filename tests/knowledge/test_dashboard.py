"""The knowledge-base pages: list and create, upload (with the progress endpoint the
progress bar polls), a test query, delete; and what a member without a grant sees."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from knowledge.models import Chunk, Document, KnowledgeBase
from orgs.scoping import org_scope
from tests.dashboard.conftest import page_client
from tests.knowledge.conftest import EMBED_MODEL

pytestmark = pytest.mark.django_db(transaction=True)

LIST = "/orgs/acme/knowledge-bases"
DETAIL = "/orgs/acme/knowledge-bases/handbook"
HANDBOOK = (
    "Vacation policy. Every employee gets twenty five days of paid vacation a year.\n\n"
    "Expense reports are filed monthly through the finance portal with receipts."
)


@pytest.fixture
def alice(kb_world):
    return page_client(kb_world.cast.alice)


def test_create_upload_progress_and_query(kb_world, alice):
    page = alice.get(LIST)
    assert page.status_code == 200
    assert b"No knowledge bases you may see yet" in page.content
    assert EMBED_MODEL.encode() in page.content  # offered as an embedding model
    created = alice.post(
        LIST,
        {
            "name": "handbook",
            "embedding_model": EMBED_MODEL,
            "chunk_size": 200,
            "chunk_overlap": 20,
        },
    )
    assert created.status_code == 302 and created["Location"] == DETAIL
    with org_scope(kb_world.cast.acme):
        assert KnowledgeBase.objects.get(name="handbook").chunk_size == 200

    # The progress bar's upload: JSON in, 202 with the URL to poll.
    upload = alice.post(
        DETAIL,
        {
            "op": "upload",
            "file": SimpleUploadedFile(
                "handbook.md", HANDBOOK.encode(), content_type="text/markdown"
            ),
            "metadata": '{"team": "hr"}',
        },
        HTTP_ACCEPT="application/json",
    )
    assert upload.status_code == 202, upload.content
    body = upload.json()
    progress = alice.get(body["progress_url"])
    assert progress.status_code == 200
    state = progress.json()
    # Tests run tasks eagerly: ingestion finished before the upload answered.
    assert state["status"] == "ready", state
    assert state["chunks_done"] == state["chunks_total"] >= 1
    with org_scope(kb_world.cast.acme):
        assert Chunk.objects.filter(document_id=body["id"]).count() == state["chunks_total"]

    detail = alice.get(DETAIL)
    assert b"handbook.md" in detail.content and b"Ready" in detail.content
    assert b"data-upload" in detail.content and b"js/knowledge.js" in detail.content

    found = alice.post(DETAIL, {"op": "query", "query": "paid vacation days", "top_k": 3})
    assert found.status_code == 200
    assert b'id="query-results"' in found.content
    assert b"twenty five days of paid vacation" in found.content


def test_a_refused_upload_says_why_without_a_script(kb_world, alice):
    kb_world.create_kb()
    refused = alice.post(
        DETAIL,
        {"op": "upload", "file": SimpleUploadedFile("empty.txt", b"", content_type="text/plain")},
    )
    assert refused.status_code == 400
    with org_scope(kb_world.cast.acme):
        assert not Document.objects.exists()
    as_json = alice.post(
        DETAIL,
        {
            "op": "upload",
            "file": SimpleUploadedFile("a.txt", b"PK\x03\x04zip", content_type="text/plain"),
        },
        HTTP_ACCEPT="application/json",
    )
    assert as_json.status_code == 400
    assert as_json.json()["error"]


def test_a_member_without_a_grant_sees_nothing(kb_world, alice):
    kb_world.create_kb()
    bob = page_client(kb_world.cast.bob)
    assert b"handbook" not in bob.get(LIST).content
    assert bob.get(DETAIL).status_code == 404
    # A member may not upload or delete (no knowledge_base:add_data / :delete): 403 first.
    assert bob.post(DETAIL, {"op": "delete"}).status_code in (403, 404)
    charlie = page_client(kb_world.cast.charlie)
    assert charlie.get(DETAIL).status_code == 404


def test_delete_a_document_and_the_collection(kb_world, alice):
    kb_world.create_kb()
    upload = alice.post(
        DETAIL,
        {
            "op": "upload",
            "file": SimpleUploadedFile("h.txt", HANDBOOK.encode(), content_type="text/plain"),
        },
        HTTP_ACCEPT="application/json",
    )
    document_id = upload.json()["id"]
    bogus = alice.post(
        DETAIL, {"op": "delete-document", "document": "not-a-uuid", "confirm": "yes"}
    )
    assert bogus.status_code == 404
    gone = alice.post(DETAIL, {"op": "delete-document", "document": document_id, "confirm": "yes"})
    assert gone.status_code == 302
    with org_scope(kb_world.cast.acme):
        assert not Document.objects.filter(pk=document_id).exists()
        assert not Chunk.objects.exists()
    deleted = alice.post(DETAIL, {"op": "delete", "confirm": "yes"})
    assert deleted.status_code == 302 and deleted["Location"] == LIST
    with org_scope(kb_world.cast.acme):
        assert not KnowledgeBase.objects.exists()
