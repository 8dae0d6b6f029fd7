"""Incremental SSE parsing over raw bytes.

``requests``' ``iter_lines`` splits ``\\r\\n`` pairs that straddle two reads into a spurious blank line, and
a blank line ends an SSE event, so the stream is parsed here: bytes in, complete ``data`` payloads out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class SSEParser:
    """Feed it byte chunks as they arrive; it yields the data of each complete event."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> Iterator[str]:
        self._buffer += chunk
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                return
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            event = self._line(line)
            if event is not None:
                yield event

    def close(self) -> Iterator[str]:
        """Flush at EOF: a final line without its newline, and an event without its blank line."""
        if self._buffer:
            line = bytes(self._buffer).rstrip(b"\r")
            self._buffer.clear()
            event = self._line(line)
            if event is not None:
                yield event
        if self._data:
            yield self._dispatch()

    def _line(self, line: bytes) -> str | None:
        if not line:
            return self._dispatch() if self._data else None
        if line.startswith(b":"):
            return None
        name, _, value = line.partition(b":")
        if name == b"data":
            self._data.append(value[1:] if value.startswith(b" ") else value)
        return None

    def _dispatch(self) -> str:
        data = b"\n".join(self._data).decode("utf-8")
        self._data.clear()
        return data


def iter_sse_data(chunks: Iterable[bytes]) -> Iterator[str]:
    parser = SSEParser()
    for chunk in chunks:
        yield from parser.feed(chunk)
    yield from parser.close()
