"""The shared policies YAML: ``policies:`` and ``loops:`` are ours; other top-level keys
(``alerts:``, ``providers:``, ``quality:``, ``canary:``) belong to the health worker and are
ignored here."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentledger.errors import ConfigError
from agentledger.events import Policy
from agentledger.wire import describe


class LoopSettings(BaseModel):
    """Runaway-loop detection per trace (defaults a user can start with)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    repeat_calls: int = Field(default=5, ge=2, description="Same tool + same args_hash this many times ...")
    repeat_window_s: float = Field(default=60.0, gt=0, description="... within this many seconds: kill.")
    max_llm_calls_per_min: int = Field(default=120, ge=1, description="LLM calls of one trace per minute.")
    max_tokens_per_min: int = Field(default=2_000_000, ge=1, description="Tokens of one trace per minute.")
    no_progress_usd: Decimal = Field(
        default=Decimal(5), gt=0, description="Spend since the last new output (new tool args, ok span) ..."
    )
    no_progress_calls: int = Field(
        default=25, ge=1, description="... and at least this many LLM calls: kill."
    )
    kill_ttl_s: float = Field(default=3600.0, gt=0, description="A loop kill expires after this long.")


def _load_doc(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: expected a mapping with `policies:` (and optionally `loops:`)")
    return doc


def parse_policies(raw: Any, where: str = "policies") -> list[Policy]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: expected a list of policies")
    out: list[Policy] = []
    for i, item in enumerate(raw):
        try:
            out.append(Policy.model_validate(item))
        except ValidationError as exc:
            raise ConfigError(f"{where}[{i}]: {describe(exc)}") from None
    ids = [p.policy_id for p in out]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"{where}: duplicate policy_id {dupes}")
    return out


def parse_loops(raw: Any, where: str = "loops") -> LoopSettings:
    try:
        return LoopSettings.model_validate(raw or {})
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe(exc)}") from None


def load_policy_file(path: str | Path) -> tuple[list[Policy], LoopSettings]:
    """Policies and loop settings from the shared YAML (unknown top-level keys ignored)."""
    doc = _load_doc(path)
    return parse_policies(doc.get("policies"), f"{path}: policies"), parse_loops(
        doc.get("loops"), f"{path}: loops"
    )
