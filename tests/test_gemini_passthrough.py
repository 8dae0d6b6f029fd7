"""The passthrough lane on the wire: what a Gemini API client sends reaches the upstream as it was, and what the
upstream answers reaches the client as it was, but for what must change (docs/clients.md, "Gemini API").

Raw HTTP here, so nothing in between (no SDK) re-encodes what is compared.
"""

from __future__ import annotations

import copy
import json

import pytest
import requests

from tests.conftest import REFRESH_TOKEN, gateway_settings, serve, write_accounts
from tests.fake_cloudcode import Reply, grounding_metadata

FLASH = "gemini-3-flash-agent"
SKIP = "skip_thought_signature_validator"
WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string", "minLength": 1}},
                                    "required": ["city"], "additionalProperties": False}}


def post(url: str, model: str, body: dict, method: str = "generateContent", **params) -> requests.Response:  # noqa: ANN003
    return requests.post(f"{url}/v1beta/models/{model}:{method}", params=params, json=body, timeout=30,
                         headers={"x-goog-api-key": "any"})


def user(text: str) -> dict:
    return {"role": "user", "parts": [{"text": text}]}


def sse_chunks(response: requests.Response) -> list[dict]:
    """The events of an SSE answer; any other non-blank line fails (Google's SDKs read them as errors)."""
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = []
    for line in response.text.split("\n"):
        if line:
            assert line.startswith("data: "), line
            chunks.append(json.loads(line[len("data: "):]))
    return chunks


def test_request_fields_arrive_unchanged(gateway, fake) -> None:
    """Function responses keep their objects, safety settings and candidate counts go on, unknown-to-the-canonical
    generation fields too: the lane changes only what it must."""
    response = {"output": {"temperature": -3, "sky": ["snow", "fog"]}, "units": "C"}
    contents = [
        user("weather?"),
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}},
                                     "thoughtSignature": SKIP}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": response}}]},
    ]
    body = {
        "contents": contents,
        "systemInstruction": {"role": "user", "parts": [{"text": "be brief"}]},
        "tools": [{"functionDeclarations": [WEATHER]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}],
        "generationConfig": {"candidateCount": 1, "seed": 7, "topK": 20, "stopSequences": ["END"],
                             "presencePenalty": 0.5, "responseMimeType": "text/plain"},
    }
    answer = post(gateway.url, FLASH, copy.deepcopy(body))
    assert answer.status_code == 200, answer.text

    sent = fake.generate_requests()[0].body
    assert sent["model"] == FLASH and sent["project"] == "proj-alice" and sent["requestType"] == "agent"
    request = sent["request"]
    assert request["contents"] == contents
    for key in ("systemInstruction", "toolConfig", "safetySettings", "generationConfig"):
        assert request[key] == body[key], key
    assert len(request["sessionId"]) == 32
    # gemini-cli's JSON Schema, as the upstream takes it: under `parameters`, in the upstream's subset.
    (declaration,) = request["tools"][0]["functionDeclarations"]
    assert "parametersJsonSchema" not in declaration
    assert declaration["parameters"]["properties"]["city"]["type"] == "string"
    assert "additionalProperties" not in json.dumps(declaration)
    assert answer.json()["candidates"][0]["content"]["parts"][0]["text"].startswith("Tool result received: ")


def test_what_must_change_changes(gateway, fake) -> None:
    """An output limit above the model's is capped; snake_case fields are kept in one spelling; the model leaves
    the body (the envelope names it)."""
    body = {"model": "models/gemini-3.8-flash", "contents": [user("Hi")],
            "generation_config": {"max_output_tokens": 1_000_000,
                                  "thinking_config": {"include_thoughts": True, "thinking_level": "minimal"}}}
    assert post(gateway.url, "gemini-3.8-flash", body).status_code == 200
    sent = fake.generate_requests()[0].body
    assert sent["model"] == "gemini-3.8-flash-tiered" and "model" not in sent["request"]
    assert sent["request"]["generationConfig"] == {
        "maxOutputTokens": 65536, "thinkingConfig": {"include_thoughts": True, "thinkingLevel": "low"}}


def test_answer_chunks_arrive_unchanged(gateway, fake) -> None:
    """Parts and fields the canonical model has no place for (code execution, safety ratings, citations, a finish
    reason of Google's own) reach the client as the upstream sent them, chunk by chunk, minus the envelope."""
    chunks = [
        {"candidates": [{"content": {"role": "model", "parts": [
            {"executableCode": {"language": "PYTHON", "code": "print(6 * 7)"}}]}, "index": 0}],
         "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9}, "modelVersion": FLASH, "responseId": "r1"},
        {"candidates": [{"content": {"role": "model", "parts": [
            {"codeExecutionResult": {"outcome": "OUTCOME_OK", "output": "42\n"}}]}, "index": 0}],
         "modelVersion": FLASH, "responseId": "r1"},
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "It is 42."}]}, "index": 0,
                         "finishReason": "RECITATION",
                         "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}],
                         "citationMetadata": {"citationSources": [{"uri": "https://example.com/42"}]}}],
         "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14},
         "modelVersion": FLASH, "responseId": "r1"},
    ]
    fake.enqueue(Reply.raw(chunks))
    streamed = post(gateway.url, FLASH, {"contents": [user("6 * 7?")]}, "streamGenerateContent", alt="sse")
    assert sse_chunks(streamed) == chunks

    fake.enqueue(Reply.raw(chunks))
    whole = post(gateway.url, FLASH, {"contents": [user("6 * 7?")]}).json()
    assert whole["candidates"][0]["content"]["parts"] == [chunks[0]["candidates"][0]["content"]["parts"][0],
                                                         chunks[1]["candidates"][0]["content"]["parts"][0],
                                                         {"text": "It is 42."}]
    assert whole["candidates"][0]["finishReason"] == "RECITATION"
    assert whole["candidates"][0]["citationMetadata"] == chunks[2]["candidates"][0]["citationMetadata"]
    assert whole["usageMetadata"] == chunks[2]["usageMetadata"] and whole["responseId"] == "r1"


def test_json_array_stream_without_alt_sse(gateway, fake) -> None:
    """Without alt=sse Google streams one JSON array, element by element."""
    answer = post(gateway.url, FLASH, {"contents": [user("Hello")]}, "streamGenerateContent")
    assert answer.headers["content-type"].startswith("application/json")
    chunks = answer.json()
    assert "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks) == "Echo: Hello"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"


def test_grounding_metadata_arrives_unchanged(gateway, fake) -> None:
    """A Google Search request is a search call upstream (on a model that may search) and its grounding comes back
    as Google sent it."""
    text = "Oslo has snow today."
    reply = Reply.grounded(text, ["oslo weather"], [("https://example.com/oslo", "example.com")], [(text, [0])])
    fake.enqueue(reply)
    body = {"contents": [user("weather in oslo?")], "tools": [{"googleSearch": {}}]}
    answer = post(gateway.url, "gemini-3.8-flash", body, "streamGenerateContent", alt="sse")

    chunks = sse_chunks(answer)
    assert chunks[-1]["candidates"][0]["groundingMetadata"] == grounding_metadata(
        text, ["oslo weather"], [("https://example.com/oslo", "example.com")], [(text, [0])])
    sent = fake.generate_requests()[0]
    assert (sent.body["model"], sent.body["requestType"], sent.status) == (FLASH, "web_search", 200)
    assert sent.body["request"]["tools"] == [{"googleSearch": {}}]


def test_signatures_go_back_and_forth_untouched(gateway, fake) -> None:
    """Gemini's signature reaches the client as issued and the upstream again as the client sends it back."""
    tools = [{"functionDeclarations": [WEATHER]}]
    contents = [user('call tool get_weather with {"city": "Oslo"}')]
    first = post(gateway.url, FLASH, {"contents": contents, "tools": tools}).json()
    model_turn = first["candidates"][0]["content"]
    (call,) = [part for part in model_turn["parts"] if "functionCall" in part]
    assert call["thoughtSignature"].startswith("C")
    contents += [model_turn, {"role": "user", "parts": [
        {"functionResponse": {"name": "get_weather", "response": {"result": "snow"}}}]}]

    second = post(gateway.url, FLASH, {"contents": contents, "tools": tools})

    assert second.status_code == 200, second.text
    sent = fake.generate_requests()[1].body["request"]["contents"]
    assert sent[1] == model_turn


def test_switching_from_claude_to_gemini(gateway, fake) -> None:
    """A history a thinking Claude made: Gemini would refuse Claude's signatures, so they go (with the thought part
    they signed), and the call, unsigned then, carries the skip sentinel."""
    tools = [{"functionDeclarations": [WEATHER]}]
    contents = [user('call tool get_weather with {"city": "Oslo"}')]
    config = {"thinkingConfig": {"includeThoughts": True}}
    first = post(gateway.url, "claude-opus-4-6-thinking", {"contents": contents, "tools": tools,
                                                           "generationConfig": config}).json()
    model_turn = first["candidates"][0]["content"]
    assert model_turn["parts"][0]["thought"] is True and model_turn["parts"][0]["thoughtSignature"]
    call = model_turn["parts"][1]["functionCall"]
    contents += [model_turn, {"role": "user", "parts": [
        {"functionResponse": {"id": call["id"], "name": "get_weather", "response": {"result": "snow"}}}]}]

    second = post(gateway.url, FLASH, {"contents": contents, "tools": tools})

    assert second.status_code == 200, second.text
    sent = fake.generate_requests()[1]
    assert sent.status == 200
    assert sent.body["request"]["contents"][1]["parts"] == [{"functionCall": call, "thoughtSignature": SKIP}]


def test_gemini_cli_shape_for_claude(gateway, fake) -> None:
    """What gemini-cli sends for a Claude thinking model: JSON Schema tools, call ids it prefixed with the
    function's name, thought parts dropped from the history. The loop reaches Claude whole."""
    tools = [{"functionDeclarations": [WEATHER]}]
    config = {"thinkingConfig": {"includeThoughts": True, "thinkingLevel": "HIGH"}}
    contents = [user("<session_context>cwd: /tmp</session_context>"), user('call tool get_weather with {"city": "Oslo"}')]
    first = post(gateway.url, "claude-opus-4-6-thinking", {"contents": contents, "tools": tools,
                                                           "generationConfig": config},
                 "streamGenerateContent", alt="sse")
    parts = [p for chunk in sse_chunks(first) for p in chunk["candidates"][0]["content"]["parts"]]
    (call,) = [p["functionCall"] for p in parts if "functionCall" in p]
    thoughts = [p for p in parts if "text" in p]  # the thinking in pieces, then its signature
    assert all(p["thought"] for p in thoughts) and thoughts[-1]["thoughtSignature"] and parts[-1] == {"functionCall": call}
    prefixed = f"get_weather__{call['id']}"
    contents += [{"role": "model", "parts": [{"functionCall": {**call, "id": prefixed}}]},
                 {"role": "user", "parts": [{"functionResponse": {"id": prefixed, "name": "get_weather",
                                                                  "response": {"output": "snow"}}}]}]

    second = post(gateway.url, "claude-opus-4-6-thinking", {"contents": contents, "tools": tools,
                                                            "generationConfig": config},
                  "streamGenerateContent", alt="sse")

    assert second.status_code == 200, second.text
    assert "Tool result received: snow" in "".join(
        p.get("text", "") for chunk in sse_chunks(second) for p in chunk["candidates"][0]["content"]["parts"])
    upstream = fake.generate_requests()[1]
    assert upstream.status == 200
    model_turn = upstream.body["request"]["contents"][-2]["parts"]
    assert model_turn[0]["thought"] is True and model_turn[1]["functionCall"]["id"] == call["id"]


def test_errors_mid_stream_in_both_framings(gateway, fake) -> None:
    """After the start, a failure is Google's error object on its own: a raw JSON line in SSE (no data: prefix,
    which the js SDK would take for a chunk), the array's last element otherwise."""
    fake.enqueue(Reply(text="this answer will be cut off somewhere", chunks=4, drop_after=2))
    answer = post(gateway.url, FLASH, {"contents": [user("Hi")]}, "streamGenerateContent", alt="sse")
    lines = [line for line in answer.text.split("\n") if line]
    assert [line.startswith("data: ") for line in lines] == [True, True, False]
    assert json.loads(lines[-1])["error"] == {"code": 502, "status": "UNAVAILABLE",
                                              "message": "the upstream connection broke in the middle of the answer"}

    fake.enqueue(Reply(text="this answer will be cut off somewhere", chunks=4, drop_after=2))
    array = post(gateway.url, FLASH, {"contents": [user("Hi")]}, "streamGenerateContent").json()
    assert len(array) == 3 and array[-1]["error"]["code"] == 502


@pytest.mark.parametrize("model", [FLASH, "claude-sonnet-4-6"])
def test_keep_alives_are_blank_lines(fake, accounts_file, model: str) -> None:
    """While the upstream is silent a stream gets newlines: no comment lines, which the python SDK would misread."""
    url, _, server = serve(gateway_settings(fake, accounts_file, ping_interval=0.1))
    try:
        fake.enqueue(Reply(text="slow answer here", chunks=2, stall_after=1, stall_seconds=0.5))
        answer = post(url, model, {"contents": [user("Hi")]}, "streamGenerateContent", alt="sse")
        assert "\n\n\n" in answer.text
        assert "".join(c["candidates"][0]["content"]["parts"][0].get("text", "")
                       for c in sse_chunks(answer) if c["candidates"][0]["content"]["parts"]) == "slow answer here"
    finally:
        server.shutdown()


@pytest.mark.parametrize(("body", "where"), [
    ({"contents": "hi"}, "contents"),
    ({"contents": [{"role": "user", "parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
    ({"contents": [user("x")], "tools": [{"functionDeclarations": [{"name": "f", "parameters": "no"}]}]},
     "tools[0].function_declarations[0].parameters"),
    ({"contents": [user("x")], "generationConfig": {"thinkingConfig": []}}, "generation_config.thinking_config"),
    ({"contents": [user("x")], "generationConfig": {"maxOutputTokens": "many"}}, "generation_config.max_output_tokens"),
])
def test_what_the_lane_reads_is_checked(gateway, fake, body: dict, where: str) -> None:
    answer = post(gateway.url, FLASH, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and f"'{where}'" in error["message"]
    assert fake.generate_requests() == []


def test_upstream_judges_the_rest(gateway, fake) -> None:
    """Fields the lane does not read are the upstream's to judge: its 400 comes back as it said it."""
    answer = post(gateway.url, FLASH, {"contents": [user("x")], "generationConfig": {"notAField": 1}})
    assert answer.status_code == 400
    assert 'Unknown name "notAField"' in answer.json()["error"]["message"]


def test_paths_outside_the_served_methods(gateway, fake) -> None:
    """Google's shape for everything under /v1beta and for Google's methods under /v1/models: embeddings (which
    gemini-cli may ask for) have no Cloud Code counterpart."""
    cases = [
        (requests.post(f"{gateway.url}/v1beta/models/gemini-embedding-001:embedContent", json={}, timeout=5), 404),
        (requests.post(f"{gateway.url}/v1/models/{FLASH}:batchEmbedContents", json={}, timeout=5), 404),
        (requests.get(f"{gateway.url}/v1beta/models/{FLASH}:generateContent", timeout=5), 405),
        (requests.get(f"{gateway.url}/v1beta/cachedContents", timeout=5), 404),
        (requests.delete(f"{gateway.url}/v1beta/models", timeout=5), 405),
    ]
    for answer, status in cases:
        assert answer.status_code == status, answer.text
        assert set(answer.json()["error"]) == {"code", "message", "status"} and answer.json()["error"]["code"] == status
    assert fake.generate_requests() == []


def test_null_lists_are_absent_lists(gateway, fake) -> None:
    """proto3 JSON reads null as absent: so does the lane."""
    body = {"contents": [user("Hi")], "tools": None, "safetySettings": None, "generationConfig": None}
    assert post(gateway.url, FLASH, body).status_code == 200


# -- the engine it shares with the canonical lane ----------------------------------------------------------------


@pytest.fixture
def duo_file(fake, tmp_path):  # noqa: ANN001, ANN201
    """alice (from the fake fixture) and bob, in one accounts file."""
    fake.add_account("bob@example.com", refresh_token="1//refresh-bob", project_id="proj-bob")
    return write_accounts(tmp_path / "accounts.json", [
        {"email": "alice@example.com", "refreshToken": REFRESH_TOKEN, "projectId": "proj-alice"},
        {"email": "bob@example.com", "refreshToken": "1//refresh-bob", "projectId": "proj-bob"}])


LONG_LIMIT = dict(reason="QUOTA_EXHAUSTED", retry_delay="3600s", quota_reset_delay="1h0m0s")


def test_rate_limit_moves_to_another_account(fake, duo_file) -> None:
    fake.enqueue(Reply.error(429, **LONG_LIMIT), email="alice@example.com")
    url, _, server = serve(gateway_settings(fake, duo_file, account_strategy="sticky"))
    try:
        answer = post(url, FLASH, {"contents": [user("Hi")]}, "streamGenerateContent", alt="sse")
        assert answer.status_code == 200 and sse_chunks(answer)
    finally:
        server.shutdown()
    calls = [(r.email, r.status, r.body["project"]) for r in fake.generate_requests()]
    assert calls == [("alice@example.com", 429, "proj-alice"), ("bob@example.com", 200, "proj-bob")]


def test_server_errors_and_empty_answers_are_retried(gateway, fake) -> None:
    fake.enqueue(Reply.error(503), Reply.empty(), Reply.text("at last"))
    answer = post(gateway.url, FLASH, {"contents": [user("Hi")]})
    assert answer.status_code == 200
    assert answer.json()["candidates"][0]["content"]["parts"] == [{"text": "at last", "thoughtSignature": ANY_SIGNATURE}]
    assert [r.status for r in fake.generate_requests()] == [503, 200, 200]


def test_fallback_only_to_a_model_the_lane_serves(fake, duo_file) -> None:
    """GATEWAY_MODEL_FALLBACK to a Gemini model answers in place of an exhausted one; to a Claude model it cannot:
    the client gets the 429."""
    for email in ("alice@example.com", "bob@example.com"):
        fake.enqueue(Reply.error(429, **LONG_LIMIT), email=email, model=FLASH)
    url, _, server = serve(gateway_settings(fake, duo_file, model_fallbacks={FLASH: "gemini-pro-agent"}))
    try:
        answer = post(url, FLASH, {"contents": [user("Hi")]})
        assert answer.status_code == 200 and answer.headers["X-Gateway-Fallback-Model"] == "gemini-pro-agent"
    finally:
        server.shutdown()
    url, _, server = serve(gateway_settings(fake, duo_file, model_fallbacks={FLASH: "claude-sonnet-4-6"}))
    try:
        for email in ("alice@example.com", "bob@example.com"):
            fake.enqueue(Reply.error(429, **LONG_LIMIT), email=email, model=FLASH)
        answer = post(url, FLASH, {"contents": [user("Hi")]})
        assert answer.status_code == 429 and answer.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    finally:
        server.shutdown()
    assert "claude-sonnet-4-6" not in {r.body["model"] for r in fake.generate_requests()}


class _AnySignature:
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.startswith("C")


ANY_SIGNATURE = _AnySignature()
