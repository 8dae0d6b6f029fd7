"""The incremental SSE parser: events must come out whole however the bytes are cut."""

from __future__ import annotations

import pytest

from gateway.upstream.sse import SSEParser, iter_sse_data

STREAM = b'data: {"a": 1}\n\ndata: {"b": 2}\r\n\r\n: comment\n\ndata: {"c":\ndata: 3}\n\n'
EXPECTED = ['{"a": 1}', '{"b": 2}', '{"c":\n3}']


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_events_survive_any_split(size: int) -> None:
    pieces = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    assert list(iter_sse_data(pieces)) == EXPECTED


def test_crlf_split_across_reads_does_not_end_an_event_early() -> None:
    parser = SSEParser()
    out = list(parser.feed(b"data: x\r"))
    out += list(parser.feed(b"\ndata: y\r\n\r\n"))
    assert out == ["x\ny"]


def test_final_event_without_newline_is_flushed_at_eof() -> None:
    assert list(iter_sse_data([b'data: {"a": 1}\n\ndata: {"last": true}'])) == ['{"a": 1}', '{"last": true}']


def test_event_is_yielded_as_soon_as_its_blank_line_arrives() -> None:
    parser = SSEParser()
    assert list(parser.feed(b"data: one\n")) == []
    assert list(parser.feed(b"\n")) == ["one"]
