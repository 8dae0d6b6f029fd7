"""Web search: the fake's grounded answers, and how the gateway asks for and reads them.

The fake answers a search call (``requestType: "web_search"``, the ``googleSearch`` tool) as Google does: text
plus ``groundingMetadata`` whose supports count UTF-8 bytes. Its default answer derives three pages from the
query (``https://docs.example.com/<query-slug>``, ``news.example.org``, ``wiki.example.net``).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from gateway.catalog import KNOWN_MODELS
from gateway.core.events import Grounding, Support, TextDelta
from gateway.core.request import Message, Request, SearchResult, Text, Tool, WebSearchCall
from gateway.translate.cloudcode import ResponseParser, build_request
from gateway.translate.grounding import cited_spans, parse_grounding
from gateway.translate.signatures import SignatureRegistry
from tests.fake_cloudcode import FakeCloudCode, Reply, grounding_metadata

SEARCH_MODEL = "gemini-3-flash-agent"


def upstream_call(fake: FakeCloudCode, method: str, body: dict[str, Any], *, sse: bool = True) -> requests.Response:
    """A generate call straight to the fake, as the gateway would make it (for the fake's own rules)."""
    token = fake.mint_access_token("alice@example.com")
    query = "?alt=sse" if sse and method == "streamGenerateContent" else ""
    return requests.post(f"{fake.base_url}/v1internal:{method}{query}", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {token}", "User-Agent": "antigravity/2.11.3 linux/amd64"})


def search_body(text: str, *, model: str = SEARCH_MODEL, request_type: str = "web_search",
                tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"project": "proj-alice", "model": model, "userAgent": "antigravity", "requestType": request_type,
            "requestId": "agent-1", "request": {"contents": [{"role": "user", "parts": [{"text": text}]}],
                                                "tools": tools if tools is not None else [{"googleSearch": {}}]}}


def sse_payloads(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    lines = (line.decode("utf-8") for line in response.iter_lines())  # SSE is UTF-8 whatever the headers say
    return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]


# -- the fake -----------------------------------------------------------------------------------------------


def test_fake_answers_a_search_call_with_grounding(fake: FakeCloudCode) -> None:
    """Streamed: the grounding rides on the last event; its segments count UTF-8 bytes (the answer has a dash)."""
    events = sse_payloads(upstream_call(fake, "streamGenerateContent",
                                        search_body("Perform a web search for the query: flask streaming")))
    text = "".join(p["text"] for e in events for c in e["response"].get("candidates", [])
                   for p in c["content"]["parts"])
    metadata = events[-1]["response"]["candidates"][0]["groundingMetadata"]
    assert metadata["webSearchQueries"] == ["flask streaming"]
    assert metadata["groundingChunks"][0] == {"web": {"uri": "https://docs.example.com/flask-streaming",
                                                      "title": "flask streaming - Documentation"}}
    assert len(metadata["groundingChunks"]) == 3 and "renderedContent" in metadata["searchEntryPoint"]
    raw = text.encode("utf-8")
    for support in metadata["groundingSupports"]:
        segment = support["segment"]
        assert raw[segment.get("startIndex", 0):segment["endIndex"]].decode("utf-8") == segment["text"]
        assert support["groundingChunkIndices"]
    assert len(raw) != len(text)  # the offsets really are bytes, not characters


def test_fake_unary_search_answer_keeps_the_grounding(fake: FakeCloudCode) -> None:
    fake.enqueue(Reply.grounded("Flask streams. Also gevent.", ["flask"], [("https://a.example/x", "A")],
                                [("Flask streams.", [0])]))
    answer = upstream_call(fake, "generateContent", search_body("flask")).json()["response"]
    candidate = answer["candidates"][0]
    assert candidate["content"]["parts"][0]["text"] == "Flask streams. Also gevent."
    supports = candidate["groundingMetadata"]["groundingSupports"]
    assert supports == [{"segment": {"endIndex": 14, "text": "Flask streams."}, "groundingChunkIndices": [0],
                         "confidenceScores": [0.9]}]  # proto3: no startIndex when it is 0


@pytest.mark.parametrize("body, message", [
    (search_body("q", tools=[{"googleSearch": {}, "functionDeclarations": [
        {"name": "f", "description": "", "parameters": {"type": "object", "properties": {}}}]}]),
     "Multiple tools are supported only when they are all search tools."),
    (search_body("q", tools=[{"googleSearch": {}}, {"functionDeclarations": [
        {"name": "f", "description": "", "parameters": {"type": "object", "properties": {}}}]}]),
     "Multiple tools are supported only when they are all search tools."),
    (search_body("q", model="gemini-pro-agent"), "Google Search is not supported for model gemini-pro-agent."),
    (search_body("q", request_type="agent"), "The google_search tool needs requestType web_search, got 'agent'."),
    (search_body("q", tools=[]), "A web_search request needs the google_search tool."),
])
def test_fake_refuses_what_google_refuses(fake: FakeCloudCode, body: dict[str, Any], message: str) -> None:
    response = upstream_call(fake, "streamGenerateContent", body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == message


def test_fake_lists_the_models_that_search(fake: FakeCloudCode) -> None:
    token = fake.mint_access_token("alice@example.com")
    listing = requests.post(f"{fake.base_url}/v1internal:fetchAvailableModels", json={"project": "proj-alice"},
                            headers={"Authorization": f"Bearer {token}", "User-Agent": "antigravity/2.11.3 linux/amd64"},
                            timeout=10).json()
    assert listing["webSearchModelIds"] == [SEARCH_MODEL]


# -- grounding ----------------------------------------------------------------------------------------------


def test_grounding_is_parsed_from_the_metadata() -> None:
    metadata = grounding_metadata("Café opens at 8. Tea too.", ["cafe hours"],
                                  [("https://cafe.example/", "cafe.example"), ("https://tea.example/", "Tea")],
                                  [("Café opens at 8.", [0]), ("Tea too.", [1, 0])])
    grounding = parse_grounding(metadata)
    assert grounding.queries == ["cafe hours"]
    assert grounding.sources == [SearchResult("https://cafe.example/", "cafe.example"),
                                 SearchResult("https://tea.example/", "Tea")]
    assert grounding.supports == [Support(0, 17, "Café opens at 8.", (0,)), Support(18, 26, "Tea too.", (1, 0))]


def test_cited_spans_turn_byte_offsets_into_text() -> None:
    text = "Préface — first. Second one. Tail"
    first, second = text.index("first."), text.index("Second")
    raw = text.encode("utf-8")
    start1, end1 = len(text[:first].encode()), len(text[:first + 6].encode())
    start2, end2 = len(text[:second].encode()), len(text[:second + 11].encode())
    assert raw[start1:end1] == b"first."
    spans = cited_spans(text, [Support(start2, end2, "Second one.", (1,)), Support(start1, end1, "first.", (0,))])
    assert spans == [("Préface — ", ()), ("first.", (0,)), (" ", ()), ("Second one.", (1,)), (" Tail", ())]
    assert "".join(piece for piece, _ in spans) == text


def test_cited_spans_fall_back_on_the_segment_text_and_drop_overlaps() -> None:
    text = "Alpha beta. Gamma delta."
    spans = cited_spans(text, [
        Support(3, 9, "Gamma delta.", (0,)),  # offsets off (say, characters counted): the text finds it
        Support(14, 20, "mma de", (1,)),      # overlaps the span placed before it: dropped
        Support(0, 3, "nowhere", (2,)),       # neither offsets nor text fit
    ])
    assert spans == [("Alpha beta. ", ()), ("Gamma delta.", (0,))]


def test_a_grounded_request_is_a_search_call_without_functions() -> None:
    request = Request(model=SEARCH_MODEL, messages=[Message("user", [Text("flask streaming")])], grounded=True,
                      tools=[Tool("f", "", {"type": "object", "properties": {"a": {"type": "string"}}})])
    body = build_request(request, KNOWN_MODELS[SEARCH_MODEL], project="p", signatures=SignatureRegistry()).body
    assert body["requestType"] == "web_search"
    assert body["request"]["tools"] == [{"googleSearch": {}}]
    assert "toolConfig" not in body["request"]


def test_an_earlier_search_goes_upstream_as_text() -> None:
    """No function needs declaring for it, whatever tools the later request has."""
    search = WebSearchCall("srvtoolu_1", "flask", [SearchResult("https://a.example/", "A")])
    failed = WebSearchCall("srvtoolu_2", "gevent", error="unavailable")
    request = Request(model="claude-sonnet-4-6", messages=[
        Message("user", [Text("find")]), Message("assistant", [search, failed, Text("Found.")])])
    body = build_request(request, KNOWN_MODELS["claude-sonnet-4-6"], project="p", signatures=SignatureRegistry()).body
    texts = [p["text"] for p in body["request"]["contents"][1]["parts"]]
    assert "1. A - https://a.example/" in texts[0] and texts[0].startswith('Web search results for "flask"')
    assert texts[1:] == ['The web search for "gevent" failed (unavailable).', "Found."]


def test_the_parser_reports_grounding_as_an_event() -> None:
    parser = ResponseParser()
    metadata = grounding_metadata("A.", ["q"], [("https://a.example/", "A")], [("A.", [0])])
    events = parser.feed({"candidates": [{"content": {"parts": [{"text": "A."}]}, "groundingMetadata": metadata,
                                          "finishReason": "STOP"}]})
    assert events == [TextDelta("A."), Grounding(["q"], [SearchResult("https://a.example/", "A")],
                                                 [Support(0, 2, "A.", (0,))])]
