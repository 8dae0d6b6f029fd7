"""Model names against the live listing: resolution rules, renames followed mid-run, vendors from the listing."""

from __future__ import annotations

import anthropic
import openai
import pytest
import requests

from gateway.catalog import ANTHROPIC, GOOGLE, OPENAI, Catalog
from gateway.config import Settings
from gateway.dispatch import MODEL_HEADER
from gateway.errors import NotFound
from tests.fake_cloudcode import DEFAULT_DEPRECATIONS, FakeCloudCode, Reply

WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


@pytest.fixture
def catalog(fake: FakeCloudCode) -> Catalog:
    """A catalog fed with the fake's listing, as the gateway gets it."""
    catalog = Catalog()
    assert catalog.update_from_listing(fake._model_listing("alice@example.com"))
    return catalog


# -- resolution rules (pure) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected", "tier"),
    [
        ("claude-sonnet-4-6", "claude-sonnet-4-6", None),  # an exact id
        ("models/gemini-3-flash-agent", "gemini-3-flash-agent", None),  # Google's clients' spelling
        ("claude-opus-4-5-thinking", "claude-opus-4-6-thinking", None),  # deprecatedModelIds
        ("gemini-3-pro-high", "gemini-pro-agent", None),
        ("gemini-3.8-flash-high", "gemini-3.8-flash-tiered", "high"),  # a tier suffix onto its -tiered base
        ("gemini-3.8-flash-minimal", "gemini-3.8-flash-tiered", "low"),  # a tier it lacks: the nearest
        ("gemini-3.8-flash", "gemini-3.8-flash-tiered", None),  # the public name
        ("claude-opus-4-5-20251101", "claude-opus-4-6-thinking", None),  # Claude Code's names: the best of the line
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-6", None),
        ("claude-3-5-sonnet-20241022", "claude-sonnet-4-6", None),
        ("claude-haiku-4-5", "claude-sonnet-4-6", None),  # no Haiku upstream: the Sonnet line
        ("claude-opus-4-7", "claude-opus-4-6-thinking", None),
        ("gemini-2.5-pro", "gemini-pro-agent", None),
        ("gemini-flash-latest", "gemini-3.8-flash-tiered", None),
        ("gemini-3.1-flash-lite-preview", "gemini-3.1-flash-lite", None),
        # What gemini-cli sends (docs/clients.md, "Gemini API"): Google's public names and -latest aliases.
        ("gemini-3.1-pro-preview-customtools", "gemini-pro-agent", None),
        ("gemini-3-flash-preview", "gemini-3.8-flash-tiered", None),
        ("gemini-3.5-flash-lite", "gemini-3.1-flash-lite", None),
        ("gemini-pro-latest", "gemini-pro-agent", None),
        ("gemini-flash-lite-latest", "gemini-3.1-flash-lite", None),
        ("models/gemini-3.8-flash-low", "gemini-3.8-flash-tiered", "low"),
    ],
)
def test_names_resolve_against_the_listing(catalog: Catalog, name: str, expected: str, tier: str | None) -> None:
    model = catalog.resolve(name)
    assert (model.id, model.tier) == (expected, tier)


@pytest.mark.parametrize("name", ["gemma-4-27b-it", "gemini-embedding-001", "models/text-embedding-004"])
def test_what_the_upstream_does_not_serve_is_not_found(catalog: Catalog, name: str) -> None:
    """Open models and embeddings have no Cloud Code counterpart: a clear 404, not the nearest chat model."""
    with pytest.raises(NotFound):
        catalog.resolve(name)


def test_aliases_come_first_and_resolve_like_client_names(fake: FakeCloudCode) -> None:
    catalog = Catalog({"claude-sonnet-4-6": "claude-opus-4-5-thinking", "fast": "gemini-3.8-flash-low"})
    catalog.update_from_listing(fake._model_listing("alice@example.com"))
    assert catalog.resolve("claude-sonnet-4-6").id == "claude-opus-4-6-thinking"
    assert (catalog.resolve("fast").id, catalog.resolve("fast").tier) == ("gemini-3.8-flash-tiered", "low")


def test_unknown_names_are_not_found(catalog: Catalog) -> None:
    for name in ("gpt-4o", "llama-3", "gemini-ultra-9", ""):
        with pytest.raises(NotFound, match="/v1/models"):
            catalog.resolve(name)


def test_the_listing_replaces_the_built_in_table(fake: FakeCloudCode, catalog: Catalog) -> None:
    listed = {model.id for model in catalog.models()}
    assert listed == {m for m, info in fake.models.items() if not info.get("_internal")}
    assert not listed & set(DEFAULT_DEPRECATIONS)  # retired ids are not listed
    fake.models = {"claude-sonnet-4-9": fake.models["claude-sonnet-4-6"]}
    catalog.update_from_listing(fake._model_listing("alice@example.com"))
    assert [m.id for m in catalog.models()] == ["claude-sonnet-4-9"]
    assert catalog.resolve("claude-sonnet-4-5").id == "claude-sonnet-4-9"


def test_model_identity_comes_from_the_listing(catalog: Catalog) -> None:
    oss, opus, flash = (catalog.resolve(m) for m in ("gpt-oss-120b-medium", "claude-opus-4-6-thinking",
                                                     "gemini-3.8-flash"))
    assert (oss.vendor, oss.signer, oss.display_name, oss.max_output_tokens, oss.images) == (
        OPENAI, None, "GPT-OSS 120B (Medium)", 32768, False)
    assert (opus.vendor, opus.signer, opus.always_thinks) == (ANTHROPIC, "claude", True)
    assert (flash.vendor, flash.thinking_levels) == (GOOGLE, ("low", "medium", "high"))
    assert flash.nearest_level("minimal") == "low" and flash.nearest_level("medium") == "medium"


def test_vendor_without_a_provider_field_comes_from_the_display_name() -> None:
    catalog = Catalog()
    catalog.update_from_listing({"models": {"mystery-1": {"displayName": "Claude Opus 5 (Thinking)",
                                                          "supportsThinking": True}}})
    model = catalog.resolve("mystery-1")
    assert (model.vendor, model.always_thinks) == (ANTHROPIC, True)


def test_default_fallbacks_are_model_lines_not_ids(catalog: Catalog) -> None:
    pairs = Settings.from_env({"GATEWAY_MODEL_FALLBACK": "on"}).model_fallbacks
    assert all("-4-" not in name and "3." not in name for pair in pairs.items() for name in pair)
    opus = catalog.resolve("claude-opus-4-6-thinking")
    source = next(s for s in pairs if catalog.names(s, opus))
    assert catalog.resolve(pairs[source]).id == "gemini-pro-agent"


# -- the gateway follows the upstream --------------------------------------------------------------------


def test_models_list_follows_the_listing(gateway, fake: FakeCloudCode) -> None:
    data = requests.get(f"{gateway.url}/v1/models", timeout=10).json()["data"]
    owners = {entry["id"]: entry["owned_by"] for entry in data}
    assert owners["gpt-oss-120b-medium"] == "openai" and owners["claude-sonnet-4-6"] == "anthropic"
    assert "claude-opus-4-5-thinking" not in owners and "chat_20706" not in owners


def test_old_names_answer_with_the_model_that_served(gateway, fake: FakeCloudCode, client) -> None:
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5-20250929", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert raw.headers[MODEL_HEADER] == "claude-sonnet-4-6"
    assert raw.parse().model == "claude-sonnet-4-6"
    assert fake.generate_requests()[-1].body["model"] == "claude-sonnet-4-6"
    same = client.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert MODEL_HEADER not in same.headers


def test_a_rename_mid_run_is_followed_without_a_restart(gateway, fake: FakeCloudCode, client) -> None:
    gateway.gateway.listing.retry = 0.0
    ask = {"max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]}
    assert client.messages.create(model="claude-sonnet-4-6", **ask).model == "claude-sonnet-4-6"
    # Google retires 4.6 for 4.7 while the gateway runs.
    fake.models["claude-sonnet-4-7"] = fake.models.pop("claude-sonnet-4-6")
    fake.deprecated_model_ids["claude-sonnet-4-6"] = {"newModelId": "claude-sonnet-4-7"}
    answer = client.messages.create(model="claude-sonnet-4-6", **ask)
    assert answer.model == "claude-sonnet-4-7" and answer.content[0].text == "Echo: hi"
    models = [(r.body["model"], r.status) for r in fake.generate_requests()]
    assert models == [("claude-sonnet-4-6", 200), ("claude-sonnet-4-6", 404), ("claude-sonnet-4-7", 200)]
    # Claude Code's names follow too, and the next request needs no second look.
    assert client.messages.create(model="claude-sonnet-4-5-20250929", **ask).model == "claude-sonnet-4-7"
    assert fake.generate_requests()[-1].status == 200


def test_a_model_that_is_really_gone_is_a_404_in_the_callers_format(gateway, fake: FakeCloudCode, client) -> None:
    gateway.gateway.listing.retry = 0.0
    client.messages.create(model="gemini-3.1-flash-lite", max_tokens=20, messages=[{"role": "user", "content": "x"}])
    del fake.models["gemini-3.1-flash-lite"]
    with pytest.raises(anthropic.NotFoundError, match="gemini-3.1-flash-lite"):
        client.messages.create(model="gemini-3.1-flash-lite", max_tokens=20, messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("api", ["anthropic", "openai"])
def test_gpt_oss_tool_loop_on_both_apis(gateway, fake: FakeCloudCode, api: str) -> None:
    """An OpenAI-made model served by Google: call ids on every call, no thought signatures anywhere."""
    fake.enqueue(Reply(tool_calls=[("get_weather", {"city": "Paris"})]), Reply.text("Sunny."))
    if api == "anthropic":
        sdk = anthropic.Anthropic(base_url=gateway.url, api_key="k", max_retries=0)
        messages = [{"role": "user", "content": "weather in Paris?"}]
        first = sdk.messages.create(model="gpt-oss-120b-medium", max_tokens=100, tools=[WEATHER], messages=messages)
        call = next(block for block in first.content if block.type == "tool_use")
        messages += [{"role": "assistant", "content": [block.model_dump() for block in first.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "20C"}]}]
        final = sdk.messages.create(model="gpt-oss-120b-medium", max_tokens=100, tools=[WEATHER], messages=messages)
        text = final.content[0].text
    else:
        sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="k", max_retries=0)
        tools = [{"type": "function", "function": {"name": WEATHER["name"], "description": WEATHER["description"],
                                                   "parameters": WEATHER["input_schema"]}}]
        messages = [{"role": "user", "content": "weather in Paris?"}]
        first = sdk.chat.completions.create(model="gpt-oss-120b-medium", tools=tools, messages=messages)
        call = first.choices[0].message.tool_calls[0]
        messages += [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "20C"}]
        final = sdk.chat.completions.create(model="gpt-oss-120b-medium", tools=tools, messages=messages)
        text = final.choices[0].message.content
    assert text == "Sunny."
    replay = fake.generate_requests()[-1]
    assert replay.status == 200
    parts = [part for content in replay.body["request"]["contents"] for part in content["parts"]]
    assert all("thoughtSignature" not in part for part in parts)
    assert all(part["functionCall"]["id"] for part in parts if "functionCall" in part)
