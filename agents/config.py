"""Agent configuration: budgets, windows and the optional LLM and MCP settings (built once by the bot)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True)
class LLMConfig:
    """An OpenAI-compatible endpoint; `None` config means "no LLM": templates and rules only."""

    base_url: str | None
    api_key: str = field(repr=False)  # secrets never reach a log line through a repr
    model: str = "gpt-4o-mini"
    timeout_seconds: float = 20.0
    max_retries: int = 1


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agents need to know, passed in (agents never read the environment)."""

    group_window: timedelta = timedelta(hours=24)
    cause_window: timedelta = timedelta(days=7)
    trust_drop_threshold: int = 15
    llm: LLMConfig | None = None
    mcp_config_path: str | None = None
    tavily_api_key: str | None = field(default=None, repr=False)
    brightdata_api_token: str | None = field(default=None, repr=False)
    mcp_call_timeout_seconds: float = 15.0
    mcp_allowed_tools: frozenset[str] = field(
        default_factory=lambda: frozenset({"tavily_search", "tavily_extract", "search_engine", "scrape_as_markdown"})
    )
    why_max_steps: int = 6
    why_max_seconds: float = 45.0
    why_max_tokens: int = 12_000
    web_text_max_chars: int = 4_000
