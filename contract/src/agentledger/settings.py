"""Settings, read lazily from ``AGENTLEDGER_*`` environment variables (never at import)."""

from __future__ import annotations

import json
import os
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
    guard_fail_open: bool = Field(
        default=True,
        description="When the Guard has not read the control topic (yet): allow (True) or refuse.",
    )
    guard_ready_timeout_s: float = Field(
        default=5.0, description="How long a check waits, from the Guard's start, for the first read."
    )
    guard_lost_after_s: float = Field(
        default=10.0,
        gt=0,
        description="A Guard that has read the control topic and then gets no answer from its broker "
        "for this long stops trusting its state: checks fail open or closed as before the first read.",
    )
    worker_probe: str | None = Field(
        default=None,
        description="Measurement only: a file where `agentledger worker` writes its event-loop lag, "
        "run lengths and GC pauses at exit (off when unset; costs some worker CPU).",
    )

    @property
    def kafka_home(self) -> Path:
        """Where ``agentledger kafka up`` keeps its cluster (``cluster.json``)."""
        return self.home / "kafka"

    def local_kafka_bootstrap(self) -> str | None:
        """The bootstrap of the cluster ``agentledger kafka up`` started, if it is running."""
        return running_local_bootstrap(self.kafka_home / "cluster.json")

    def resolve_bootstrap(self, explicit: str | None = None) -> str | None:
        """``explicit``, else ``AGENTLEDGER_KAFKA_BOOTSTRAP``, else the running local cluster."""
        return explicit or self.kafka_bootstrap or self.local_kafka_bootstrap()

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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not); the launcher uses it too."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not a broker
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def running_local_bootstrap(state_file: Path) -> str | None:
    """Read the launcher's state file (format owned by ``agentledger.localkafka``) without
    importing the launcher: the client package must not need it. None unless a node recorded
    there is alive (the same rule as the CLI)."""
    try:
        nodes = json.loads(state_file.read_text())["nodes"]
        if any(n.get("pid") and pid_alive(int(n["pid"])) for n in nodes):
            return ",".join(f"127.0.0.1:{int(n['port'])}" for n in nodes)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (cached). Tests call ``get_settings.cache_clear()``."""
    return Settings()
