"""The Responses API under gunicorn: a Claude thinking tool loop whose turns reach different gevent workers."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import openai
import pytest
import redis

from tests.fake_cloudcode import Reply
from tests.test_gunicorn import gunicorn_instance, upstream_env
from tests.test_responses_api import ENCRYPTED, THINKING, WEATHER, history

TURNS = 6


@pytest.fixture
def workers(fake, accounts_file) -> Iterator[str]:  # noqa: ANN001
    """Two workers; gunicorn.conf.py gives them one shared-state directory, as in production."""
    env = upstream_env(fake, accounts_file)
    env.pop("GATEWAY_SHARED_STATE_DIR", None)
    env.pop("GATEWAY_SECRET_KEY", None)
    with gunicorn_instance(env) as url:
        yield url


def forget_kept_thinking(path) -> None:  # noqa: ANN001
    """Drop the Claude thinking the signature registry keeps under call ids (``turn:`` keys of the state store)."""
    with sqlite3.connect(path) as db:
        assert db.execute("DELETE FROM state WHERE key LIKE 'turn:%'").rowcount > 0


def client(url: str) -> openai.OpenAI:
    """A new client per turn: a new connection, which either worker may accept."""
    return openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)


@pytest.mark.parametrize("mode", ["sealed reasoning", "previous_response_id"])
def test_claude_thinking_loop_on_any_worker(workers, fake, mode) -> None:  # noqa: ANN001
    ask = dict(model=THINKING, tools=[WEATHER], reasoning={"effort": "low", "summary": "auto"})
    if mode == "sealed reasoning":
        ask.update(store=False, include=ENCRYPTED)
    for n in range(TURNS):
        fake.enqueue(Reply(thinking=f"Call the tool, turn {n}.", tool_calls=[("get_weather", {"city": "Oslo"})]),
                     Reply(thinking="Done.", text="Snow."))
        question = {"role": "user", "content": f"Weather in Oslo? ({n})"}
        with client(workers) as first_client, first_client.responses.stream(input=[question], **ask) as stream:
            first = stream.get_final_response()
        call = next(item for item in first.output if item.type == "function_call")
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "snow"}
        with client(workers) as second_client:
            if mode == "sealed reasoning":
                second = second_client.responses.create(input=[question, *history(first, output)], **ask)
            else:
                second = second_client.responses.create(input=[output], previous_response_id=first.id, **ask)
        assert second.output_text == "Snow."
        parts = fake.generate_requests()[-1].body["request"]["contents"][1]["parts"]
        assert parts[0].get("thought") is True and parts[0]["text"] == f"Call the tool, turn {n}.", parts


def test_sealed_reasoning_opens_after_a_restart(fake, accounts_file, tmp_path) -> None:  # noqa: ANN001
    """The generated key is kept in the shared state: a restarted gateway opens what it sealed before. The thinking
    kept under call ids is removed between the runs, so only the sealed reasoning can give it back."""
    state = tmp_path / "state"
    env = {**upstream_env(fake, accounts_file), "GATEWAY_SHARED_STATE_DIR": str(state)}
    env.pop("GATEWAY_SECRET_KEY", None)
    ask = dict(model=THINKING, tools=[WEATHER], reasoning={"effort": "low"}, store=False, include=ENCRYPTED)
    fake.enqueue(Reply(thinking="Before the restart.", tool_calls=[("get_weather", {"city": "Oslo"})]),
                 Reply(thinking="Done.", text="Snow."))
    question = {"role": "user", "content": "Weather in Oslo?"}
    answers = []
    for run in range(2):
        with gunicorn_instance(env, workers=1) as url, client(url) as gateway:
            # the client closes before gunicorn stops, which waits for open connections
            if run == 0:
                answers.append(gateway.responses.create(input=[question], **ask))
            else:
                call = next(item for item in answers[0].output if item.type == "function_call")
                output = {"type": "function_call_output", "call_id": call.call_id, "output": "snow"}
                answers.append(gateway.responses.create(input=[question, *history(answers[0], output)], **ask))
        if run == 0:
            forget_kept_thinking(state / "state.sqlite3")
    assert answers[1].output_text == "Snow."
    parts = fake.generate_requests()[-1].body["request"]["contents"][1]["parts"]
    assert parts[0].get("thought") is True and parts[0]["text"] == "Before the restart.", parts


@pytest.mark.parametrize("mode", ["sealed reasoning", "previous_response_id"])
def test_claude_thinking_loop_across_two_instances_on_one_redis(fake, accounts_file, redis_db, mode) -> None:  # noqa: ANN001
    """Several instances: stored responses and the generated sealing key are in Redis, so the next turn may reach
    the other instance (each has its own workers and local state directory)."""
    from tests.test_scaleout import instances

    env = {**upstream_env(fake, accounts_file), "GATEWAY_REDIS_URL": redis_db}
    env.pop("GATEWAY_SECRET_KEY", None)
    ask = dict(model=THINKING, tools=[WEATHER], reasoning={"effort": "low"})
    if mode == "sealed reasoning":
        ask.update(store=False, include=ENCRYPTED)
    fake.enqueue(Reply(thinking="Across instances.", tool_calls=[("get_weather", {"city": "Oslo"})]),
                 Reply(thinking="Done.", text="Snow."))
    question = {"role": "user", "content": "Weather in Oslo?"}
    with instances(env) as (first_url, second_url):
        with client(first_url) as first_client:
            first = first_client.responses.create(input=[question], **ask)
        call = next(item for item in first.output if item.type == "function_call")
        output = {"type": "function_call_output", "call_id": call.call_id, "output": "snow"}
        with client(second_url) as second_client:
            if mode == "sealed reasoning":
                second = second_client.responses.create(input=[question, *history(first, output)], **ask)
            else:
                second = second_client.responses.create(input=[output], previous_response_id=first.id, **ask)
                assert second_client.responses.retrieve(first.id).id == first.id
    assert second.output_text == "Snow."
    parts = fake.generate_requests()[-1].body["request"]["contents"][1]["parts"]
    assert parts[0].get("thought") is True and parts[0]["text"] == "Across instances.", parts
    shared = redis.Redis.from_url(redis_db)
    assert shared.get("gateway:secret:sealing-key") and shared.ttl("gateway:secret:sealing-key") == -1
    assert bool(shared.get(f"gateway:response:{first.id}")) is (mode == "previous_response_id")
