"""What every framework scenario shares (runs in the framework's venv, not the test's).

The environment names the broker, topic prefix and tenant (``AGENTLEDGER_*``) and points the
provider SDKs at the fake provider (``OPENAI_BASE_URL``...). ``SCENARIO_OTEL=1`` turns the
framework's usual OpenTelemetry instrumentation on as well, into the in-process bridge;
``SCENARIO_OTLP=<API url>`` (+ ``SCENARIO_OTLP_KEY``) exports those spans instead with the
OpenTelemetry OTLP/HTTP exporter to the API's ``POST /v1/traces``, as a user running a collector-less
setup does.
A scenario prints one JSON line (``report``) of what it observed and exits 0.

The tool-permission scenarios (``<framework>_tools.py``) share their ``clerk``'s two tools and
their two runs (``tool_runs``): the test's tool policy denies ``shell_exec`` and asks a human
for ``send_email``; each tool notes in ``RAN`` that it ran (its side effect).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from agentledger import collectors as al
from agentledger.collectors import frameworks, hook

TENANT = os.environ.get("AGENTLEDGER_TENANT", "acme")
MODEL = os.environ.get("SCENARIO_MODEL", "gpt-4o")
OTLP = os.environ.get("SCENARIO_OTLP")
OTEL = os.environ.get("SCENARIO_OTEL") == "1" or bool(OTLP)
_provider: Any = None


def prompt(agent: str) -> str:
    """Every agent's instructions name it, so the test can tell whose request the provider saw."""
    return f"You are agent {agent}. Answer in one word."


def setup(instrument_otel: Callable[[Any], None] | None = None) -> Any:
    """``al.configure`` + the one line (after OpenTelemetry, when it is on); returns the Guard,
    caught up with the control topic."""
    global _provider
    al.configure(tenant=TENANT)
    if OTEL:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        from agentledger.collectors.otel import AgentLedgerSpanProcessor

        _provider = TracerProvider()
        if OTLP:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            exporter = OTLPSpanExporter(
                endpoint=f"{OTLP}/v1/traces",
                headers={"Authorization": f"Bearer {os.environ['SCENARIO_OTLP_KEY']}"},
            )
            _provider.add_span_processor(BatchSpanProcessor(exporter))
        else:
            _provider.add_span_processor(AgentLedgerSpanProcessor())
        trace.set_tracer_provider(_provider)
        if instrument_otel is not None:
            instrument_otel(_provider)
    al.instrument()
    installed = hook.installed()
    guard = installed.guard if installed is not None else None
    if guard is None or not guard.wait_ready(30):
        fail("the hook has no Guard caught up with the control topic")
    return guard


def wait_for(guard: Any, action: str, agent: str, timeout: float = 60.0) -> bool:
    """Wait until the control plane has told this process ``action`` for ``agent``."""
    key = f"agent/{TENANT}/{agent}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # one key per scope, lane and authority: any of this scope's commands will do
        if any(c.scope.key == key and c.action.value == action for c in guard.commands.values()):
            return True
        time.sleep(0.05)
    return False


def error(exc: BaseException) -> dict[str, Any]:
    """What the agent author caught: the exception and, when wrapped, the AgentKilled inside."""
    inner: BaseException | None = exc
    seen = 0
    while inner is not None and not isinstance(inner, al.AgentKilled) and seen < 10:
        inner = inner.__cause__ or inner.__context__
        seen += 1
    return {
        "type": type(exc).__name__,
        "is_agent_killed": isinstance(exc, al.AgentKilled),
        "agent_killed_inside": isinstance(inner, al.AgentKilled),
        "message": str(exc)[:300],
    }


def report(**observed: Any) -> None:
    """Flush everything (hook events, bridge spans) and print the JSON report."""
    if _provider is not None:
        _provider.force_flush()
    observed["flushed"] = al.flush(30)  # first: the hook's events are built when sent
    installed = hook.installed()
    observed["hook"] = {"recorded": installed.recorded, "failed": installed.failed} if installed else None
    observed["adapters"] = frameworks.installed()
    print(json.dumps(observed), flush=True)


# -- tool permissions ---------------------------------------------------------------------

DENIED_PROMPT = "Clean up. [[call:shell_exec]]"  # the fake provider calls the tool it names
APPROVED_PROMPT = "Tell Bob. [[call:send_email]]"
RAN: list[str] = []  # the tools that ran, in order


def shell_exec(command: str) -> str:
    """Run a shell command.

    Args:
        command: The command line.
    """
    RAN.append("shell_exec")
    return "done"


def send_email(to: str) -> str:
    """Send an email.

    Args:
        to: Who gets it.
    """
    RAN.append("send_email")
    return "sent"


def tool_runs(run: Callable[[str], tuple[str, list[str]]]) -> None:
    """Run the clerk on the denied prompt, then on the one needing approval, and report each:
    ``run(prompt)`` returns the run's output and the tool results the model was given; an
    exception is reported as what surfaced. Call after ``setup()``."""
    observed: dict[str, Any] = {}
    for label, text in (("denied_run", DENIED_PROMPT), ("approved_run", APPROVED_PROMPT)):
        RAN.clear()
        try:
            output, returns = run(text)
        except Exception as exc:  # noqa: BLE001 - reported: the test says what surfaced
            observed[label] = {"error": error(exc), "ran": list(RAN)}
            continue
        observed[label] = {"error": None, "output": output, "tool_returns": returns, "ran": list(RAN)}
    report(**observed)


def fail(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    sys.exit(2)
