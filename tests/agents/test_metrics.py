"""LLM and MCP calls show up in the metrics: each request's time, and each failure by a short reason."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY

from agents.config import LLMConfig
from agents.llm import LLMClient, LLMError
from agents.mcp import MCPToolbox
from tests.fakes.mcp_servers import stdio_spec

if TYPE_CHECKING:
    from tests.fakes.llm import FakeLLM

SCHEMA = {"type": "object", "required": ["brief"], "properties": {"brief": {"type": "string"}}}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def snapshot(*keys: tuple[str, dict[str, str]]) -> dict[str, float]:
    return {f"{name}{sorted(labels.items())}": sample(name, **labels) for name, labels in keys}


def test_llm_requests_are_timed_and_failures_counted_by_reason(fake_llm: FakeLLM) -> None:
    keys = [
        ("dnabot_llm_request_seconds_count", {}),
        ("dnabot_llm_failures_total", {"reason": "http_500"}),
        ("dnabot_llm_failures_total", {"reason": "malformed"}),
        ("dnabot_llm_failures_total", {"reason": "schema_mismatch"}),
        ("dnabot_llm_failures_total", {"reason": "timeout"}),
    ]
    before = snapshot(*keys)
    fake_llm.script(
        [
            fake_llm.json_completion({"brief": "orders broke"}),
            {"status": 500},
            {"raw": "this is not json"},
            fake_llm.json_completion({"summary": "wrong shape"}),
            {"delay": 3},
        ]
    )
    llm = LLMClient(LLMConfig(fake_llm.url, "sk-test", "fake-model", timeout_seconds=0.5, max_retries=0))

    async def five_calls() -> list[Any]:
        outcomes: list[Any] = []
        for _ in range(5):
            try:
                outcomes.append(await llm.complete_json("be brief", "what broke?", SCHEMA, name="brief"))
            except LLMError as exc:
                outcomes.append(exc.reason)
        return outcomes

    outcomes = asyncio.run(five_calls())
    after = snapshot(*keys)
    moved = [after[k] - before[k] for k in after]

    assert outcomes[0] == {"brief": "orders broke"} and all(isinstance(o, str) for o in outcomes[1:])
    assert moved == [5, 1, 1, 1, 1]
    assert sample("dnabot_llm_request_seconds_sum") > 0


def test_mcp_calls_are_timed_per_tool_and_a_hang_or_a_missing_tool_counted() -> None:
    keys = [
        ("dnabot_mcp_call_seconds_count", {"tool": "tavily_search"}),
        ("dnabot_mcp_call_seconds_count", {"tool": "tavily_extract"}),
        ("dnabot_mcp_failures_total", {"tool": "tavily_search", "reason": "timeout"}),
        ("dnabot_mcp_failures_total", {"tool": "scrape_as_markdown", "reason": "unavailable"}),
        ("dnabot_mcp_failures_total", {"tool": "tavily_extract", "reason": "timeout"}),
    ]
    before = snapshot(*keys)
    waited_before = sample("dnabot_mcp_call_seconds_sum", tool="tavily_search")
    allowed = {"tavily_search", "tavily_extract", "scrape_as_markdown"}

    async def scenario() -> list[Any]:
        async with MCPToolbox([stdio_spec("slow", "hang")], allowed_tools=allowed, call_timeout=1.0) as tb:
            return [
                await tb.call("tavily_search", {"query": "status"}),  # hangs: timed out
                await tb.call("tavily_extract", {"urls": ["https://example.com/a"]}),  # answers
                await tb.call("scrape_as_markdown", {"url": "https://example.com/a"}),  # nobody serves it
            ]

    hung, extracted, missing = asyncio.run(scenario())
    after = snapshot(*keys)

    assert not hung.ok and extracted.ok and not missing.ok
    assert [after[k] - before[k] for k in after] == [1, 1, 1, 1, 0]
    assert 0.95 <= sample("dnabot_mcp_call_seconds_sum", tool="tavily_search") - waited_before < 3
