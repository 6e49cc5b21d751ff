"""DNA Bot settings, read once from the environment (and `.env`) with pydantic-settings."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    trust_drop_threshold: int = Field(default=15, ge=1, le=100, validation_alias="DNABOT_TRUST_DROP_THRESHOLD")
    incident_window_days: int = Field(default=30, ge=1, le=365, validation_alias="DNABOT_INCIDENT_WINDOW_DAYS")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings object (read once)."""
    return Settings()
