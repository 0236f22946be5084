"""Files for the document tests, made here byte by byte: PDFs with a text layer (one
content stream per page, Helvetica), an encrypted one (pypdf's writer), a flate bomb,
and archives (ZIP, gzip) to disguise as documents."""

from __future__ import annotations

import gzip
import io
import zipfile
import zlib


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _content(lines: list[str]) -> bytes:
    ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
    for line in lines:
        ops.append(f"({_escape(line)}) Tj T*")
    ops.append("ET")
    return "\n".join(ops).encode("latin-1")


def build_pdf(streams: list[tuple[bytes, dict[str, str]] | None]) -> bytes:
    """A PDF with one page per item: its content stream and extra stream dictionary
    entries (``/Filter``), or ``None`` for a page without content."""
    objects: list[bytes] = []
    count = len(streams)
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for index, stream in enumerate(streams):
        content_ref = f" /Contents {5 + 2 * index} 0 R" if stream is not None else ""
        objects.append(
            (
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                f"/Resources << /Font << /F1 3 0 R >> >>{content_ref} >>"
            ).encode()
        )
        if stream is None:
            objects.append(b"<< >>")
            continue
        data, extra = stream
        entries = "".join(f" /{key} {value}" for key, value in extra.items())
        objects.append(
            f"<< /Length {len(data)}{entries} >>\nstream\n".encode() + data + b"\nendstream"
        )
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def pdf(*pages: str, compress: bool = False) -> bytes:
    """A PDF whose pages hold these texts (a page's lines split on newlines)."""
    streams: list[tuple[bytes, dict[str, str]] | None] = []
    for text in pages:
        data = _content(text.split("\n"))
        if compress:
            streams.append((zlib.compress(data), {"Filter": "/FlateDecode"}))
        else:
            streams.append((data, {}))
    return build_pdf(streams)


def pdf_without_text(pages: int = 2) -> bytes:
    """Pages with no content stream at all (what a scan without a text layer yields)."""
    return build_pdf([None] * pages)


def flate_bomb_pdf(decoded_bytes: int = 256 * 1024 * 1024) -> bytes:
    """One page whose content stream is small compressed and ``decoded_bytes`` decoded."""
    compressor = zlib.compressobj(9)
    block = b"(A) Tj " * 1024 * 16
    parts = []
    for _ in range(decoded_bytes // len(block)):
        parts.append(compressor.compress(block))
    parts.append(compressor.flush())
    return build_pdf([(b"".join(parts), {"Filter": "/FlateDecode"})])


def encrypted_pdf(user_password: str = "") -> bytes:
    """A PDF encrypted with ``user_password`` (empty: anyone may open it)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf("Secret quarterly numbers."))))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def zip_bomb(decoded_bytes: int = 64 * 1024 * 1024) -> bytes:
    """A ZIP archive holding one entry of ``decoded_bytes`` zeros (a few dozen KB)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("word/document.xml", "w", force_zip64=True) as entry:
            block = b"\0" * (1024 * 1024)
            for _ in range(decoded_bytes // len(block)):
                entry.write(block)
    return out.getvalue()


def gzip_bomb(decoded_bytes: int = 64 * 1024 * 1024) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as stream:
        block = b"\0" * (1024 * 1024)
        for _ in range(decoded_bytes // len(block)):
            stream.write(block)
    return out.getvalue()
