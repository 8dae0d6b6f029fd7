"""Google Search grounding, both ways: the ``groundingMetadata`` of a search call's answer -> canonical Grounding,
and a search's findings -> the text a model reads about them.

Pure functions over plain data. docs/upstream.md, "Web search", is the reference for the answer's shape.
"""

from __future__ import annotations

from typing import Any

from ..core.events import Grounding, Support
from ..core.request import SearchResult


def parse_grounding(metadata: dict[str, Any]) -> Grounding:
    """``candidates[0].groundingMetadata`` as a Grounding; anything malformed in it is skipped, not fatal."""
    queries = [q for q in metadata.get("webSearchQueries") or [] if isinstance(q, str) and q]
    sources: list[SearchResult] = []
    for chunk in metadata.get("groundingChunks") or []:
        web = chunk.get("web") if isinstance(chunk, dict) else None
        web = web if isinstance(web, dict) else {}
        # Kept even when empty, so that the supports' chunk indices still point at the right source.
        sources.append(SearchResult(url=str(web.get("uri") or ""), title=str(web.get("title") or "")))
    supports: list[Support] = []
    for raw in metadata.get("groundingSupports") or []:
        if not isinstance(raw, dict):
            continue
        segment = raw.get("segment") if isinstance(raw.get("segment"), dict) else {}
        indices = tuple(i for i in raw.get("groundingChunkIndices") or []
                        if isinstance(i, int) and 0 <= i < len(sources) and sources[i].url)
        start, end = segment.get("startIndex", 0), segment.get("endIndex", 0)  # proto3 leaves a 0 out
        if not indices or not isinstance(start, int) or not isinstance(end, int):
            continue
        supports.append(Support(start, end, str(segment.get("text") or ""), indices))
    return Grounding(queries, sources, supports)


def cited_spans(text: str, supports: list[Support]) -> list[tuple[str, tuple[int, ...]]]:
    """``text`` cut into consecutive spans, each with the sources backing it (none for the text in between).

    Google counts a segment in UTF-8 bytes; the span is found by those offsets, else by the segment's own text.
    Overlapping or unplaceable supports are dropped rather than guessed at.
    """
    encoded = text.encode("utf-8")
    placed: list[tuple[int, int, tuple[int, ...]]] = []
    for support in sorted(supports, key=lambda s: s.start):
        start = len(encoded[: support.start].decode("utf-8", "ignore"))
        end = len(encoded[: support.end].decode("utf-8", "ignore"))
        if support.text and text[start:end] != support.text:
            found = text.find(support.text, placed[-1][1] if placed else 0)
            if found < 0:
                continue
            start, end = found, found + len(support.text)
        if end <= start or (placed and start < placed[-1][1]):
            continue
        placed.append((start, end, support.sources))
    spans: list[tuple[str, tuple[int, ...]]] = []
    cursor = 0
    for start, end, sources in placed:
        if start > cursor:
            spans.append((text[cursor:start], ()))
        spans.append((text[start:end], sources))
        cursor = end
    if cursor < len(text):
        spans.append((text[cursor:], ()))
    return spans


def findings_text(query: str, results: list[SearchResult], summary: str = "", error: str | None = None) -> str:
    """What a model reads about a search: the pages found (title and URL) and the search's own summary."""
    if error is not None:
        return f'The web search for "{query}" failed ({error}).'
    lines = [f'Web search results for "{query}":']
    lines += [f"{n}. {result.title or result.url} - {result.url}" for n, result in enumerate(results, 1)]
    if not results:
        lines.append("No results.")
    if summary.strip():
        lines += ["", "Summary of the results:", summary.strip()]
    if results:
        lines += ["", "Cite the pages you use as markdown links."]
    return "\n".join(lines)
