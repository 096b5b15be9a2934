"""Settings, read lazily from ``AGENTLEDGER_*`` environment variables (never at import)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".agentledger"


class Settings(BaseSettings):
    """Every setting has an ``AGENTLEDGER_`` environment variable of the same name."""

    model_config = SettingsConfigDict(env_prefix="AGENTLEDGER_", extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None,
        description="host:port[,host:port] of an existing cluster; when set nothing is launched.",
    )
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    topic_prefix: str = Field(default="", description="Prefix for every topic name.")
    home: Path = Field(default_factory=_default_home, description="State, caches, local data.")
    kafka_version: str = "4.1.1"
    tenant: str = "default"
    agent: str = "agent"
    agent_version: str | None = None
    api_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    warehouse_uri: str | None = Field(default=None, description="Parquet root (path or URI).")

    @property
    def warehouse_root(self) -> str:
        return self.warehouse_uri or str(self.home / "warehouse")

    def kafka_client_options(self) -> dict[str, object]:
        """Security options passed through to every aiokafka client (SASL/TLS)."""
        opts: dict[str, object] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_sasl_mechanism:
            opts["sasl_mechanism"] = self.kafka_sasl_mechanism
            opts["sasl_plain_username"] = self.kafka_sasl_username
            opts["sasl_plain_password"] = self.kafka_sasl_password
        if self.kafka_security_protocol.endswith("SSL"):
            import ssl

            opts["ssl_context"] = ssl.create_default_context(cafile=self.kafka_ssl_cafile)
        return opts


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (cached). Tests call ``get_settings.cache_clear()``."""
    return Settings()
