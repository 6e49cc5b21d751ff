"""The LLM client against a loopback OpenAI-compatible server: answers, tool calls, and every way a call fails."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import pytest

from agents.config import LLMConfig
from agents.llm import LLMClient, LLMError, from_config, schema_errors

if TYPE_CHECKING:
    from tests.fakes.llm import FakeLLM


KEY = "sk-test-SECRET-do-not-leak-4242"
SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["brief", "cited"],
    "properties": {"brief": {"type": "string"}, "cited": {"type": "array", "items": {"type": "string"}}},
}


def client(fake: FakeLLM, *, timeout: float = 5.0, retries: int = 0) -> LLMClient:
    return LLMClient(LLMConfig(fake.url, KEY, "fake-model", timeout_seconds=timeout, max_retries=retries))


def ask(llm: LLMClient) -> dict:
    return asyncio.run(llm.complete_json("be brief", "what broke?", SCHEMA, name="incident_brief"))


def failure(llm: LLMClient) -> LLMError:
    with pytest.raises(LLMError) as info:
        ask(llm)
    return info.value


def test_a_structured_answer_comes_back_parsed_and_the_request_asks_for_the_schema(fake_llm: FakeLLM) -> None:
    fake_llm.script([fake_llm.json_completion({"brief": "orders broke", "cited": ["warehouse.shop.orders"]})])
    llm = client(fake_llm)

    assert ask(llm) == {"brief": "orders broke", "cited": ["warehouse.shop.orders"]}

    sent = fake_llm.requests[0]
    assert sent["model"] == "fake-model"
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "incident_brief"
    assert sent["response_format"]["json_schema"]["schema"] == SCHEMA
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert fake_llm.headers[0]["authorization"] == f"Bearer {KEY}"
    assert (llm.usage.prompt_tokens, llm.usage.completion_tokens, llm.usage.total) == (100, 20, 120)
    assert llm.last_call is not None and llm.last_call.error is None and llm.last_call.latency_seconds > 0


def test_usage_adds_up_over_calls_and_one_client_survives_separate_event_loops(fake_llm: FakeLLM) -> None:
    fake_llm.script(
        [fake_llm.json_completion({"brief": "a", "cited": []}), fake_llm.json_completion({"brief": "b", "cited": []})]
    )
    llm = client(fake_llm)
    ask(llm)
    ask(llm)  # a second asyncio.run: a new loop, so a new connection pool
    assert llm.usage.total == 240
    assert len(llm.calls) == 2


def test_an_answer_missing_a_key_or_with_a_wrong_type_is_a_schema_mismatch(fake_llm: FakeLLM) -> None:
    fake_llm.script([fake_llm.json_completion({"brief": "x"}), fake_llm.json_completion({"brief": 3, "cited": []})])
    llm = client(fake_llm)
    assert failure(llm).reason == "LLM answer does not match the schema: $: missing required key 'cited'"
    assert failure(llm).reason == "LLM answer does not match the schema: $.brief: expected string, got int"
    assert llm.last_call is not None and llm.last_call.error is not None


def test_content_that_is_not_json_and_a_body_that_is_not_json_both_fail_cleanly(fake_llm: FakeLLM) -> None:
    fake_llm.script([fake_llm.completion("Sure! Here is the JSON: {brief: ..."), {"raw": "not json"}])
    llm = client(fake_llm)
    assert failure(llm).reason == "LLM answer is not valid JSON"
    assert failure(llm).reason == "LLM sent a malformed response"


def test_a_server_error_is_retried_then_reported_with_the_attempt_count(fake_llm: FakeLLM) -> None:
    fake_llm.script([{"status": 500}, {"status": 500}])
    assert failure(client(fake_llm, retries=1)).reason == "LLM HTTP 500 after 2 attempts"
    assert len(fake_llm.requests) == 2


def test_a_server_error_then_a_good_answer_succeeds_on_the_retry(fake_llm: FakeLLM) -> None:
    fake_llm.script([{"status": 503}, fake_llm.json_completion({"brief": "ok", "cited": []})])
    assert ask(client(fake_llm, retries=1))["brief"] == "ok"


def test_a_slow_server_times_out_within_the_configured_timeout(fake_llm: FakeLLM) -> None:
    fake_llm.script([{"delay": 2}])
    started = time.monotonic()
    assert failure(client(fake_llm, timeout=0.5)).reason == "LLM timeout after 0.5 s"
    assert time.monotonic() - started < 1.8


def test_a_refusal_is_an_error(fake_llm: FakeLLM) -> None:
    fake_llm.script([fake_llm.completion(None, refusal="I can't help with that.")])
    assert failure(client(fake_llm)).reason == "LLM refused: I can't help with that."


def test_a_cut_off_answer_is_an_error(fake_llm: FakeLLM) -> None:
    fake_llm.script([fake_llm.completion('{"brief": "orders', finish_reason="length")])
    assert failure(client(fake_llm)).reason == "LLM answer was cut off (length limit)"


def test_a_tool_turn_returns_the_calls_then_a_final_turn_returns_the_text(fake_llm: FakeLLM) -> None:
    fake_llm.script(
        [
            fake_llm.tool_completion(
                fake_llm.tool_call("dna", {"fqn": "orders"}),
                fake_llm.tool_call("blast", "{not json", call_id="call_2"),
            ),
            fake_llm.completion("Because the amount column was renamed.", prompt_tokens=300, completion_tokens=40),
        ]
    )
    llm = client(fake_llm)
    tools = [{"type": "function", "function": {"name": "dna", "parameters": {"type": "object", "properties": {}}}}]
    messages = [{"role": "user", "content": "why?"}]

    first = asyncio.run(llm.chat_with_tools(messages, tools, max_tokens=256))
    assert not first.is_final
    assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [
        ("call_1", "dna", {"fqn": "orders"}),
        ("call_2", "blast", {}),
    ]
    assert first.tool_calls[1].arguments_error == "arguments are not valid JSON"
    assert first.message["tool_calls"][0]["function"]["arguments"] == '{"fqn": "orders"}'

    second = asyncio.run(llm.chat_with_tools([*messages, first.message], tools, max_tokens=256))
    assert second.is_final and second.text == "Because the amount column was renamed."
    assert second.usage.total == 340
    sent = fake_llm.requests[0]
    assert sent["tools"] == tools and sent["tool_choice"] == "auto" and sent["max_tokens"] == 256


def test_the_api_key_never_shows_in_errors_reprs_or_logs(fake_llm: FakeLLM, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake_llm.script(
        [
            {"status": 500, "body": {"error": {"message": f"bad key {KEY}"}}},
            {"status": 401, "body": {"error": {"message": f"Incorrect API key provided: {KEY}"}}},
            {"delay": 2},
            {"raw": "not json"},
            fake_llm.completion("nope"),
        ]
    )
    llm = client(fake_llm, timeout=0.5)
    reasons = [str(failure(llm)) for _ in range(5)]

    assert reasons[:2] == ["LLM HTTP 500", "LLM HTTP 401"]
    assert all(KEY not in r for r in reasons)
    assert KEY not in repr(llm)
    assert KEY not in caplog.text
    assert "llm call failed" in caplog.text


def test_from_config_gives_no_client_without_a_config() -> None:
    assert from_config(None) is None and LLMClient.from_config(None) is None
    llm = from_config(LLMConfig("http://127.0.0.1:1/v1", KEY, "m"))
    assert isinstance(llm, LLMClient) and llm.model == "m"


def test_the_small_schema_check_covers_nesting_enums_and_booleans() -> None:
    schema = {
        "type": "object",
        "required": ["kind", "items"],
        "properties": {
            "kind": {"enum": ["a", "b"]},
            "items": {"type": "array", "items": {"type": "integer"}},
            "flag": {"type": "boolean"},
        },
    }
    assert schema_errors({"kind": "a", "items": [1, 2], "flag": True}, schema) == []
    assert schema_errors({"kind": "c", "items": [1, True, "x"], "flag": 1}, schema) == [
        "$.kind: 'c' is not one of ['a', 'b']",
        "$.items[1]: expected integer, got bool",
        "$.items[2]: expected integer, got str",
        "$.flag: expected boolean, got int",
    ]
