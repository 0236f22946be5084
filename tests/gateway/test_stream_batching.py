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


def _spy_on_stream(monkeypatch, *, wait_for_whole_answer: bool):
    """Record what ``_stream`` sends and how often it listens to its client; optionally
    hold it until the whole upstream answer is in (as from a fast upstream)."""
    from gateway import app

    sent: list[dict] = []
    listened: list[int] = []
    stream = app._stream

    async def spied(call, send, receive, adapter, upstream_call, upstream):
        async def spied_send(message):
            sent.append(message)
            await send(message)

        async def spied_receive():
            listened.append(1)
            return await receive()

        while wait_for_whole_answer and not upstream._done:
            await asyncio.sleep(0.005)
        await stream(call, spied_send, spied_receive, adapter, upstream_call, upstream)

    monkeypatch.setattr(app, "_stream", spied)
    return sent, listened


def _streamed(llm, model: str) -> str:
    import httpx

    with httpx.stream(
        "POST",
        f"{llm.base_url}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"Authorization": f"Bearer {llm.key()}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        return response.read().decode()


def test_a_whole_answer_leaves_with_the_end_of_the_response_and_no_watcher(llm, monkeypatch):
    """Every event already here: one body message, which also ends the response (one
    write: uvicorn sends the chunk and the terminator together), and no task listening
    for the client (it is never needed: nothing waits for the network)."""
    sent, listened = _spy_on_stream(monkeypatch, wait_for_whole_answer=True)
    text = _streamed(llm, "openai-main/gpt-4o")
    assert text.rstrip().endswith("data: [DONE]")
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1].get("more_body", False) is False
    assert b"[DONE]" in sent[1]["body"] and sent[1]["body"].count(b"data: ") >= 7
    assert listened == []


def test_a_trickling_answer_is_relayed_as_it_comes_and_watches_the_client(llm, monkeypatch):
    """Words 200 ms apart: each goes out when it arrives, the client is watched from the
    first wait on, and the last events leave with the end of the response."""
    sent, listened = _spy_on_stream(monkeypatch, wait_for_whole_answer=False)
    text = _streamed(llm, "openai-main/fake-stream-slow-200")
    assert text.rstrip().endswith("data: [DONE]")
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert len(bodies) >= 6, [m.get("body") for m in bodies]
    assert all(m.get("more_body") for m in bodies[:-1])
    assert bodies[-1].get("more_body", False) is False and b"[DONE]" in bodies[-1]["body"]
    assert listened == [1]  # one watcher, started at the first wait, still waiting at the end
