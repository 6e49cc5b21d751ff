"""DNA Bot settings, read once from the environment (and `.env`) with pydantic-settings."""

from __future__ import annotations

import os
from datetime import timedelta
from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.config import AgentConfig, LLMConfig
from agents.mcp_config import MCPOptions


class Settings(BaseSettings):
    """Every knob of DNA Bot; nothing else in the code base reads `os.environ`."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    openmetadata_url: str | None = Field(default=None, validation_alias="OPENMETADATA_URL")
    openmetadata_token: SecretStr | None = Field(default=None, validation_alias="OPENMETADATA_TOKEN")
    om_timeout_seconds: float = Field(default=30.0, validation_alias="DNABOT_OM_TIMEOUT_SECONDS")
    om_concurrency: int = Field(default=8, ge=1, le=128, validation_alias="DNABOT_OM_CONCURRENCY")
    om_page_size: int = Field(default=500, ge=100, le=1000, validation_alias="DNABOT_OM_PAGE_SIZE")
    om_max_retries: int = Field(default=5, ge=0, le=20, validation_alias="DNABOT_OM_MAX_RETRIES")
    full_refresh_seconds: int = Field(default=6 * 3600, ge=0, validation_alias="DNABOT_FULL_REFRESH_SECONDS")
    # 1.x records no event for a lineage edit: each sync re-reads a slice, so all lineage is re-read in this window
    lineage_sweep_seconds: float = Field(default=3600, ge=0, validation_alias="DNABOT_LINEAGE_SWEEP_SECONDS")
    lineage_sweep_min: int = Field(default=200, ge=0, validation_alias="DNABOT_LINEAGE_SWEEP_MIN")
    # 1.7+: one search document costs this many per-entity lineage reads (0: always search; negative: never)
    lineage_search_cost: float = Field(default=0.6, validation_alias="DNABOT_LINEAGE_SEARCH_COST")
    trust_drop_threshold: int = Field(default=15, ge=1, le=100, validation_alias="DNABOT_TRUST_DROP_THRESHOLD")
    incident_window_days: int = Field(default=30, ge=1, le=365, validation_alias="DNABOT_INCIDENT_WINDOW_DAYS")
    group_window_hours: float = Field(default=24.0, gt=0, le=24 * 30, validation_alias="DNABOT_GROUP_WINDOW_HOURS")
    cause_window_days: float = Field(default=7.0, gt=0, le=90, validation_alias="DNABOT_CAUSE_WINDOW_DAYS")

    # Optional words and outside context: without them DNA Bot uses rules and templates only.
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    llm_model: str = Field(default="gpt-4o-mini", validation_alias="DNABOT_LLM_MODEL")
    llm_timeout_seconds: float = Field(default=20.0, gt=0, le=300, validation_alias="DNABOT_LLM_TIMEOUT_SECONDS")
    mcp_config: str | None = Field(default=None, validation_alias="DNABOT_MCP_CONFIG")
    tavily_api_key: SecretStr | None = Field(default=None, validation_alias="TAVILY_API_KEY")
    brightdata_api_token: SecretStr | None = Field(default=None, validation_alias="BRIGHTDATA_API_TOKEN")
    mcp_timeout_seconds: float = Field(default=15.0, gt=0, le=120, validation_alias="DNABOT_MCP_TIMEOUT_SECONDS")
    # The MCP servers are installed ahead of time (`make mcp`) and started once per process (agents.mcp_runtime).
    mcp_servers_dir: str | None = Field(default=None, validation_alias="DNABOT_MCP_SERVERS_DIR")
    mcp_start_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, validation_alias="DNABOT_MCP_START_TIMEOUT_SECONDS"
    )
    # The most time one sync (its incident pipeline) or one question waits on outside context, all calls together
    mcp_sync_budget_seconds: float = Field(
        default=60.0, ge=0, le=3600, validation_alias="DNABOT_MCP_SYNC_BUDGET_SECONDS"
    )
    mcp_question_budget_seconds: float = Field(
        default=4.0, ge=0, le=600, validation_alias="DNABOT_MCP_QUESTION_BUDGET_SECONDS"
    )
    # Passed on to every stdio MCP server (the MCP client passes only HOME, PATH, … by itself), with any further
    # variables named in DNABOT_MCP_PASS_ENV (commas).
    https_proxy: str | None = Field(default=None, validation_alias=AliasChoices("HTTPS_PROXY", "https_proxy"))
    http_proxy: str | None = Field(default=None, validation_alias=AliasChoices("HTTP_PROXY", "http_proxy"))
    no_proxy: str | None = Field(default=None, validation_alias=AliasChoices("NO_PROXY", "no_proxy"))
    node_extra_ca_certs: str | None = Field(default=None, validation_alias="NODE_EXTRA_CA_CERTS")
    ssl_cert_file: str | None = Field(default=None, validation_alias="SSL_CERT_FILE")
    mcp_pass_env: str = Field(default="", validation_alias="DNABOT_MCP_PASS_ENV")

    # Slack: SLACK_BOT_TOKEN plus SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode).
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_api_url: str | None = Field(default=None, validation_alias="SLACK_API_URL")  # tests: a loopback API
    channel: str | None = Field(default=None, validation_alias="DNABOT_CHANNEL")  # default incident channel
    routing_config: str | None = Field(default=None, validation_alias="DNABOT_CONFIG")  # YAML routing rules
    admins: str = Field(default="", validation_alias="DNABOT_ADMINS")  # Slack user ids or a user group, commas
    sync_interval_seconds: float = Field(default=900, ge=1, validation_alias="DNABOT_SYNC_INTERVAL_SECONDS")
    digest_hour_utc: int = Field(default=9, ge=0, le=23, validation_alias="DNABOT_DIGEST_HOUR_UTC")
    openmetadata_ui_url: str | None = Field(default=None, validation_alias="OPENMETADATA_UI_URL")  # asset links

    # production: several replicas on one PostgreSQL (issue 5)
    webhook_secret: SecretStr | None = Field(default=None, validation_alias="OPENMETADATA_WEBHOOK_SECRET")
    replica_id: str | None = Field(default=None, validation_alias="DNABOT_REPLICA_ID")  # default host:pid
    outbox_poll_seconds: float = Field(default=2.0, gt=0, le=300, validation_alias="DNABOT_OUTBOX_POLL_SECONDS")
    outbox_claim_seconds: float = Field(default=30.0, ge=1, le=3600, validation_alias="DNABOT_OUTBOX_CLAIM_SECONDS")
    outbox_max_attempts: int = Field(default=10, ge=1, le=100, validation_alias="DNABOT_OUTBOX_MAX_ATTEMPTS")
    outbox_max_backoff_seconds: float = Field(
        default=300.0, ge=1, le=86400, validation_alias="DNABOT_OUTBOX_MAX_BACKOFF_SECONDS"
    )
    dedup_ttl_seconds: float = Field(default=3600.0, ge=1, validation_alias="DNABOT_DEDUP_TTL_SECONDS")
    # Slow answers (why, blast, sync…) run on a pool of their own, so acks never wait behind them (bot.core.answers)
    answer_workers: int = Field(default=8, ge=1, le=128, validation_alias="DNABOT_ANSWER_WORKERS")
    answer_queue: int = Field(default=32, ge=0, le=10_000, validation_alias="DNABOT_ANSWER_QUEUE")
    answer_per_user: int = Field(default=2, ge=1, le=100, validation_alias="DNABOT_ANSWER_PER_USER")
    answer_per_channel: int = Field(default=4, ge=1, le=1000, validation_alias="DNABOT_ANSWER_PER_CHANNEL")
    stale_after_seconds: float | None = Field(default=None, gt=0, validation_alias="DNABOT_STALE_AFTER_SECONDS")
    log_format: str = Field(default="text", pattern="^(text|json)$", validation_alias="DNABOT_LOG_FORMAT")
    log_level: str = Field(default="INFO", validation_alias="DNABOT_LOG_LEVEL")
    # HTTP mode: keep idle connections longer than the load balancer does (AWS ALB: 60 s), or POSTs race a close
    http_keepalive_seconds: int = Field(default=75, ge=1, le=3600, validation_alias="DNABOT_HTTP_KEEPALIVE_SECONDS")
    # HTTP mode: a connection whose request (headers and body) is not in within this is closed (slow-loris)
    http_read_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, validation_alias="DNABOT_HTTP_READ_TIMEOUT_SECONDS"
    )
    # on SIGTERM: how long deliveries under way may take to finish before their claims are handed back anyway
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=300, validation_alias="DNABOT_SHUTDOWN_GRACE_SECONDS")

    @property
    def stale_after(self) -> float:
        """Data older than this is called stale in answers: DNABOT_STALE_AFTER_SECONDS, else 3 sync intervals."""
        return self.stale_after_seconds or 3 * self.sync_interval_seconds


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value else None


def agent_config(settings: Settings) -> AgentConfig:
    """The agents' configuration (an LLM only when OPENAI_API_KEY or OPENAI_BASE_URL is set)."""
    llm = None
    if settings.openai_api_key or settings.openai_base_url:
        llm = LLMConfig(
            base_url=settings.openai_base_url,
            api_key=_secret(settings.openai_api_key) or "not-needed",
            model=settings.llm_model,
            timeout_seconds=settings.llm_timeout_seconds,
        )
    return AgentConfig(
        group_window=timedelta(hours=settings.group_window_hours),
        cause_window=timedelta(days=settings.cause_window_days),
        trust_drop_threshold=settings.trust_drop_threshold,
        llm=llm,
        mcp_config_path=settings.mcp_config,
        tavily_api_key=_secret(settings.tavily_api_key),
        brightdata_api_token=_secret(settings.brightdata_api_token),
        mcp_call_timeout_seconds=settings.mcp_timeout_seconds,
    )


def mcp_options(settings: Settings, env: dict[str, str] | None = None) -> MCPOptions:
    """How the MCP servers run: install folder, start-up timeout, budgets, and the environment passed on to them
    (proxy and CA variables, then those named in DNABOT_MCP_PASS_ENV, read from `env` or the process)."""
    passed = {
        "HTTPS_PROXY": settings.https_proxy,
        "HTTP_PROXY": settings.http_proxy,
        "NO_PROXY": settings.no_proxy,
        "NODE_EXTRA_CA_CERTS": settings.node_extra_ca_certs,
        "SSL_CERT_FILE": settings.ssl_cert_file,
    }
    source = process_env() if env is None else env
    for name in filter(None, (n.strip() for n in settings.mcp_pass_env.split(","))):
        passed[name] = source.get(name)
    return MCPOptions(
        servers_dir=settings.mcp_servers_dir,
        start_timeout_seconds=settings.mcp_start_timeout_seconds,
        sync_budget_seconds=settings.mcp_sync_budget_seconds,
        question_budget_seconds=settings.mcp_question_budget_seconds,
        env={name: value for name, value in passed.items() if value},
    )


def process_env() -> dict[str, str]:
    """The process environment, for `${VAR}` expansion in the MCP server config (read here, in one place)."""
    return dict(os.environ)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings object (read once)."""
    return Settings()
