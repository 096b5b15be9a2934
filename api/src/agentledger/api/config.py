"""API settings: ``AGENTLEDGER_API_*`` environment variables, read lazily (never at import)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentledger.settings import get_settings


class ApiSettings(BaseSettings):
    """Limits and paths of the API service. Kafka and the home folder come from
    ``agentledger.settings`` (``AGENTLEDGER_KAFKA_BOOTSTRAP``, ``AGENTLEDGER_HOME``...)."""

    model_config = SettingsConfigDict(env_prefix="AGENTLEDGER_API_", extra="ignore")

    keys_path: Path | None = Field(
        default=None, description="SQLite file of hashed API keys; default <home>/api_keys.sqlite."
    )
    max_body_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, description="Larger bodies get 413.")
    max_events_per_request: int = Field(default=5000, ge=1)
    ingest_rate_per_s: float = Field(default=50_000.0, gt=0, description="Events/s per key (429 above).")
    ingest_burst: int = Field(default=100_000, ge=1, description="Token bucket size, events.")
    produce_timeout_s: float = Field(default=10.0, gt=0)
    session_secret: SecretStr | None = Field(
        default=None,
        description="Signs dashboard sessions (give every API process the same one); "
        "default: generated once into <home>/ui_session.secret.",
    )
    session_ttl_s: int = Field(default=8 * 3600, ge=60, description="Dashboard sign-in lifetime.")
    approvals_keep_s: float = Field(
        default=300.0,
        gt=0,
        description="A decided approval stays on the tools topic this long (for Guards that read it "
        "late), then is deleted (a tombstone); a pending one is deleted this long after its timeout.",
    )
    cookie_secure: bool = Field(
        default=False, description="Mark dashboard cookies Secure (always done for https requests)."
    )

    def resolved_keys_path(self) -> Path:
        return self.keys_path or get_settings().home / "api_keys.sqlite"


@lru_cache(maxsize=1)
def get_api_settings() -> ApiSettings:
    return ApiSettings()
