"""Uploads to text: plain text, Markdown (kept as written), HTML and PDF.

Two steps, both refusing bad input with a clear error (``VALIDATION_ERROR`` with
``details={"file": [...]}``, or ``PAYLOAD_TOO_LARGE``):

- ``validate_upload`` runs at upload, synchronously and cheaply: the size, the content type
  named by the client against what the bytes are (a PDF starts with ``%PDF-``; text
  is UTF-8 without NUL bytes; an archive such as ZIP, DOCX or gzip is never text or
  PDF), and for a PDF that it opens, is not encrypted (even with an empty user
  password) and is within the page limit;
- ``extract`` runs in the ingestion task: the text of each page, within
  ``INFERIA_KB_MAX_TEXT_CHARS`` characters in all. PDF streams are decoded under
  tighter limits than pypdf's defaults, so a small file that decompresses to gigabytes
  (a flate bomb) fails with a reason instead of exhausting memory.

Nothing here executes or interprets what a document says: its text is data.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from html.parser import HTMLParser

from django.conf import settings

from inferia.errors import PayloadTooLarge, ValidationError

PLAIN = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
TEXT_TYPES = (PLAIN, MARKDOWN, HTML)
CONTENT_TYPES = (*TEXT_TYPES, PDF)

# What clients and browsers also call these types.
_ALIASES = {
    "text/x-markdown": MARKDOWN,
    "text/md": MARKDOWN,
    "application/xhtml+xml": HTML,
    "application/x-pdf": PDF,
}
_EXTENSIONS = {
    ".txt": PLAIN,
    ".text": PLAIN,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".pdf": PDF,
}
# Sent when the client does not know the type: decided by the file name, then the bytes.
_UNKNOWN_TYPES = ("", "application/octet-stream", "binary/octet-stream")

# Formats that are neither text nor PDF, named so the refusal says what the file is.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a ZIP archive (DOCX, XLSX, ODT and EPUB files are ZIP archives)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"PK\x07\x08", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"BZh", "a bzip2-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\x28\xb5\x2f\xfd", "a Zstandard-compressed file"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file"),
    (b"\x7fELF", "an executable"),
    (b"MZ", "an executable"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
)
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")
# A PDF's header may follow some junk, within its first kilobyte (PDF 32000-1, H.3).
_PDF_HEADER_WINDOW = 1024

# PDF decoding limits, tighter than pypdf's 75 MB defaults: no page's text needs more.
PDF_MAX_STREAM_BYTES = 16 * 1024 * 1024
PDF_MAX_RECOVERY_BYTES = 1024 * 1024
PDF_MAX_DECODING_WORK = 64 * 1024 * 1024
PDF_MAX_FORM_INVOCATIONS = 200
# Wall-clock budget for extracting one PDF's text (checked between pages).
PDF_PARSE_SECONDS = 300.0


@dataclass(frozen=True)
class Page:
    """A document's text, or one page's (``number`` from 1; ``None`` for text files)."""

    number: int | None
    text: str


def _refuse(message: str) -> ValidationError:
    return ValidationError(message, details={"file": [message]})


def normalize_content_type(declared: str, filename: str, data: bytes) -> str:
    """The supported type the upload is: ``declared`` without parameters (``; charset``),
    its aliases resolved; when the client did not know it, the file name's extension,
    else a PDF's magic bytes. VALIDATION_ERROR for anything else."""
    kind = (declared or "").split(";", 1)[0].strip().lower()
    kind = _ALIASES.get(kind, kind)
    if kind in _UNKNOWN_TYPES:
        suffix = ("." + filename.rsplit(".", 1)[-1].lower()) if "." in filename else ""
        kind = _EXTENSIONS.get(suffix, "")
        if not kind and _pdf_header_at(data) >= 0:
            kind = PDF
    if kind not in CONTENT_TYPES:
        shown = kind or "unknown"
        raise _refuse(
            f"Unsupported content type {shown[:100]}: upload text/plain, text/markdown, "
            "text/html or application/pdf."
        )
    return kind


def _pdf_header_at(data: bytes) -> int:
    return data.find(b"%PDF-", 0, _PDF_HEADER_WINDOW)


def _other_format(data: bytes) -> str | None:
    head = data[:16]
    for magic, what in _MAGIC:
        if magic == b"BZh":
            if _BZIP2.match(head):
                return what
            continue
        if head.startswith(magic):
            if magic == b"MZ" and len(data) < 64:
                continue  # "MZ" alone is also two letters of text
            return what
    return None


def _decode_text(data: bytes, content_type: str) -> str:
    """UTF-8 (a byte-order mark allowed), no NUL bytes, newlines normalized."""
    if b"\x00" in data:
        raise _refuse(f"The file is not {content_type} text: it holds NUL bytes (a binary file?).")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse(
            f"The file is not UTF-8 text (invalid byte at offset {exc.start}); "
            "save it as UTF-8 and upload it again."
        ) from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_text_length(chars: int) -> None:
    limit = settings.INFERIA_KB_MAX_TEXT_CHARS
    if chars > limit:
        raise _refuse(
            f"The document's text is {chars:,} characters, over the limit of {limit:,} "
            "(INFERIA_KB_MAX_TEXT_CHARS): split it into smaller documents."
        )


def validate_upload(data: bytes, content_type: str) -> int:
    """Validate an upload of ``content_type`` (already normalized) before it is stored.

    Returns the page count (PDF; 0 for text). Raises PAYLOAD_TOO_LARGE over
    ``INFERIA_KB_MAX_FILE_BYTES``, VALIDATION_ERROR (``details["file"]``) for an empty
    file, bytes that are not what the content type says, an encrypted, unreadable or
    too long PDF, or text over ``INFERIA_KB_MAX_TEXT_CHARS``."""
    limit = settings.INFERIA_KB_MAX_FILE_BYTES
    if len(data) > limit:
        raise PayloadTooLarge(
            f"The file is {len(data):,} bytes, over the limit of {limit:,} bytes "
            "(INFERIA_KB_MAX_FILE_BYTES)",
            details={"file": [f"At most {limit:,} bytes."]},
        )
    if not data:
        raise _refuse("The file is empty (0 bytes).")
    other = _other_format(data)
    if content_type == PDF:
        if _pdf_header_at(data) < 0:
            what = other or "not a PDF (it has no %PDF- header)"
            raise _refuse(f"The file was sent as application/pdf but is {what}.")
        return _pdf_page_count(data)
    if other is not None:
        raise _refuse(f"The file was sent as {content_type} but is {other}.")
    if _pdf_header_at(data[:_PDF_HEADER_WINDOW]) == 0:
        raise _refuse(f"The file was sent as {content_type} but is a PDF: send application/pdf.")
    text = _decode_text(data, content_type)
    _check_text_length(len(text))
    return 0


def extract(data: bytes, content_type: str) -> list[Page]:
    """The text of an upload that ``validate_upload`` accepted, by page for a PDF.

    Raises VALIDATION_ERROR whose message says why (the ingestion task shows it as the
    document's failure reason): unreadable bytes, a PDF over the decoding limits or
    the time budget, more text than ``INFERIA_KB_MAX_TEXT_CHARS``, or no text at all."""
    if content_type == PDF:
        pages = _pdf_pages(data)
    else:
        text = _decode_text(data, content_type)
        if content_type == HTML:
            text = html_to_text(text)
        _check_text_length(len(text))
        pages = [Page(number=None, text=text)]
    if not any(page.text.strip() for page in pages):
        if content_type == PDF:
            raise _refuse(
                "The PDF has no extractable text (a scanned document? Text recognition "
                "is not supported: upload a PDF with a text layer, or the text itself)."
            )
        raise _refuse("The document holds no text.")
    return pages


# --- HTML ---------------------------------------------------------------------------

# Elements whose content is never text a reader sees.
_SKIP = frozenset(
    {"script", "style", "template", "noscript", "svg", "math", "iframe", "object", "canvas"}
)
# What may appear inside <head>: any other element means the body has begun.
_HEAD_CONTENT = frozenset(
    {"title", "meta", "link", "style", "script", "base", "noscript", "template"}
)
_PARAGRAPH = frozenset(
    {
        "p", "div", "section", "article", "header", "footer", "nav", "aside", "main",
        "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol",
        "dl", "figure", "form", "fieldset", "address", "details", "hr", "body",
    }
)  # fmt: skip
_LINE = frozenset({"br", "li", "tr", "dt", "dd", "figcaption", "summary", "caption", "option"})
_CELL = frozenset({"td", "th"})


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.in_head = False
        self.pre_depth = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "head":
            self.in_head = True
            return
        if self.in_head and tag not in _HEAD_CONTENT:
            self.in_head = False  # </head> is optional
        if tag in _SKIP:
            self.skip_depth += 1
        elif tag == "pre":
            self.pre_depth += 1
        self._break(tag)

    def handle_startendtag(self, tag: str, attrs) -> None:
        if self.in_head and tag not in _HEAD_CONTENT:
            self.in_head = False
        self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.in_head = False
            return
        if tag in _SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        self._break(tag)

    def _break(self, tag: str) -> None:
        if tag in _PARAGRAPH:
            self.parts.append("\n\n")
        elif tag in _LINE:
            self.parts.append("\n")
        elif tag in _CELL:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if self.skip_depth or self.in_head:
            return
        self.parts.append(data if self.pre_depth else re.sub(r"\s+", " ", data))


_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def html_to_text(html: str) -> str:
    """The visible text of an HTML document: no head, scripts or styles; block
    elements end lines; character references decoded; whitespace collapsed."""
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(parser.parts).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# --- PDF ----------------------------------------------------------------------------


def _pdf_limits():
    import pypdf

    return pypdf.apply_configuration(
        maximum_declared_stream_length=PDF_MAX_STREAM_BYTES,
        array_based_stream_maximum_output_length=PDF_MAX_STREAM_BYTES,
        zlib_maximum_output_length=PDF_MAX_STREAM_BYTES,
        zlib_maximum_recovery_input_length=PDF_MAX_RECOVERY_BYTES,
        lzw_maximum_output_length=PDF_MAX_STREAM_BYTES,
        run_length_maximum_output_length=PDF_MAX_STREAM_BYTES,
        brotli_maximum_output_length=PDF_MAX_STREAM_BYTES,
        jbig2_maximum_output_length=PDF_MAX_STREAM_BYTES,
        image_maximum_buffer_size=PDF_MAX_STREAM_BYTES,
        stream_decoding_work_maximum_length=PDF_MAX_DECODING_WORK,
        # A form drawn many times is parsed each time: bound the repetition.
        xform_maximum_invocations_per_extraction=PDF_MAX_FORM_INVOCATIONS,
        # Text extraction needs no image decoder, and never an external program.
        jbig2dec_binary=None,
    )


def _unreadable(exc: BaseException) -> ValidationError:
    from pypdf.errors import LimitReachedError

    if isinstance(exc, LimitReachedError | MemoryError | RecursionError):
        return _refuse(
            "The PDF could not be read within the decoding limits (a stream decompresses "
            "to too much data, or its structure is too large or deeply nested)."
        )
    return _refuse("The PDF could not be read: the file is damaged or not a valid PDF.")


def _open_pdf(data: bytes):
    """A reader of ``data``, refused when it is encrypted or unreadable. Call it under
    ``_pdf_limits()``."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        encrypted = reader.is_encrypted
    except Exception as exc:  # pypdf raises many kinds on hostile input
        raise _unreadable(exc) from exc
    if encrypted:
        # Refused even when the user password is empty: its permissions and its text
        # are the author's to protect, and decrypting is work we do not need.
        raise _refuse(
            "The PDF is encrypted (password-protected); remove the protection and upload it again."
        )
    return reader


def _pdf_page_count(data: bytes) -> int:
    limit = settings.INFERIA_KB_MAX_PDF_PAGES
    with _pdf_limits():
        reader = _open_pdf(data)
        try:
            declared = reader.root_object["/Pages"].get("/Count")
        except Exception as exc:
            raise _unreadable(exc) from exc
        # The declared /Count may lie; a huge one is refused before the tree is walked.
        if isinstance(declared, int) and declared > limit:
            raise _refuse(f"The PDF has {declared:,} pages, over the limit of {limit:,}.")
        try:
            count = len(reader.pages)
        except Exception as exc:
            raise _unreadable(exc) from exc
    if count > limit:
        raise _refuse(f"The PDF has {count:,} pages, over the limit of {limit:,}.")
    if count == 0:
        raise _refuse("The PDF has no pages.")
    return count


def _pdf_pages(data: bytes) -> list[Page]:
    limit = settings.INFERIA_KB_MAX_TEXT_CHARS
    deadline = time.monotonic() + PDF_PARSE_SECONDS
    pages: list[Page] = []
    total = 0
    with _pdf_limits():
        reader = _open_pdf(data)
        try:
            count = len(reader.pages)
        except Exception as exc:
            raise _unreadable(exc) from exc
        if count > settings.INFERIA_KB_MAX_PDF_PAGES:
            raise _refuse(
                f"The PDF has {count:,} pages, over the limit of "
                f"{settings.INFERIA_KB_MAX_PDF_PAGES:,}."
            )
        for number in range(1, count + 1):
            if time.monotonic() > deadline:
                raise _refuse(
                    f"Reading the PDF took longer than {PDF_PARSE_SECONDS:.0f} seconds "
                    f"(stopped at page {number} of {count})."
                )
            try:
                text = reader.pages[number - 1].extract_text() or ""
            except Exception as exc:
                raise _unreadable(exc) from exc
            text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
            total += len(text)
            if total > limit:
                raise _refuse(
                    f"The document's text is over the limit of {limit:,} characters "
                    f"(INFERIA_KB_MAX_TEXT_CHARS) by page {number} of {count}: split it "
                    "into smaller documents."
                )
            pages.append(Page(number=number, text=text))
    return pages
