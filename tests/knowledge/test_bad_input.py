"""Bad uploads: each a clear error at once (400/413 naming the file's problem) or a
document that fails with a reason, never a half-ingested one or a 500.

Archives disguised as documents are real bombs (tens of MB decompressed from a few dozen
KB), and the PDFs are made byte by byte (tests/knowledge/files.py)."""

from __future__ import annotations

import pytest

from inferia.errors import ValidationError
from knowledge import parsing
from knowledge.models import Chunk, Document, DocumentSource
from tests.knowledge import files
from tests.knowledge.uploads import (
    assert_file_error,
    chunks_of,
    upload_file,
    upload_text,
    uploaded,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _nothing_stored() -> None:
    assert not Document.all_orgs.exists()
    assert not Chunk.all_orgs.exists()
    assert not DocumentSource.all_orgs.exists()


def test_an_empty_file_is_refused(kb_world):
    kb_world.create_kb()
    message = assert_file_error(upload_file(kb_world.alice, b"", "empty.txt", "text/plain"))
    assert message == "The file is empty (0 bytes)."
    assert_file_error(upload_file(kb_world.alice, b"", "empty.pdf", "application/pdf"))
    assert_file_error(upload_text(kb_world.alice, "empty", ""))
    _nothing_stored()


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("report.txt", "text/plain"),
        ("report.md", "text/markdown"),
        ("report.html", "text/html"),
        ("report.pdf", "application/pdf"),
    ],
)
def test_a_zip_bomb_disguised_as_a_document_is_refused_unopened(kb_world, filename, content_type):
    kb_world.create_kb()
    bomb = files.zip_bomb()  # 64 MiB of zeros in about 64 KB
    assert len(bomb) < 200 * 1024
    message = assert_file_error(upload_file(kb_world.alice, bomb, filename, content_type))
    assert "ZIP archive" in message
    assert content_type in message
    _nothing_stored()


def test_gzip_and_docx_are_refused_as_text(kb_world):
    kb_world.create_kb()
    message = assert_file_error(
        upload_file(kb_world.alice, files.gzip_bomb(), "notes.txt", "text/plain")
    )
    assert "gzip" in message
    docx = files.zip_bomb(1024 * 1024)
    unsupported = upload_file(
        kb_world.alice,
        docx,
        "memo.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    )
    assert "Unsupported content type" in assert_file_error(unsupported)
    octet = upload_file(kb_world.alice, docx, "memo.docx", "application/octet-stream")
    assert "Unsupported content type unknown" in assert_file_error(octet)
    _nothing_stored()


def test_a_content_type_that_disagrees_with_the_bytes_is_refused(kb_world):
    kb_world.create_kb()
    pdf = files.pdf("A real PDF.")
    as_text = assert_file_error(upload_file(kb_world.alice, pdf, "a.txt", "text/plain"))
    assert "is a PDF" in as_text
    as_html = assert_file_error(upload_file(kb_world.alice, pdf, "a.html", "text/html"))
    assert "is a PDF" in as_html
    text_as_pdf = assert_file_error(
        upload_file(kb_world.alice, b"Just some text.", "a.pdf", "application/pdf")
    )
    assert "no %PDF- header" in text_as_pdf
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    assert "PNG image" in assert_file_error(upload_file(kb_world.alice, png, "a.txt", "text/plain"))
    image = upload_file(kb_world.alice, png, "a.png", "image/png")
    assert "Unsupported content type image/png" in assert_file_error(image)
    _nothing_stored()


def test_text_must_be_utf8_without_nul_bytes(kb_world):
    kb_world.create_kb()
    latin1 = "Café crème".encode("latin-1")
    message = assert_file_error(upload_file(kb_world.alice, latin1, "a.txt", "text/plain"))
    assert "not UTF-8" in message
    nul = assert_file_error(upload_file(kb_world.alice, b"abc\x00def" * 20, "a.txt", "text/plain"))
    assert "NUL bytes" in nul
    _nothing_stored()
    # A byte-order mark is fine, and not part of the text.
    body = uploaded(
        upload_file(kb_world.alice, "\ufeffBonjour, café.".encode(), "bom.txt", "text/plain")
    )
    assert [c.text for c in chunks_of(body["id"])] == ["Bonjour, café."]


def test_an_encrypted_pdf_is_refused_even_with_an_empty_password(kb_world):
    kb_world.create_kb()
    for password in ("", "hunter2"):
        data = files.encrypted_pdf(password)
        message = assert_file_error(
            upload_file(kb_world.alice, data, "locked.pdf", "application/pdf")
        )
        assert "encrypted" in message
    _nothing_stored()


def test_a_corrupt_pdf_is_refused(kb_world):
    kb_world.create_kb()
    whole = files.pdf("Some text on a page.")
    for data in (
        whole[: len(whole) // 2],  # truncated
        b"%PDF-1.7\n" + bytes(range(256)) * 8,  # a header, then noise
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\nendobj\ntrailer\n<< /Root 1 0 R >>\n",
    ):
        message = assert_file_error(upload_file(kb_world.alice, data, "bad.pdf", "application/pdf"))
        assert "could not be read" in message
    _nothing_stored()


def test_a_pdf_over_the_page_limit_is_refused(kb_world, settings):
    kb_world.create_kb()
    settings.INFERIA_KB_MAX_PDF_PAGES = 3
    data = files.pdf(*(f"Page {i}" for i in range(1, 5)))
    message = assert_file_error(upload_file(kb_world.alice, data, "long.pdf", "application/pdf"))
    assert message == "The PDF has 4 pages, over the limit of 3."
    assert (
        uploaded(
            upload_file(kb_world.alice, files.pdf("1", "2", "3"), "ok.pdf", "application/pdf")
        )["pages"]
        == 3
    )


def test_a_pdf_whose_declared_page_count_is_absurd_is_refused_before_walking_it(kb_world):
    kb_world.create_kb()
    data = files.pdf("One real page.").replace(b"/Count 1", b"/Count 999999999")
    message = assert_file_error(upload_file(kb_world.alice, data, "lie.pdf", "application/pdf"))
    assert "999,999,999 pages" in message


def test_a_flate_bomb_inside_a_pdf_fails_cleanly(kb_world):
    kb_world.create_kb()
    bomb = files.flate_bomb_pdf()  # one content stream: 256 MiB decoded
    assert len(bomb) < 2 * 1024 * 1024
    body = uploaded(upload_file(kb_world.alice, bomb, "bomb.pdf", "application/pdf"))
    # Opening it and counting pages decodes nothing: accepted, then failed by the task.
    assert body["status"] == "failed"
    assert "decoding limits" in body["status_reason"]
    assert body["chunks_done"] == 0
    assert not Chunk.all_orgs.exists() and not DocumentSource.all_orgs.exists()


def test_the_flate_bomb_is_stopped_near_the_stream_limit_not_at_its_size():
    import tracemalloc

    bomb = files.flate_bomb_pdf()
    tracemalloc.start()
    try:
        with pytest.raises(ValidationError) as refused:
            parsing.extract(bomb, parsing.PDF)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "decoding limits" in str(refused.value)
    # 256 MiB decoded would be needed; the limit stops it near 16 MiB.
    assert peak < 4 * parsing.PDF_MAX_STREAM_BYTES, peak


def test_a_pdf_without_a_text_layer_fails_with_a_reason(kb_world):
    kb_world.create_kb()
    body = uploaded(
        upload_file(kb_world.alice, files.pdf_without_text(), "scan.pdf", "application/pdf")
    )
    assert body["status"] == "failed"
    assert "no extractable text" in body["status_reason"]
    assert "Text recognition is not supported" in body["status_reason"]
    assert not Chunk.all_orgs.exists()


def test_text_over_the_character_limit_is_refused(kb_world, settings):
    kb_world.create_kb()
    settings.INFERIA_KB_MAX_TEXT_CHARS = 1000
    message = assert_file_error(upload_text(kb_world.alice, "long", "word " * 300))
    assert "1,500 characters, over the limit of 1,000" in message
    # A PDF that is small on disk but holds more text fails in the task, with the page.
    data = files.pdf(*("word " * 60 for _ in range(5)), compress=True)
    body = uploaded(upload_file(kb_world.alice, data, "long.pdf", "application/pdf"))
    assert body["status"] == "failed"
    assert "over the limit of 1,000 characters" in body["status_reason"]
    assert "by page 4 of 5" in body["status_reason"]
    assert not Chunk.all_orgs.exists()


def test_html_without_visible_text_fails_with_a_reason(kb_world):
    kb_world.create_kb()
    html = "<html><head><title>Only a title</title><script>x()</script></head></html>"
    body = uploaded(upload_text(kb_world.alice, "empty", html, content_type="text/html"))
    assert body["status"] == "failed"
    assert body["status_reason"] == "The document holds no text."
