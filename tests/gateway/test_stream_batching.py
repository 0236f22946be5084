"""Streamed events that arrive in one piece leave in one write (gateway/app.py ``_stream``):
``UpstreamResponse.lines()`` says how many complete lines it still holds, and the relay
sends as soon as it holds none (it never waits for the network with events in hand)."""

from __future__ import annotations

import asyncio

from gateway import http


def _lines(pieces: list[bytes]) -> list[tuple[str, int]]:
    upstream = http.UpstreamResponse()  # no connection: fed as the protocol feeds it
    for piece in pieces:
        upstream.feed(piece)
    upstream.finish()

    async def collect():
        return [(line, upstream.buffered_lines) async for line in upstream.lines()]

    return asyncio.run(collect())


def test_lines_count_down_what_is_still_buffered():
    assert _lines([b"data: a\n\ndata: b\n\n", b"data: c\r\n\r\n"]) == [
        ("data: a", 3),
        ("", 2),
        ("data: b", 1),
        ("", 0),
        ("data: c", 1),
        ("", 0),
    ]


def test_a_line_split_across_pieces_is_whole_and_last_held_until_the_end():
    assert _lines([b"data: he", b"llo\n", b"data: tail"]) == [
        ("data: hello", 0),
        ("data: tail", 0),
    ]
