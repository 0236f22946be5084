"""Cut a document's text into passages of about ``kb.chunk_size`` characters.

A chunk ends, by preference, at a paragraph break, else at the end of a sentence,
else between words, else (a very long word) exactly at the size; the next chunk
starts ``kb.chunk_overlap`` characters earlier, at the start of a word, so a sentence
cut in two is whole in one of them. A PDF is cut page by page: every chunk lies on one
page, which its metadata names. Each step moves forward by at least half of
``size - overlap``, so no text makes the number of chunks blow up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from knowledge.parsing import Page

_SENTENCE_END = re.compile(r"[.!?\u2026\u3002](?=\s)|\n")


@dataclass(frozen=True)
class Piece:
    text: str
    page: int | None


def _cut(text: str, low: int, end: int) -> int:
    """Where to end a chunk within ``[low, end]``: after the last paragraph, sentence or
    word that ends there; ``end`` when none does."""
    paragraph = text.rfind("\n\n", low, end)
    if paragraph >= low:
        return paragraph
    ends = [match.end() for match in _SENTENCE_END.finditer(text, low, end)]
    if ends:
        return ends[-1]
    for position in range(end - 1, low - 1, -1):
        if text[position].isspace():
            return position
    return end


def _word_start(text: str, position: int, limit: int) -> int:
    """``position``, moved forward (not past ``limit``) to the start of a word."""
    if position == 0 or text[position - 1].isspace():
        return position
    for index in range(position, limit):
        if text[index].isspace():
            while index < limit and text[index].isspace():
                index += 1
            return index
    return position


def split_text(text: str, size: int, overlap: int) -> list[str]:
    """``text`` as chunks of at most ``size`` characters overlapping by about ``overlap``."""
    text = text.strip()
    if not text:
        return []
    size = max(1, size)
    overlap = max(0, min(overlap, size // 2))
    chunks: list[str] = []
    start, length = 0, len(text)
    # A chunk is at least this long, so the next one starts past where this one did.
    minimum = overlap + max(1, (size - overlap) // 2)
    while start < length:
        end = min(start + size, length)
        if end < length:
            end = _cut(text, min(start + minimum, end), end)
        chunk = text[start:end].strip()
        if chunk:
            chunks.append(chunk)
        if end >= length:
            break
        following = max(end - overlap, start + 1)
        start = _word_start(text, following, end) if overlap else end
    return chunks


def chunk_pages(pages: Iterable[Page], size: int, overlap: int) -> list[Piece]:
    """The chunks of a document's pages, in order, each with its page (PDF) or ``None``."""
    return [
        Piece(text=chunk, page=page.number)
        for page in pages
        for chunk in split_text(page.text, size, overlap)
    ]
