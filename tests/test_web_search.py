"""Web search: the fake's grounded answers, the gateway's search runner, and both client APIs end to end.

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
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "antigravity/2.11.3 linux/amd64"}
    listing = requests.post(f"{fake.base_url}/v1internal:fetchAvailableModels", json={"project": "proj-alice"},
                            headers=headers, timeout=10).json()
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


# -- Anthropic Messages -------------------------------------------------------------------------------------

WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search"}
WEATHER_TOOL = {"name": "get_weather", "description": "Current weather for a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
# What the fake's default search answer says about "flask streaming", and which of its pages back each sentence.
DOCS, NEWS, WIKI = ("https://docs.example.com/flask-streaming", "https://news.example.org/flask-streaming",
                    "https://wiki.example.net/wiki/flask-streaming")
ANSWER = ("Search results \u2014 summary: The documentation explains flask streaming. News sites reported on flask "
          "streaming this week. The wiki and the documentation agree on flask streaming.")
CITED = [("The documentation explains flask streaming.", [DOCS]),
         ("News sites reported on flask streaming this week.", [NEWS]),
         ("The wiki and the documentation agree on flask streaming.", [WIKI, DOCS])]


def calls(fake: FakeCloudCode) -> list[tuple[str, str]]:
    return [(r.body["requestType"], r.body["model"]) for r in fake.generate_requests()]


def ask(client, stream: bool, **params: Any):
    """One messages call, through the SDK's stream helper (and its accumulator) when ``stream``."""
    params = {"model": "claude-sonnet-4-6", "max_tokens": 1024, **params}
    if not stream:
        return client.messages.create(**params)
    with client.messages.stream(**params) as events:
        return events.get_final_message()


def search_only(query: str = "flask streaming", **tool: Any) -> dict[str, Any]:
    """What Claude Code's WebSearch sends: the server tool alone, forced, and the query in the user's words."""
    return {"tools": [{**WEB_SEARCH, "max_uses": 8, **tool}], "tool_choice": {"type": "tool", "name": "web_search"},
            "messages": [{"role": "user", "content": f"Perform a web search for the query: {query}"}]}


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_search_only_answers_with_results_and_citations(client, fake, stream) -> None:
    message = ask(client, stream, **search_only())

    use, result, *texts = message.content
    assert (use.type, use.name, use.input) == ("server_tool_use", "web_search", {"query": "flask streaming"})
    assert use.id.startswith("srvtoolu_") and result.tool_use_id == use.id
    assert result.type == "web_search_tool_result"
    assert [(r.type, r.url, r.page_age) for r in result.content] == [
        ("web_search_result", url, None) for url in (DOCS, NEWS, WIKI)]
    assert result.content[0].title == "flask streaming - Documentation"
    assert all(r.encrypted_content for r in result.content)
    assert {b.type for b in texts} == {"text"} and "".join(b.text for b in texts) == ANSWER
    cited = [(b.text, [c.url for c in b.citations]) for b in texts if b.citations]
    assert cited == [(text, urls) for text, urls in CITED]
    for block in texts:
        for citation in block.citations or []:
            assert citation.type == "web_search_result_location" and citation.cited_text == block.text
            assert citation.title and citation.encrypted_index
    assert message.stop_reason == "end_turn"
    assert message.model == SEARCH_MODEL  # the search model answered
    assert message.usage.server_tool_use.web_search_requests == 1
    assert calls(fake) == [("web_search", SEARCH_MODEL)]
    upstream = fake.generate_requests()[0].body["request"]
    assert upstream["tools"] == [{"googleSearch": {}}] and "toolConfig" not in upstream
    assert upstream["contents"] == [{"role": "user", "parts": [
        {"text": "Perform a web search for the query: flask streaming"}]}]


def test_anthropic_search_stream_events(gateway, fake) -> None:
    """The blocks as Anthropic streams them: the call's input as JSON, the results whole, citations before text."""
    response = requests.post(f"{gateway.url}/v1/messages", stream=True, timeout=10,
                             headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
                             json={"model": "claude-sonnet-4-6", "max_tokens": 100, "stream": True, **search_only()})
    events = [(e["type"], e) for e in (p for p in sse_payloads(response)) if e["type"] != "ping"]
    kinds = [kind for kind, _ in events]
    assert kinds[:8] == ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                         "content_block_start", "content_block_stop", "content_block_start", "content_block_delta"]
    assert events[1][1]["content_block"]["type"] == "server_tool_use" and events[1][1]["content_block"]["input"] == {}
    assert json.loads(events[2][1]["delta"]["partial_json"]) == {"query": "flask streaming"}
    assert events[4][1]["content_block"]["type"] == "web_search_tool_result"
    assert len(events[4][1]["content_block"]["content"]) == 3
    deltas = [e["delta"]["type"] for kind, e in events if kind == "content_block_delta"]
    assert deltas[1:] == ["text_delta", "citations_delta", "text_delta", "text_delta", "citations_delta",
                          "text_delta", "text_delta", "citations_delta", "citations_delta", "text_delta"]
    assert events[-2][1]["usage"]["server_tool_use"] == {"web_search_requests": 1, "web_fetch_requests": 0}


def test_anthropic_explicit_grounding(client, fake) -> None:
    """A page cited twice is one result; a support naming no usable page cites nothing."""
    text = "Zürich is in Switzerland. It has a lake. Nobody knows."
    fake.enqueue(Reply.grounded(text, ["zurich"], [
        ("https://ch.example/zurich", "Zürich"), ("https://lake.example/", "Lake"), ("https://ch.example/zurich", "Z"),
        ("", "no page")], [("Zürich is in Switzerland.", [0]), ("It has a lake.", [1, 2]), ("Nobody knows.", [3])]),
        model=SEARCH_MODEL)
    message = ask(client, False, **search_only("zurich"))
    assert [r.url for r in message.content[1].content] == ["https://ch.example/zurich", "https://lake.example/"]
    blocks = [(b.text, [c.url for c in b.citations or []]) for b in message.content[2:]]
    assert blocks == [("Zürich is in Switzerland.", ["https://ch.example/zurich"]), (" ", []),
                      ("It has a lake.", ["https://lake.example/", "https://ch.example/zurich"]),
                      (" Nobody knows.", [])]


@pytest.mark.parametrize("tool, urls, cited", [
    ({"allowed_domains": ["docs.example.com"]}, [DOCS], [[DOCS], [DOCS]]),
    ({"allowed_domains": ["example.net/wiki"]}, [WIKI], [[WIKI]]),
    ({"blocked_domains": ["example.org"]}, [DOCS, WIKI], [[DOCS], [WIKI, DOCS]]),
])
def test_anthropic_domain_limits_filter_results_and_citations(client, fake, tool, urls, cited) -> None:
    message = ask(client, False, **search_only(**tool))
    assert [r.url for r in message.content[1].content] == urls
    assert [[c.url for c in b.citations] for b in message.content[2:] if b.citations] == cited
    hint = fake.generate_requests()[0].body["request"]["systemInstruction"]["parts"][-1]["text"]
    assert ", ".join(tool.get("allowed_domains") or tool.get("blocked_domains")) in hint


def test_anthropic_domain_limits_read_google_redirect_links_by_title(client, fake) -> None:
    """Google's grounding links go through its redirector; the title names the site."""
    redirect = "https://vertexaisearch.cloud.google.com/grounding-api-redirect/"
    fake.enqueue(Reply.grounded("One. Two.", ["q"], [(redirect + "AAA", "docs.python.org"),
                                                     (redirect + "BBB", "spam.example")],
                                [("One.", [0]), ("Two.", [1])]), model=SEARCH_MODEL)
    message = ask(client, False, **search_only("q", blocked_domains=["spam.example"]))
    assert [(r.url, r.title) for r in message.content[1].content] == [(redirect + "AAA", "docs.python.org")]


def test_anthropic_user_location_and_both_domain_lists(client, fake) -> None:
    ask(client, False, **search_only(user_location={"type": "approximate", "city": "Paris", "country": "FR",
                                                    "timezone": "Europe/Paris"}))
    hint = fake.generate_requests()[0].body["request"]["systemInstruction"]["parts"][-1]["text"]
    assert hint == "The user is in Paris, FR (time zone Europe/Paris)."
    import anthropic

    with pytest.raises(anthropic.BadRequestError, match="allowed_domains"):
        ask(client, False, **search_only(allowed_domains=["a.example"], blocked_domains=["b.example"]))


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "claude-opus-4-6-thinking", SEARCH_MODEL])
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_search_beside_function_tools(client, fake, model, stream) -> None:
    """The search is one more function: the model calls it, the gateway searches and hands the model the findings
    (the thinking and signatures of its turn replayed as the fake insists), and the final answer cites a page."""
    message = ask(client, stream, model=model, max_tokens=4096, tools=[WEB_SEARCH, WEATHER_TOOL],
                  messages=[{"role": "user", "content": 'call tool web_search with {"query": "paris weather"}'}])

    blocks = [b for b in message.content if b.type != "thinking"]
    assert [b.type for b in blocks] == ["server_tool_use", "web_search_tool_result", "text"]
    assert blocks[0].input == {"query": "paris weather"} and len(blocks[1].content) == 3
    assert "https://docs.example.com/paris-weather" in blocks[2].text
    assert message.stop_reason == "end_turn"
    assert message.usage.server_tool_use.web_search_requests == 1
    assert calls(fake) == [("agent", model), ("web_search", SEARCH_MODEL), ("agent", model)]
    first, search, last = (r.body["request"] for r in fake.generate_requests())
    assert [d["name"] for d in first["tools"][0]["functionDeclarations"]] == ["get_weather", "web_search"]
    assert "googleSearch" not in json.dumps(first["tools"])
    assert search["contents"] == [{"role": "user", "parts": [{"text": "paris weather"}]}]
    assert search["tools"] == [{"googleSearch": {}}]
    replayed_call = [p["functionCall"] for c in last["contents"] for p in c["parts"] if "functionCall" in p]
    response = [p["functionResponse"] for c in last["contents"] for p in c["parts"] if "functionResponse" in p]
    assert [(c["name"], c["args"]) for c in replayed_call] == [("web_search", {"query": "paris weather"})]
    assert response[0]["name"] == "web_search"
    assert "https://news.example.org/paris-weather" in response[0]["response"]["result"]


def test_anthropic_search_and_client_tool_in_one_turn(client, fake) -> None:
    """The client's own call ends the answer (after the search blocks); its next request carries the search back."""
    fake.enqueue(Reply(tool_calls=[("web_search", {"query": "paris weather"}), ("get_weather", {"city": "Paris"})]),
                 model="claude-sonnet-4-6")
    question = {"role": "user", "content": "weather?"}
    first = ask(client, False, tools=[WEB_SEARCH, WEATHER_TOOL], messages=[question])
    assert [b.type for b in first.content] == ["server_tool_use", "web_search_tool_result", "tool_use"]
    assert first.stop_reason == "tool_use"
    call = first.content[2]

    second = ask(client, True, tools=[WEB_SEARCH, WEATHER_TOOL], messages=[
        question, {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]}])
    assert second.content[-1].text == "Tool result received: Sunny"
    model_turn = fake.generate_requests()[-1].body["request"]["contents"][1]["parts"]
    assert model_turn[0]["text"].startswith('Web search results for "paris weather"')
    assert "https://wiki.example.net/wiki/paris-weather" in model_turn[0]["text"]
    assert [p["functionCall"]["name"] for p in model_turn[1:]] == ["get_weather"]


def test_anthropic_max_uses(client, fake) -> None:
    for query in ("one", "two"):
        fake.enqueue(Reply(tool_calls=[("web_search", {"query": query})]), model="claude-sonnet-4-6")
    message = ask(client, False, tools=[{**WEB_SEARCH, "max_uses": 1}, WEATHER_TOOL],
                  messages=[{"role": "user", "content": "search twice"}])
    assert [b.type for b in message.content] == ["server_tool_use", "web_search_tool_result", "server_tool_use",
                                                 "web_search_tool_result", "text"]
    assert len(message.content[1].content) == 3
    assert message.content[3].content.error_code == "max_uses_exceeded"
    assert "max_uses_exceeded" in message.content[4].text
    assert message.usage.server_tool_use.web_search_requests == 1
    assert calls(fake) == [("agent", "claude-sonnet-4-6"), ("web_search", SEARCH_MODEL),
                           ("agent", "claude-sonnet-4-6"), ("agent", "claude-sonnet-4-6")]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("cause, code", [("refused", "unavailable"), ("no search model", "unavailable"),
                                         ("out of quota", "too_many_requests")])
def test_anthropic_failed_search_is_an_error_result(client, fake, stream, cause, code) -> None:
    """Not a failed request: the error as the tool's result, then the named model answers, told of it."""
    if cause == "refused":
        fake.enqueue(Reply.error(400, message="Search is down"), model=SEARCH_MODEL)
    elif cause == "out of quota":
        fake.enqueue(Reply.error(429, reason="QUOTA_EXHAUSTED", retry_delay="3600s", quota_reset_delay="1h"),
                     model=SEARCH_MODEL)
    else:
        del fake.models[SEARCH_MODEL]["_search"]
    message = ask(client, stream, **search_only())

    use, result, text = message.content
    assert use.type == "server_tool_use" and result.tool_use_id == use.id
    assert (result.content.type, result.content.error_code) == ("web_search_tool_result_error", code)
    assert text.text == "Echo: Perform a web search for the query: flask streaming"
    assert message.model == "claude-sonnet-4-6" and message.usage.server_tool_use is None
    searched = [] if cause == "no search model" else [("web_search", SEARCH_MODEL)]
    assert calls(fake) == [*searched, ("agent", "claude-sonnet-4-6")]
    system = fake.generate_requests()[-1].body["request"]["systemInstruction"]["parts"][-1]["text"]
    assert f"failed ({code})" in system


def test_anthropic_search_only_follow_up_sends_the_conversation(client, fake) -> None:
    """The search model sees the conversation's text (so a follow-up has its context); the query is the last ask."""
    first = ask(client, False, **search_only())
    message = ask(client, False, tools=[WEB_SEARCH], messages=[
        {"role": "user", "content": "flask streaming"}, {"role": "assistant", "content": first.content},
        {"role": "user", "content": "and gevent?"}])
    assert message.content[0].input == {"query": "and gevent?"}
    contents = fake.generate_requests()[-1].body["request"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [{"text": ANSWER}]  # the cited blocks are one answer again
    assert contents[2]["parts"] == [{"text": "and gevent?"}]


def test_anthropic_tool_choice_none_does_not_search(client, fake) -> None:
    message = ask(client, False, tools=[WEB_SEARCH], tool_choice={"type": "none"},
                  messages=[{"role": "user", "content": "hello"}])
    assert [b.type for b in message.content] == ["text"]
    assert calls(fake) == [("agent", "claude-sonnet-4-6")]


def test_anthropic_count_tokens_with_the_search_tool(client, fake) -> None:
    count = client.messages.count_tokens(model="claude-sonnet-4-6", **search_only())
    assert count.input_tokens > 0


# -- OpenAI Chat Completions --------------------------------------------------------------------------------

WEATHER_FUNCTION = {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                                                     "parameters": WEATHER_TOOL["input_schema"]}}


@pytest.fixture
def oai(gateway):
    import openai

    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0, timeout=30)


def chat(oai, stream: bool, **params: Any):
    """One chat completion, through the SDK's stream helper (and its accumulator) when ``stream``."""
    params = {"model": "claude-sonnet-4-6", **params}
    if not stream:
        return oai.chat.completions.create(**params)
    with oai.chat.completions.stream(**params) as events:
        return events.get_final_completion()


@pytest.mark.parametrize("stream", [False, True])
def test_chat_web_search_options_answer_with_url_citations(oai, fake, stream) -> None:
    completion = chat(oai, stream, web_search_options={"search_context_size": "low"},
                      messages=[{"role": "user", "content": "flask streaming"}])

    message = completion.choices[0].message
    assert message.content == ANSWER and completion.choices[0].finish_reason == "stop"
    spans = [(message.content[a.url_citation.start_index:a.url_citation.end_index], a.url_citation.url)
             for a in message.annotations]
    assert spans == [(text, url) for text, urls in CITED for url in urls]
    assert {a.type for a in message.annotations} == {"url_citation"}
    assert message.annotations[0].url_citation.title == "flask streaming - Documentation"
    assert completion.model == SEARCH_MODEL
    assert calls(fake) == [("web_search", SEARCH_MODEL)]
    assert fake.generate_requests()[0].body["request"]["contents"] == [
        {"role": "user", "parts": [{"text": "flask streaming"}]}]


def test_chat_stream_sends_the_annotations_once_before_the_finish(gateway, fake) -> None:
    response = requests.post(f"{gateway.url}/v1/chat/completions", stream=True, timeout=10,
                             headers={"Authorization": "Bearer x"},
                             json={"model": "claude-sonnet-4-6", "stream": True, "web_search_options": {},
                                   "messages": [{"role": "user", "content": "flask streaming"}]})
    lines = [line.decode("utf-8") for line in response.iter_lines() if line.startswith(b"data: ")]
    assert lines[-1] == "data: [DONE]"
    deltas = [json.loads(line[6:])["choices"][0] for line in lines[:-1]]
    annotated = [k for k, d in enumerate(deltas) if "annotations" in d["delta"]]
    assert annotated == [len(deltas) - 2] and deltas[-1]["finish_reason"] == "stop"
    assert len(deltas[annotated[0]]["delta"]["annotations"]) == 4


def test_chat_search_beside_function_tools(oai, fake) -> None:
    completion = chat(oai, False, web_search_options={}, tools=[WEATHER_FUNCTION],
                      messages=[{"role": "user", "content": 'call tool web_search with {"query": "paris weather"}'}])
    message = completion.choices[0].message
    assert "https://docs.example.com/paris-weather" in message.content and not message.tool_calls
    assert calls(fake) == [("agent", "claude-sonnet-4-6"), ("web_search", SEARCH_MODEL), ("agent", "claude-sonnet-4-6")]


def test_chat_search_name_steps_aside_for_a_client_function(oai, fake) -> None:
    """A client function already called web_search keeps the name; the gateway's search takes another."""
    own = {"type": "function", "function": {"name": "web_search", "parameters": {"type": "object", "properties": {
        "q": {"type": "string"}}}}}
    completion = chat(oai, False, web_search_options={}, tools=[own],
                      messages=[{"role": "user", "content": 'call tool web_search with {"q": "x"}'}])
    assert completion.choices[0].message.tool_calls[0].function.name == "web_search"
    declared = fake.generate_requests()[0].body["request"]["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in declared] == ["web_search", "google_web_search"]


@pytest.mark.parametrize("stream", [False, True])
def test_chat_failed_search_still_answers(oai, fake, stream) -> None:
    fake.enqueue(Reply.error(400, message="Search is down"), model=SEARCH_MODEL)
    completion = chat(oai, stream, web_search_options={}, messages=[{"role": "user", "content": "flask streaming"}])
    message = completion.choices[0].message
    assert message.content == "Echo: flask streaming" and not message.annotations
    assert completion.model == "claude-sonnet-4-6"
    assert calls(fake) == [("web_search", SEARCH_MODEL), ("agent", "claude-sonnet-4-6")]


def test_chat_user_location_reaches_the_search(oai, fake) -> None:
    chat(oai, False, messages=[{"role": "user", "content": "weather"}], web_search_options={
        "user_location": {"type": "approximate", "approximate": {"city": "Lyon", "country": "FR"}}})
    hint = fake.generate_requests()[0].body["request"]["systemInstruction"]["parts"][-1]["text"]
    assert hint == "The user is in Lyon, FR."


def test_chat_bad_web_search_options(oai) -> None:
    import openai

    with pytest.raises(openai.BadRequestError, match="search_context_size"):
        chat(oai, False, messages=[{"role": "user", "content": "x"}],
             web_search_options={"search_context_size": "huge"})
