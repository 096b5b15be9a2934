"""The event contract: every layer imports these models and nobody redefines them.

Versioned by ``v`` (currently 1). Field names follow the OpenTelemetry GenAI semantic
conventions where one exists. Times are timezone-aware UTC; money is ``Decimal``.
``event_id`` is the dedupe key everywhere (streams, warehouse, API).

Token counting rules (normalised once, at the edge, by the collectors and the OTLP mapping):
``input_tokens`` *includes* cached reads and cache writes (as OpenTelemetry defines it) and
``output_tokens`` *includes* reasoning tokens. The price step never guesses.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    model_validator,
)

SCHEMA_VERSION = 1

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _trace_id(value: str) -> str:
    value = value.lower()
    if not _HEX32.match(value) or value == "0" * 32:
        raise ValueError("must be 32 lowercase hex characters, not all zero (W3C trace-id)")
    return value


def _span_id(value: str) -> str:
    value = value.lower()
    if not _HEX16.match(value) or value == "0" * 16:
        raise ValueError("must be 16 lowercase hex characters, not all zero (W3C span-id)")
    return value


MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_KEY_CHARS = 128
MAX_ATTRIBUTE_VALUE_CHARS = 4096
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""The range of an integer attribute (OpenTelemetry's int64; the warehouse reads them as JSON)."""
# Control (Cc: newline, tab, NUL...), format (Cf: zero-width, bidi overrides, BOM), line and
# paragraph separators, surrogates: invisible or reordering in a name shown on a dashboard,
# a key or a log line, so names with them are refused rather than silently kept.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})


def clean_name(value: object) -> object:
    """NFKC-normalise a name and refuse control and format characters (a ``ValueError``
    naming the character and its position). Non-strings pass through to type validation."""
    if not isinstance(value, str):
        return value
    if value.isascii() and value.isprintable():  # the common case: nothing to normalise
        return value
    value = unicodedata.normalize("NFKC", value)
    for i, char in enumerate(value):
        if unicodedata.category(char) in _HIDDEN_CATEGORIES:
            label = unicodedata.name(char, "control character")
            raise ValueError(
                f"must not contain control or format characters: U+{ord(char):04X} {label} at position {i}"
            )
    return value


def _attribute_value(value: object) -> object:
    if type(value) is int and not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(
            "attribute integers are 64-bit, as in OpenTelemetry "
            f"({INT64_MIN} to {INT64_MAX}); send a larger number as a string"
        )
    if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_VALUE_CHARS:
        raise ValueError(
            f"attribute values are at most {MAX_ATTRIBUTE_VALUE_CHARS} characters (got {len(value)}); "
            "attributes are small labels, never message content"
        )
    return value


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
"""A timezone-aware datetime, converted to UTC. Naive datetimes are rejected."""
TraceId = Annotated[str, AfterValidator(_trace_id)]
SpanId = Annotated[str, AfterValidator(_span_id)]
Name = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[^/\s][^/]*$"), BeforeValidator(clean_name)
]
"""A tenant/agent/workflow name: 1-128 characters, NFKC-normalised, no ``/`` (it separates
the Kafka key), no control or format characters."""
Text = Annotated[str, Field(min_length=1, max_length=256)]
TokenCount = Annotated[int, Field(ge=0, le=100_000_000, strict=True)]
"""A token count: an integer (``true`` or ``"12"`` is not a count), 0 to 100 million."""
Usd = Annotated[Decimal, Field(max_digits=28, decimal_places=12)]
AttributeValue = str | int | float | bool
AttributeKey = Annotated[
    str, Field(min_length=1, max_length=MAX_ATTRIBUTE_KEY_CHARS), BeforeValidator(clean_name)
]
BoundedAttributeValue = Annotated[AttributeValue, AfterValidator(_attribute_value)]


# Provider, model, tool and version names: like ``Name`` but ``/`` is allowed.
ProviderName = Annotated[str, Field(max_length=64), BeforeValidator(clean_name)]
ModelName = Annotated[str, Field(max_length=128), BeforeValidator(clean_name)]
ToolName = Annotated[str, Field(min_length=1, max_length=128), BeforeValidator(clean_name)]
Version = Annotated[str, Field(max_length=64), BeforeValidator(clean_name)]


def _any(value: object) -> bool:
    return value == "*"


def _unset(value: object) -> bool:
    return value is None


class SpanKind(StrEnum):
    AGENT = "agent"
    LLM = "llm"
    TOOL = "tool"
    WORKFLOW = "workflow"


class SpanStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    UNSET = "unset"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


def record_key(tenant: str, agent: str) -> str:
    """The Kafka key of an agent's events and of their envelopes: ``tenant/agent`` keeps one
    agent's events in order on one partition. The one place it is spelled."""
    return f"{tenant}/{agent}"


class BaseEvent(_Model):
    """Fields common to every event."""

    v: Literal[1] = Field(default=1, description="Contract version.")
    event_id: str = Field(
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_\-:.]+$",
        description="Unique id; the dedupe key in every consumer.",
    )
    ts: UtcDatetime = Field(description="Event time (UTC). For spans, the end time.")
    tenant: Name = Field(
        description=(
            "Billing tenant (customer, team or project). Tenant, agent, workflow, provider, "
            "model, tool and version names are NFKC-normalised; control and format characters "
            "(newline, tab, zero-width, bidi overrides) are refused; `/` only in provider, model, tool."
        )
    )
    agent: Name = Field(description="Logical agent name, e.g. `planner`.")
    agent_version: Version | None = Field(
        default=None, description="Deployed version of the agent (for canaries/rollback)."
    )
    workflow: Name | None = Field(default=None, description="Workflow / pipeline name.")
    trace_id: TraceId = Field(description="W3C trace id: one multi-agent run.")
    span_id: SpanId = Field(description="W3C span id of the span this event belongs to.")
    parent_span_id: SpanId | None = Field(default=None, description="Parent span, if any.")
    attributes: dict[AttributeKey, BoundedAttributeValue] = Field(
        default_factory=dict,
        max_length=MAX_ATTRIBUTES,
        description=(
            f"Small map of extra attributes (at most {MAX_ATTRIBUTES}; keys up to "
            f"{MAX_ATTRIBUTE_KEY_CHARS} characters, string values up to {MAX_ATTRIBUTE_VALUE_CHARS}, "
            "integers 64-bit). "
            "Never message content."
        ),
    )

    @property
    def key(self) -> str:
        """The Kafka key: ``tenant/agent`` keeps one agent's events in order."""
        return record_key(self.tenant, self.agent)


class SpanEvent(BaseEvent):
    """A finished unit of work: an agent turn, an LLM call, a tool call, a workflow."""

    type: Literal["span"] = "span"
    name: Text
    kind: SpanKind
    start: UtcDatetime
    end: UtcDatetime
    status: SpanStatus = SpanStatus.UNSET
    error_type: Annotated[str, Field(max_length=256)] | None = None
    provider: ProviderName | None = Field(
        default=None, description="gen_ai.provider.name, e.g. `openai`, `anthropic`."
    )
    model: ModelName | None = None

    @model_validator(mode="after")
    def _end_after_start(self) -> SpanEvent:
        if self.end < self.start:
            raise ValueError("end must not be before start")
        return self

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start).total_seconds() * 1000.0


class UsageEvent(BaseEvent):
    """Token usage of one LLM call (normalised: see the module docstring)."""

    type: Literal["usage"] = "usage"
    provider: Annotated[ProviderName, Field(min_length=1)]
    model: Annotated[ModelName, Field(min_length=1)]
    input_tokens: TokenCount = Field(description="Prompt tokens, including cached ones.")
    output_tokens: TokenCount = Field(description="Completion tokens, including reasoning.")
    cache_read_tokens: TokenCount = 0
    cache_write_tokens: TokenCount = 0
    reasoning_tokens: TokenCount = 0
    reported_cost_usd: Usd | None = Field(
        default=None, ge=0, description="Cost the provider reported (>= 0), if any (kept for comparison)."
    )

    @model_validator(mode="after")
    def _counts_consistent(self) -> UsageEvent:
        if self.cache_read_tokens + self.cache_write_tokens > self.input_tokens:
            raise ValueError(
                "cache_read_tokens + cache_write_tokens exceed input_tokens: input_tokens "
                "must include cached tokens (normalise provider counts at the edge)"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens exceed output_tokens (output includes reasoning)")
        return self

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class QualityEvent(BaseEvent):
    """A quality score from an evaluator (LLM judge, heuristic, user feedback)."""

    type: Literal["quality"] = "quality"
    metric: Annotated[str, Field(min_length=1, max_length=64)]
    score: float = Field(allow_inf_nan=False)
    evaluator: Annotated[str, Field(max_length=64)] | None = None
    label: Annotated[str, Field(max_length=64)] | None = None
    comment: Annotated[str, Field(max_length=1024)] | None = None


class ToolCallEvent(BaseEvent):
    """One tool invocation. Arguments are hashed by the client and never sent."""

    type: Literal["tool_call"] = "tool_call"
    tool: ToolName
    args_hash: str = Field(pattern=r"^[0-9a-f]{16,64}$", description="Hex hash of the args.")
    status: SpanStatus = SpanStatus.OK


class ScreenEvent(BaseEvent):
    """An injection-screening verdict on one message flowing into an LLM call from outside the
    agent's own instructions (a user message, a tool result, another agent's message). Never
    the message itself, unless the user opted in (``excerpt``)."""

    type: Literal["screen"] = "screen"
    channel: Literal["user", "tool", "agent"] = Field(description="Where the screened text came from.")
    source: Annotated[str, Field(max_length=128)] | None = Field(
        default=None, description="The tool or agent that produced it, when known."
    )
    detector: Annotated[str, Field(min_length=1, max_length=64)]
    score: float = Field(ge=0, le=1, allow_inf_nan=False, description="0 (clean) to 1 (injection).")
    flagged: bool
    action: Literal["record", "alert", "block", "kill"] = Field(
        description="What the channel's policy did: `block` and `kill` stopped the call."
    )
    reasons: Annotated[str, Field(max_length=256)] | None = Field(
        default=None, description="The detector's reasons (rule names), comma-separated."
    )
    text_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None, description="SHA-256 of the screened text (to match repeats without keeping it)."
    )
    excerpt: Annotated[str, Field(max_length=1024)] | None = Field(
        default=None, description="The start of the screened text: only when the user opted in."
    )


Event = Annotated[
    SpanEvent | UsageEvent | QualityEvent | ToolCallEvent | ScreenEvent, Field(discriminator="type")
]
"""Any contract event, discriminated by ``type``."""

EVENT_ADAPTER: TypeAdapter[SpanEvent | UsageEvent | QualityEvent | ToolCallEvent | ScreenEvent] = TypeAdapter(
    Event
)


class Envelope(_Model):
    """One Kafka record: a batch of events that share a key (``tenant/agent``)."""

    v: Literal[1] = 1
    key: str = Field(min_length=3, max_length=257)
    events: list[Event] = Field(min_length=1, max_length=5000)


class PricedEvent(_Model):
    """An event after the price step. Non-usage events pass through with ``cost_usd=0``."""

    event: Event
    cost_usd: Usd = Field(description="Exact cost in USD; 0 when not priced.")
    priced: bool = Field(description="False for an unknown model: unpriced is never $0.")
    price_source: str = Field(
        max_length=128, description="e.g. `genai-prices:0.2.3` or `override:acme-discount`."
    )
    received_ts: UtcDatetime | None = Field(
        default=None, description="When the streams worker received the event (its arrival)."
    )
    time_flag: Literal["late", "clock_skew"] | None = Field(
        default=None,
        description="Set when `ts` was outside the worker's allowed lateness (`late`) or clock skew "
        "(`clock_skew`) of the arrival: budgets counted the event at `received_ts`.",
    )


class PricedEnvelope(_Model):
    v: Literal[1] = 1
    key: str
    events: list[PricedEvent] = Field(min_length=1, max_length=5000)


# --- control ----------------------------------------------------------------------------


class ScopeKind(StrEnum):
    TENANT = "tenant"
    AGENT = "agent"
    AGENT_VERSION = "agent_version"
    WORKFLOW = "workflow"
    TRACE = "trace"
    PROVIDER = "provider"
    USER = "user"
    CONVERSATION = "conversation"


class Scope(_Model):
    """What a command applies to. ``key`` is the compacted control topic's key.

    A ``provider`` scope applies to every tenant (key ``provider/openai/*``) unless it names a
    tenant: then it applies to that tenant only (key ``provider@acme/openai/*``)."""

    kind: ScopeKind
    tenant: Name | None = Field(
        default=None,
        description="Needed by every kind but `provider`, where it is optional: without it the "
        "command applies to every tenant, with it to that tenant only.",
    )
    agent: Name | None = None
    agent_version: str | None = None
    workflow: Name | None = None
    trace_id: TraceId | None = None
    provider: str | None = None
    model: str | None = None
    # Left out of the JSON when unset (exclude_if), as the downgrade params are: Guards built
    # before these fields existed forbid unknown keys, and still read every other command.
    user: Name | None = Field(
        default=None,
        exclude_if=_unset,
        description="End user (OTel `user.id`; OpenAI's `user` request field).",
    )
    conversation: Name | None = Field(
        default=None, exclude_if=_unset, description="Conversation (`gen_ai.conversation.id`)."
    )

    @model_validator(mode="after")
    def _fields_for_kind(self) -> Scope:
        missing = [name for name in _SCOPE_FIELDS[self.kind] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"scope kind {self.kind.value!r} needs {', '.join(missing)}")
        return self

    @property
    def key(self) -> str:
        return scope_key(
            self.kind,
            tenant=self.tenant,
            agent=self.agent,
            agent_version=self.agent_version,
            workflow=self.workflow,
            trace_id=self.trace_id,
            provider=self.provider,
            model=self.model,
            user=self.user,
            conversation=self.conversation,
        )


_SCOPE_FIELDS: dict[ScopeKind, tuple[str, ...]] = {
    ScopeKind.TENANT: ("tenant",),
    ScopeKind.AGENT: ("tenant", "agent"),
    ScopeKind.AGENT_VERSION: ("tenant", "agent", "agent_version"),
    ScopeKind.WORKFLOW: ("tenant", "workflow"),
    ScopeKind.TRACE: ("tenant", "trace_id"),
    ScopeKind.PROVIDER: ("provider",),
    ScopeKind.USER: ("tenant", "user"),
    ScopeKind.CONVERSATION: ("tenant", "conversation"),
}
"""The fields a scope of each kind needs; they also make up its key, in this order."""


def scope_key(
    kind: ScopeKind,
    *,
    tenant: str | None = None,
    agent: str | None = None,
    agent_version: str | None = None,
    workflow: str | None = None,
    trace_id: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    user: str | None = None,
    conversation: str | None = None,
) -> str:
    """The key of a scope on the control topic (and of its rollups and budgets): the kind,
    then its fields in ``_SCOPE_FIELDS`` order, e.g. ``agent/acme/planner``; a provider scope
    ends with its model or ``*``. The one place scope keys are built (``Scope.key`` and the
    worker's ``ScopeRef.key`` call it)."""
    values = {
        "tenant": tenant,
        "agent": agent,
        "agent_version": agent_version,
        "workflow": workflow,
        "trace_id": trace_id,
        "provider": provider,
        "user": user,
        "conversation": conversation,
    }
    parts = [str(values[name]) for name in _SCOPE_FIELDS[kind]]
    if kind is ScopeKind.PROVIDER:
        parts.append(model or "*")
        if tenant is not None:
            # The tenant goes in the first segment, which no other key can have: provider
            # and model names may hold "/", so a trailing "/acme" could equal a global
            # key's model and let one tenant's command replace a global one.
            return "/".join([f"{kind.value}@{tenant}", *parts])
    return "/".join([kind.value, *parts])


class Action(StrEnum):
    KILL = "kill"
    THROTTLE = "throttle"
    RESUME = "resume"
    FAILOVER = "failover"
    ROLLBACK = "rollback"
    DOWNGRADE = "downgrade"
    ROUTE = "route"
    ROTATE = "rotate"


class Lane(StrEnum):
    """Which decision a command is about; each lane is decided on its own key, so a decision
    in one lane never replaces one in another (a rollback never lifts a kill)."""

    ADMISSION = "admission"  # kill, throttle, resume: may the call run at all, and how fast
    ROUTING = "routing"  # rollback: which agent version serves the call
    DOWNGRADE = "downgrade"  # downgrade: which model a call is sent to (independent of rollback)
    PROVIDER = "provider"  # failover, resume: which provider a call is sent to
    ROLLOUT = "rollout"  # route: a rollout's share of tasks to a new version (a rollback wins)
    KEYS = "keys"  # rotate: move a provider's key pool off a key (docs/security.md)


class Authority(StrEnum):
    """Who decides: each control key has exactly one writer kind. A kill is lifted only by the
    authority that set it, or by a human (``manual``)."""

    BUDGET = "budget"  # the budget worker: budget policies and the loop detector, merged
    HEALTH = "health"  # the health worker: drift, canary, provider circuits
    MANUAL = "manual"  # a human, through the API or the CLI


BUDGET_ISSUER = "agentledger.streams"
"""``issued_by`` of the budget worker's commands."""
HEALTH_ISSUER = "agentledger-health"
"""``issued_by`` of the health worker's commands."""

_LANE_OF_ACTION: dict[str, Lane] = {
    "kill": Lane.ADMISSION,
    "throttle": Lane.ADMISSION,
    "rollback": Lane.ROUTING,
    "downgrade": Lane.DOWNGRADE,
    "failover": Lane.PROVIDER,
    "route": Lane.ROLLOUT,
    "rotate": Lane.KEYS,
}
_LANES = {lane.value: lane for lane in Lane}
_AUTHORITIES = {a.value: a for a in Authority}


def lane_of(action: Action, kind: ScopeKind, lane: Lane | None = None) -> Lane:
    """The lane of a command: fixed by its action, except a ``resume``, which lifts the lane it
    names, by default the provider lane on a provider scope and the admission lane elsewhere."""
    fixed = _LANE_OF_ACTION.get(action.value)
    if fixed is not None:
        return fixed
    if lane is not None:
        return lane
    return Lane.PROVIDER if kind is ScopeKind.PROVIDER else Lane.ADMISSION


def authority_of(issued_by: str) -> Authority:
    """The authority a command speaks for, from who issued it: the two workers by name,
    anyone else (an API key, the CLI) is a human."""
    if issued_by == BUDGET_ISSUER:
        return Authority.BUDGET
    if issued_by == HEALTH_ISSUER:
        return Authority.HEALTH
    return Authority.MANUAL


def control_key(scope_key: str, lane: Lane, authority: Authority) -> str:
    """The control topic key of a command: ``<lane>.<authority>:<scope key>``, e.g.
    ``admission.budget:agent/acme/writer``. The one place control keys are built.

    No scope key can take this form: a scope key's first ``/`` segment is a scope kind or
    ``provider@<tenant>``, and ``admission.budget:agent`` is neither (a ``.`` right after the
    kind, where a scope key has ``/`` or ``@``)."""
    return f"{lane.value}.{authority.value}:{scope_key}"


def parse_control_key(key: str) -> tuple[Lane, Authority, str] | None:
    """``(lane, authority, scope key)`` of a key built by ``control_key``; None for any other
    key (a record written before lanes existed: its bare scope key, or
    ``downgrade:<scope key>``)."""
    head, sep, scope = key.partition(":")
    if not sep:
        return None
    lane, dot, authority = head.partition(".")
    if not dot or lane not in _LANES or authority not in _AUTHORITIES:
        return None
    return _LANES[lane], _AUTHORITIES[authority], scope


class CommandParams(_Model):
    rate_per_s: float | None = Field(default=None, gt=0, description="Throttle rate.")
    burst: int | None = Field(default=None, ge=1, description="Throttle bucket size.")
    fallback_provider: str | None = None
    fallback_model: str | None = None
    target_version: str | None = Field(default=None, description="Rollback: route here.")
    kill_reason: Literal["budget", "loop", "manual", "quality", "other"] | None = None
    model: ModelName | None = Field(
        default=None,
        min_length=1,
        exclude_if=_unset,
        description="Downgrade: the cheaper model calls are sent with.",
    )
    from_models: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None,
        max_length=32,
        exclude_if=_unset,
        description="Downgrade: only calls to these models (fnmatch patterns) are rewritten; "
        "default: every call of the scope.",
    )
    weight: float | None = Field(
        default=None,
        ge=0,
        le=1,
        exclude_if=_unset,
        description="Route: the share of tasks sent to `target_version` (a hash of the trace id picks).",
    )
    baseline_version: str | None = Field(
        default=None, max_length=64, exclude_if=_unset, description="Route: where the other tasks go."
    )
    rollout_id: str | None = Field(
        default=None, max_length=128, exclude_if=_unset, description="Route: the rollout that set it."
    )
    step: int | None = Field(
        default=None, ge=0, exclude_if=_unset, description="Route: the rollout step (0 = the first)."
    )
    fingerprint: str | None = Field(
        default=None,
        pattern=r"^k-[0-9a-f]{12}$",
        exclude_if=_unset,
        description="Rotate: the key to move off, by fingerprint (`k-` + 12 hex digits; never the "
        "key itself); default: the key each process is using.",
    )


class ControlCommand(_Model):
    """A command on the compacted control topic, keyed by scope, lane and authority (``key``)."""

    v: Literal[1] = 1
    command_id: str = Field(min_length=8, max_length=64)
    ts: UtcDatetime
    scope: Scope
    action: Action
    reason: Annotated[str, Field(max_length=1024)]
    policy_id: str | None = None
    params: CommandParams = Field(default_factory=CommandParams)
    expires_at: UtcDatetime | None = None
    issued_by: str = Field(default="agentledger", max_length=128)
    cause_event_id: str | None = Field(
        default=None, description="The event that triggered it (for latency measurement)."
    )
    lane: Lane | None = Field(
        default=None,
        exclude_if=_unset,
        description="A `resume`: the lane it lifts (default: `provider` on a provider scope, "
        "else `admission`). Any other action: its own lane, or unset.",
    )

    @model_validator(mode="after")
    def _params_for_action(self) -> ControlCommand:
        if self.action is Action.THROTTLE and self.params.rate_per_s is None:
            raise ValueError("a throttle needs params.rate_per_s")
        if self.action is Action.FAILOVER and self.params.fallback_provider is None:
            raise ValueError("a failover needs params.fallback_provider")
        if self.action is Action.ROLLBACK and self.params.target_version is None:
            raise ValueError("a rollback needs params.target_version")
        if self.action is Action.DOWNGRADE and self.params.model is None:
            raise ValueError("a downgrade needs params.model")
        if self.action is Action.ROTATE and self.scope.kind is not ScopeKind.PROVIDER:
            raise ValueError("a rotate needs a provider scope")
        if self.lane is not None and lane_of(self.action, self.scope.kind, self.lane) is not self.lane:
            raise ValueError(
                f"a {self.action.value} belongs to the {lane_of(self.action, self.scope.kind).value} lane"
            )
        p = self.params
        if self.action is Action.ROUTE and (
            p.target_version is None or p.weight is None or p.baseline_version is None
        ):
            raise ValueError("a route needs params.target_version, params.weight and params.baseline_version")
        return self

    @property
    def in_lane(self) -> Lane:
        """The lane this command decides (``lane_of``)."""
        return lane_of(self.action, self.scope.kind, self.lane)

    @property
    def decided_by(self) -> Authority:
        """Whose decision it is, from ``issued_by`` (``authority_of``)."""
        return authority_of(self.issued_by)

    @property
    def key(self) -> str:
        """Its own control topic key: its scope, its lane, its issuer's authority. (A human's
        ``resume`` of a worker's kill is also written on that worker's key: see the API.)"""
        return control_key(self.scope.key, self.in_lane, self.decided_by)

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


# --- policies ---------------------------------------------------------------------------


class Window(StrEnum):
    MINUTE = "1m"
    HOUR = "1h"
    DAY = "24h"
    CALENDAR_DAY = "calendar_day"
    CALENDAR_MONTH = "calendar_month"


class LimitUnit(StrEnum):
    USD = "usd"
    TOKENS = "tokens"


class Selector(_Model):
    """Which events a policy counts. ``*`` (the default) matches anything; ``per`` says
    which scope each budget is kept for (one budget per agent, per trace, ...)."""

    tenant: str = "*"
    agent: str = "*"
    agent_version: str = "*"
    workflow: str = "*"
    user: str = Field(default="*", description="End user (`user.id` / `enduser.id` attribute).")
    conversation: str = Field(default="*", description="Conversation (`gen_ai.conversation.id` attribute).")
    per: ScopeKind = ScopeKind.AGENT
    # Left out of the JSON at their default: readers from before them forbid unknown keys.
    provider: str = Field(
        default="*",
        exclude_if=_any,
        description="Provider (fnmatch); only for a policy that sets `call_timeout_s` alone.",
    )
    model: str = Field(
        default="*",
        exclude_if=_any,
        description="Model (fnmatch); only for a policy that sets `call_timeout_s` alone.",
    )


class Threshold(_Model):
    """A soft level of a budget. ``downgrade`` sends the scope's calls to ``model`` (only calls
    to ``from_models``, when given) from this level on, until the window resets."""

    at: float = Field(gt=0, lt=1, description="Fraction of the limit, e.g. 0.8.")
    action: Literal["alert", "throttle", "downgrade"] = "alert"
    rate_per_s: float | None = Field(default=None, gt=0)
    model: ModelName | None = Field(default=None, min_length=1, description="Downgrade: the cheaper model.")
    from_models: list[Annotated[str, Field(min_length=1, max_length=128)]] | None = Field(
        default=None, max_length=32, description="Downgrade: only calls to these models (fnmatch patterns)."
    )

    @model_validator(mode="after")
    def _rate_for_throttle(self) -> Threshold:
        if self.action == "throttle" and self.rate_per_s is None:
            raise ValueError("a throttle threshold needs rate_per_s")
        if self.action == "downgrade" and self.model is None:
            raise ValueError("a downgrade threshold needs model (the cheaper one)")
        if self.action != "downgrade" and (self.model is not None or self.from_models is not None):
            raise ValueError("model and from_models belong to a downgrade threshold")
        return self


class Policy(_Model):
    """A budget, a trace deadline, a per-call timeout, or any of them together: the compacted
    policies topic holds the latest version by ``policy_id``."""

    v: Literal[1] = 1
    policy_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-.]+$")
    description: str = ""
    selector: Selector = Field(default_factory=Selector)
    window: Window = Field(
        default=Window.CALENDAR_MONTH, description="A budget's window (needed with `limit`)."
    )
    limit: Decimal | None = Field(default=None, gt=0, description="A budget's limit; none: no budget.")
    # Left out of the JSON when unset: readers from before them forbid unknown keys.
    deadline_s: float | None = Field(
        default=None,
        gt=0,
        le=7 * 86400,
        exclude_if=_unset,
        description="Wall-clock deadline of each trace the selector matches, from its first event: "
        "the worker kills the trace scope once a trace is still open past it.",
    )
    call_timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=3600,
        exclude_if=_unset,
        description="Per-call timeout of hooked LLM calls of the matching agents (overrides "
        "`configure(call_timeout_s=)`; the shortest of several matching policies wins).",
    )
    unit: LimitUnit = LimitUnit.USD
    thresholds: list[Threshold] = Field(default_factory=list, max_length=8)
    hard_action: Literal["kill", "throttle", "alert"] = "kill"
    hard_rate_per_s: float | None = Field(default=None, gt=0)
    enabled: bool = True

    @property
    def budget_limit(self) -> Decimal:
        """The limit of a budget policy (``is_budget``)."""
        if self.limit is None:
            raise ValueError(f"policy {self.policy_id} has no budget")
        return self.limit

    @property
    def is_budget(self) -> bool:
        return self.limit is not None

    @model_validator(mode="after")
    def _what_it_sets(self) -> Policy:
        if self.limit is None and self.deadline_s is None and self.call_timeout_s is None:
            raise ValueError("a policy needs a budget (`limit`, `window`), `deadline_s` or `call_timeout_s`")
        if self.limit is not None and "window" not in self.model_fields_set:
            raise ValueError("a budget (`limit`) needs a `window`")
        if self.limit is None and (self.thresholds or self.hard_action != "kill"):
            raise ValueError("thresholds and hard_action belong to a budget (`limit`)")
        if (self.selector.provider != "*" or self.selector.model != "*") and (
            self.limit is not None or self.deadline_s is not None
        ):
            raise ValueError("selector.provider and selector.model apply to `call_timeout_s` alone")
        return self

    @model_validator(mode="after")
    def _thresholds_sorted(self) -> Policy:
        ats = [t.at for t in self.thresholds]
        if ats != sorted(set(ats)):
            raise ValueError("thresholds must be strictly increasing by `at`")
        if self.hard_action == "throttle" and self.hard_rate_per_s is None:
            raise ValueError("hard_action throttle needs hard_rate_per_s")
        return self


class BudgetState(StrEnum):
    OK = "ok"
    WARN = "warn"
    THROTTLED = "throttled"
    KILLED = "killed"


class BudgetStatus(_Model):
    """Live state of one policy for one scope, on the compacted budgets topic
    (key = ``policy_id|scope_key``). The API reads it for live budget status."""

    v: Literal[1] = 1
    policy_id: str
    scope_key: str
    window: Window
    window_start: UtcDatetime
    window_end: UtcDatetime | None = None
    spend: Decimal = Field(description="USD or tokens, per the policy's unit.")
    limit: Decimal
    unit: LimitUnit
    state: BudgetState
    updated_at: UtcDatetime
    projected_exhaustion: UtcDatetime | None = Field(
        default=None, description="When the limit is reached at the current burn rate."
    )


# --- alerts and the dead-letter queue ---------------------------------------------------


class AlertState(StrEnum):
    OK = "ok"
    WARN = "warn"
    ALERT = "alert"
    RESOLVED = "resolved"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class AlertEvent(_Model):
    """One transition of one rule for one entity (key = ``dedup_key``)."""

    v: Literal[1] = 1
    alert_id: str = Field(min_length=8, max_length=64)
    dedup_key: str = Field(min_length=1, max_length=255, description="rule + entity")
    ts: UtcDatetime
    rule: str = Field(max_length=128)
    entity: str = Field(max_length=512)
    tenant: str | None = None
    state: AlertState
    severity: Severity = Severity.WARNING
    summary: str = Field(max_length=1024)
    figures: dict[str, AttributeValue] = Field(default_factory=dict)
    policy_id: str | None = None
    command_id: str | None = None


# --- service level objectives (read by the health worker) ------------------------------


class ObjectiveKind(StrEnum):
    LATENCY = "latency"
    AVAILABILITY = "availability"


class BurnRateRule(_Model):
    """Multi-window burn-rate alert (Google SRE workbook): fires when the error budget burns at
    ``burn_rate`` times the sustainable pace over both ``long_window_s`` and ``short_window_s``."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_\-]+$")
    burn_rate: float = Field(gt=0, le=1000)
    long_window_s: int = Field(gt=0, le=7 * 86400)
    short_window_s: int = Field(gt=0, le=86400)
    severity: Severity = Severity.CRITICAL

    @model_validator(mode="after")
    def _short_inside_long(self) -> BurnRateRule:
        if self.short_window_s >= self.long_window_s:
            raise ValueError("short_window_s must be shorter than long_window_s")
        return self


def _workbook_rules() -> list[BurnRateRule]:
    return [
        BurnRateRule(name="page", burn_rate=14.4, long_window_s=3600, short_window_s=300),
        BurnRateRule(
            name="ticket",
            burn_rate=6.0,
            long_window_s=6 * 3600,
            short_window_s=1800,
            severity=Severity.WARNING,
        ),
    ]


class ObjectiveSelector(_Model):
    """Which LLM calls an objective counts (fnmatch wildcards) and ``per`` what it is kept:
    one objective per agent, per agent version, per provider or per provider/model."""

    tenant: str = "*"
    agent: str = "*"
    agent_version: str = "*"
    workflow: str = "*"
    provider: str = "*"
    model: str = "*"
    per: Literal["agent", "agent_version", "provider", "model"] = "agent"


class ObjectivePolicy(_Model):
    """A service level objective over LLM calls. ``latency``: of the successful calls, the
    share answered within ``threshold_ms`` (``p99 <= 10 s`` is ``target 0.99, threshold_ms
    10000``); ``availability``: the share of calls not in error. Kept over a rolling
    ``window_days``; ``alerts`` are the burn-rate rules (default: the workbook's page and ticket)."""

    v: Literal[1] = 1
    objective_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_\-.]+$")
    description: str = Field(default="", max_length=1024)
    selector: ObjectiveSelector = Field(default_factory=ObjectiveSelector)
    kind: ObjectiveKind
    target: float = Field(gt=0, lt=1, description="Share of good calls, e.g. 0.95.")
    threshold_ms: float | None = Field(default=None, gt=0, description="Latency: a good call's bound.")
    window_days: int = Field(default=28, ge=1, le=90)
    alerts: list[BurnRateRule] = Field(default_factory=_workbook_rules, max_length=8)
    enabled: bool = True

    @model_validator(mode="after")
    def _coherent(self) -> ObjectivePolicy:
        if self.kind is ObjectiveKind.LATENCY and self.threshold_ms is None:
            raise ValueError("a latency objective needs threshold_ms")
        if self.kind is ObjectiveKind.AVAILABILITY and self.threshold_ms is not None:
            raise ValueError("threshold_ms belongs to a latency objective")
        names = [r.name for r in self.alerts]
        if len(names) != len(set(names)):
            raise ValueError("alert rule names must be unique")
        for r in self.alerts:
            if r.burn_rate * (1 - self.target) > 1:
                raise ValueError(
                    f"alert {r.name!r}: burn rate {r.burn_rate} can never be reached with target "
                    f"{self.target} (at most {1 / (1 - self.target):.3g})"
                )
            if r.long_window_s > self.window_days * 86400:
                raise ValueError(f"alert {r.name!r}: long_window_s exceeds the objective window")
        return self


class DeadLetter(_Model):
    """What the DLQ keeps: the raw bytes (base64), why they were rejected, where from."""

    v: Literal[1] = 1
    reason: str
    raw_b64: str
    source_topic: str
    source_partition: int | None = None
    source_offset: int | None = None
    index: int | None = Field(default=None, description="Position inside the envelope.")
    ts: UtcDatetime = Field(default_factory=lambda: datetime.now(UTC))


MODELS: dict[str, type[BaseModel]] = {
    "SpanEvent": SpanEvent,
    "UsageEvent": UsageEvent,
    "QualityEvent": QualityEvent,
    "ToolCallEvent": ToolCallEvent,
    "ScreenEvent": ScreenEvent,
    "Envelope": Envelope,
    "PricedEvent": PricedEvent,
    "PricedEnvelope": PricedEnvelope,
    "ControlCommand": ControlCommand,
    "Policy": Policy,
    "ObjectivePolicy": ObjectivePolicy,
    "BudgetStatus": BudgetStatus,
    "AlertEvent": AlertEvent,
    "DeadLetter": DeadLetter,
}
"""Every public model, by name (drives the JSON Schema files in docs/schema/)."""


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of every public model, by name."""
    return {name: model.model_json_schema(mode="validation") for name, model in MODELS.items()}
