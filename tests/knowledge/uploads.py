"""Helpers of the document tests: uploads through the API, and reads of what it stored."""

from __future__ import annotations

import json

from django.core.files.uploadedfile import SimpleUploadedFile

from knowledge.models import Chunk, Document


def docs_url(kb: str = "handbook", org: str = "acme") -> str:
    return f"/api/v1/orgs/{org}/knowledge-bases/{kb}/documents"


def doc_url(document_id: str, kb: str = "handbook", org: str = "acme") -> str:
    return f"{docs_url(kb, org)}/{document_id}"


def upload_file(
    client, data: bytes, filename: str, content_type: str, kb: str = "handbook", **fields
):
    """POST a multipart upload (``metadata`` given as a dict is sent as its JSON text)."""
    if "metadata" in fields and not isinstance(fields["metadata"], str):
        fields["metadata"] = json.dumps(fields["metadata"])
    body = {"file": SimpleUploadedFile(filename, data, content_type=content_type), **fields}
    return client.post(docs_url(kb), body, format="multipart")


def upload_text(client, name: str, text: str, kb: str = "handbook", **fields):
    """POST a JSON upload of ``text``."""
    return client.post(docs_url(kb), {"name": name, "text": text, **fields}, format="json")


def uploaded(response, status: int = 202) -> dict:
    assert response.status_code == status, response.content
    return response.json()


def chunks_of(document_id: str) -> list[Chunk]:
    return list(Chunk.all_orgs.filter(document_id=document_id).order_by("ordinal"))


def document(document_id: str) -> Document:
    return Document.all_orgs.get(pk=document_id)


def assert_file_error(response, status: int = 400, code: str = "VALIDATION_ERROR") -> str:
    """The envelope of a refused upload; returns the message about the file."""
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["details"]["file"], error
    return error["details"]["file"][0]
