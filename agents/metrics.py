"""Prometheus metrics of the agents' outside calls: LLM latency and failures, MCP tool latency, failures, refusals.

They live in the process-wide `prometheus_client` registry, so `bot.core.metrics.render` exposes them with the rest.
Label values are short fixed words (never an error text, which could be long, varied or carry a secret).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

LLM_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
MCP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0)

LLM_REQUEST_SECONDS = Histogram(
    "dnabot_llm_request_seconds",
    "Time of one LLM chat completion request, answered or failed (SDK retries included).",
    buckets=LLM_BUCKETS,
)
LLM_FAILURES = Counter(
    "dnabot_llm_failures",
    "LLM requests that failed, by reason (timeout, unreachable, http_<status>, malformed, refused, cut_off, "
    "invalid_json, schema_mismatch, cancelled, error).",
    ["reason"],
)
MCP_CALL_SECONDS = Histogram(
    "dnabot_mcp_call_seconds",
    "Time of one MCP tool call, answered or failed.",
    ["tool"],
    buckets=MCP_BUCKETS,
)
MCP_FAILURES = Counter(
    "dnabot_mcp_failures",
    "MCP tool calls that failed, by tool and reason (unavailable, timeout, mcp_error, transport, tool_error, "
    "cancelled).",
    ["tool", "reason"],
)

TOOL_REFUSALS = Counter(
    "dnabot_tool_refusals",
    "Tool calls the why-agent refused to make for the model, by tool and reason (not_allowed, url_not_from_search, "
    "untrusted_argument, malformed_arguments).",
    ["tool", "reason"],
)


def llm_failure_reason(exc: BaseException) -> str:
    """A fixed word for an exception out of the OpenAI SDK (the label of `dnabot_llm_failures_total`)."""
    import openai  # only reached after a request, so the SDK is loaded already

    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "unreachable"
    if isinstance(exc, openai.APIStatusError):
        return f"http_{exc.status_code}"
    if isinstance(exc, (ValueError, LookupError, AttributeError, TypeError)):
        return "malformed"
    return "error"


def llm_failed(reason: str) -> None:
    """Count one failed LLM request."""
    LLM_FAILURES.labels(reason=reason).inc()


def mcp_failed(tool: str, reason: str) -> None:
    """Count one failed MCP tool call."""
    MCP_FAILURES.labels(tool=tool, reason=reason).inc()


def tool_refused(tool: str, reason: str) -> None:
    """Count one tool call refused for the model (`tool` must be a known name or "other": labels stay few)."""
    TOOL_REFUSALS.labels(tool=tool, reason=reason).inc()
