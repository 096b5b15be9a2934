"""A simulated multi-agent workload: planner → researcher → writer, two tenants, two providers.

It is ordinary client code: it records through ``agentledger.collectors`` and obeys the Guard.
Four stories play out on the clock (see ``DemoTiming``):

1. a runaway tool loop: one acme research trace repeats the same ``web_search``; the loop
   detector kills that trace, the other traces go on;
2. a budget: globex's writer is alerted at 50 %, throttled at 80 %, killed at 100 % of its
   hourly budget, while globex's planner and researcher go on;
3. a rollout: acme rolls writer v2 out to 25 % of its tasks (a hash of the trace picks them);
   its answers score worse, so the health worker's controller rolls it back at that first step
   and ``guard.version("writer")`` routes every task to v1 again;
4. an outage: openai fails every call; its circuit opens, ``guard.provider("openai")`` returns
   anthropic, a probe trickle keeps testing openai, and traffic returns when it recovers.

Beside them, acme's ``summarizer`` is a real Pydantic AI agent behind the provider-SDK hook
(``agentledger.demo.framework``), killed by its own small budget mid-run.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentledger.collectors import AgentKilled, Emitter, Guard, Throttled
from agentledger.demo.config import DemoTiming
from agentledger.demo.framework import MISSING, FrameworkAgent, FrameworkResult, available

TENANTS = ("acme", "globex")
MODELS = {
    "openai": {"small": "gpt-4o-mini", "large": "gpt-4o"},
    "anthropic": {"small": "claude-haiku-4-5", "large": "claude-sonnet-4-5"},
}
TASKS_PER_S = 3.0
USERS_PER_TENANT = 5  # each task is for one of them: the dashboards' user filter has something to show
TASKS_PER_CONVERSATION = 4  # a user's tasks come in conversations of this many
PROBE_SHARE = 0.25  # while failed over, this share of calls still tries the preferred provider
ROLLOUT_STEPS = (25.0, 50.0, 100.0)  # acme/writer v2's rollout: share of tasks at each step


class ProviderDown(Exception):
    """What the simulated provider SDK raises during the outage."""


@dataclass
class Observation:
    at_s: float
    story: str
    text: str


@dataclass
class WorkloadResult:
    tasks: int = 0
    llm_calls: int = 0
    llm_failures: int = 0
    throttled: int = 0
    killed_steps: int = 0
    loop_calls_before_kill: int | None = None
    observations: list[Observation] = field(default_factory=list)
    sent: int = 0
    dropped: int = 0
    failed: int = 0
    framework: FrameworkResult | None = None
    v2_tasks: int = 0  # acme/writer tasks that went to the rolled-out version


class DemoWorkload:
    def __init__(
        self,
        bootstrap: str,
        events_topic: str,
        control_topic: str,
        timing: DemoTiming,
        say: Callable[[Observation], None],
        seed: int = 42,
    ) -> None:
        self.timing = timing
        self.say = say
        self.rng = random.Random(seed)
        self.result = WorkloadResult()
        self.guard = Guard(bootstrap, control_topic=control_topic)
        self._emitters: dict[tuple[str, str, str], Emitter] = {}
        self._bootstrap, self._topic, self._control = bootstrap, events_topic, control_topic
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._t0 = 0.0
        self._framework_error: str | None = None

    # -- plumbing ------------------------------------------------------------------------

    def emitter(self, tenant: str, agent: str, version: str = "v1") -> Emitter:
        key = (tenant, agent, version)
        em = self._emitters.get(key)
        if em is None:
            em = Emitter(tenant=tenant, agent=agent, agent_version=version, workflow="research-report",
                         bootstrap=self._bootstrap, topic=self._topic, linger_ms=10)  # fmt: skip
            self._emitters[key] = em
        return em

    def now(self) -> float:
        return time.monotonic() - self._t0

    def observe(self, story: str, text: str, once: str | None = None) -> None:
        with self._lock:
            if once is not None:
                if once in self._seen:
                    return
                self._seen.add(once)
            obs = Observation(round(self.now(), 1), story, text)
            self.result.observations.append(obs)
        self.say(obs)

    # -- one LLM call ----------------------------------------------------------------------

    def llm_call(self, em: Emitter, tenant: str, agent: str, size: str, out_tokens: int) -> bool:
        preferred = "openai"
        model_pref = MODELS[preferred][size]
        provider = self.guard.provider(preferred, model_pref, tenant=tenant)
        if provider != preferred and self.rng.random() < PROBE_SHARE:
            provider = preferred  # the probe trickle that lets a half-open circuit close
        model = MODELS[provider][size]
        t = self.now()
        outage = self.timing.outage_at_s <= t < self.timing.outage_at_s + self.timing.outage_s
        self.result.llm_calls += 1
        try:
            with em.span(f"chat {model}", kind="llm", provider=provider, model=model):
                if provider == "openai" and outage:
                    time.sleep(0.002)
                    raise ProviderDown("openai: 503 Service Unavailable")
                inp = self.rng.randint(1200, 3000)
                em.record_usage(provider, model, input_tokens=inp, output_tokens=out_tokens,
                                cache_read_tokens=inp // 3)  # fmt: skip
        except ProviderDown:
            self.result.llm_failures += 1
            return False
        return True

    # -- one task (a trace) ------------------------------------------------------------------

    def writer_version(self, tenant: str, trace: str | None) -> str:
        if tenant != "acme":
            return "v1"
        routed: str | None = self.guard.version("writer", tenant=tenant, trace_id=trace)
        return routed or "v1"

    def _start_rollout_safely(self) -> None:
        try:
            self.start_rollout()
        except Exception as exc:  # noqa: BLE001 - the other stories go on
            self.observe("canary", f"could not start the rollout: {type(exc).__name__}: {exc}")

    def start_rollout(self) -> None:
        """acme starts rolling writer v2 out (``agentledger rollout start`` does the same)."""
        import asyncio

        from agentledger import topics
        from agentledger.compacted import publish
        from agentledger.rollout import RolloutGate, RolloutPolicy, RolloutStep
        from agentledger.wire import dump

        policy = RolloutPolicy(
            rollout_id=f"writer-v2-{int(time.time())}", tenant="acme", agent="writer", baseline="v1", candidate="v2",
            steps=[RolloutStep(weight_pct=w, min_tasks=60, min_s=20) for w in ROLLOUT_STEPS],
            gate=RolloutGate(min_tasks=12),
        )  # fmt: skip
        topic = self._control[: -len(topics.CONTROL.name)] + topics.ROLLOUTS.name
        asyncio.run(publish(self._bootstrap, topic, [(policy.key, dump(policy))]))

    def task(self, tenant: str) -> None:
        planner = self.emitter(tenant, "planner")
        self.result.tasks += 1
        n = self.result.tasks
        user = f"{tenant}-user-{n % USERS_PER_TENANT}"
        conversation = f"{user}-conv-{n // (USERS_PER_TENANT * TASKS_PER_CONVERSATION)}"
        # the root span names who the task is for; nested spans and calls inherit it
        with planner.span("research-report", kind="workflow", user=user, conversation=conversation) as root:
            trace = root.trace_id
            try:
                self.guard.check(tenant=tenant, agent="planner", trace_id=trace, wait=False)
                with planner.span("plan", kind="agent", agent="planner"):
                    self.llm_call(planner, tenant, "planner", "small", 150)
                researcher = self.emitter(tenant, "researcher")
                with researcher.span("research", kind="agent", agent="researcher"):
                    self.guard.check(tenant=tenant, agent="researcher", trace_id=trace, wait=False)
                    for k in range(2):
                        researcher.record_tool_call(
                            "web_search", {"q": f"topic-{self.rng.randint(0, 10**6)}-{k}"}
                        )
                    self.llm_call(researcher, tenant, "researcher", "small", 400)
                self.write(tenant, trace)
            except AgentKilled as exc:
                self.result.killed_steps += 1
                self.observe(
                    "budget",
                    f"{tenant}: step refused by the Guard: {exc}",
                    once=f"kill:{tenant}:{type(exc).__name__}",
                )
            except Throttled:
                self.result.throttled += 1

    def write(self, tenant: str, trace: str | None) -> None:
        version = self.writer_version(tenant, trace)
        if version == "v2":
            self.result.v2_tasks += 1
        writer = self.emitter(tenant, "writer", version)
        with writer.span("write", kind="agent", agent="writer"):
            try:
                self.guard.check(
                    tenant=tenant, agent="writer", trace_id=trace, agent_version=version, wait=False
                )
            except Throttled as exc:
                self.result.throttled += 1
                self.observe(
                    "budget",
                    f"{tenant}/writer throttled by the Guard (retry in {exc.retry_after_s:.2f}s); planner and researcher go on",
                    once=f"throttle:{tenant}",
                )
                return
            except AgentKilled as exc:
                self.result.killed_steps += 1
                self.observe(
                    "budget",
                    f"{tenant}/writer killed: {type(exc).__name__}: {exc}; planner and researcher go on",
                    once=f"kill:{tenant}:writer",
                )
                return
            ok = self.llm_call(writer, tenant, "writer", "large", 900 if version == "v2" else 600)
            if ok:
                base = 0.62 if version == "v2" else 0.86
                writer.record_quality(
                    "faithfulness", min(1.0, max(0.0, self.rng.gauss(base, 0.05))), evaluator="llm-judge"
                )

    # -- the runaway loop ------------------------------------------------------------------------

    def runaway(self) -> None:
        self.observe("loop", "acme/researcher starts calling web_search with the same arguments in one trace")
        researcher = self.emitter("acme", "researcher")
        calls = 0
        with researcher.span("research (stuck)", kind="agent", agent="researcher") as scope:
            trace = scope.trace_id
            while not self._stop.is_set() and calls < 200:
                try:
                    self.guard.check(tenant="acme", agent="researcher", trace_id=trace, wait=False)
                except AgentKilled as exc:
                    self.result.loop_calls_before_kill = calls
                    self.observe(
                        "loop",
                        f"trace {trace[:8] if trace else '?'}… killed after {calls} identical web_search calls ({type(exc).__name__}); acme's other traces go on",
                    )
                    return
                researcher.record_tool_call("web_search", {"q": "latest quarterly numbers"})
                calls += 1
                time.sleep(0.15)
        self.observe("loop", f"the loop was NOT killed after {calls} calls")

    # -- watchers -------------------------------------------------------------------------------

    def watch(self) -> None:
        failed_over = False
        rolled_back = False
        outage_announced = recovered_announced = False
        while not self._stop.wait(0.05):
            t = self.now()
            if not outage_announced and t >= self.timing.outage_at_s:
                outage_announced = True
                self.observe("failover", "openai starts failing every call (simulated outage)")
            if not recovered_announced and t >= self.timing.outage_at_s + self.timing.outage_s:
                recovered_announced = True
                self.observe("failover", "openai is healthy again (probe calls now succeed)")
            target = self.guard.provider("openai", MODELS["openai"]["large"])
            if target != "openai" and not failed_over:
                failed_over = True
                self.observe("failover", f"openai circuit open: traffic fails over to {target}")
            elif target == "openai" and failed_over:
                failed_over = False
                self.observe("failover", "openai circuit closed: traffic is back on openai")
            route = self.guard.rollout("writer", tenant="acme")
            if route is not None and not rolled_back:
                weight = route.params.weight or 0.0
                if weight == 0.0:
                    rolled_back = True
                    self.observe(
                        "canary",
                        f"acme/writer v2 rolled back at step {(route.params.step or 0) + 1}: every task routed to "
                        f"{route.params.baseline_version} ({self.result.v2_tasks} tasks saw v2); {route.reason}",
                    )
                else:
                    self.observe(
                        "canary", f"acme/writer v2 now serves {weight:.0%} of acme's tasks", once=f"w{weight}"
                    )

    # -- run ------------------------------------------------------------------------------------

    def run(self) -> WorkloadResult:
        if not self.guard.wait_ready(30):
            raise RuntimeError("the Guard could not read the control topic in 30 s")
        framework: FrameworkAgent | None = None
        if available():
            framework = FrameworkAgent(self._bootstrap, self._topic, self._control, self.observe, self.now,
                                       self._stop)  # fmt: skip
            try:
                framework.setup()
            except Exception as exc:  # noqa: BLE001 - the other stories go on without it
                framework = None
                self._framework_error = f"{type(exc).__name__}: {exc}"
        self._t0 = time.monotonic()
        threads = [threading.Thread(target=self.watch, name="watch", daemon=True)]
        threads += [
            threading.Thread(target=self.traffic, args=(t,), name=f"traffic-{t}", daemon=True)
            for t in TENANTS
        ]
        if framework is not None:
            threads.append(threading.Thread(target=framework.run, name="framework-agent", daemon=True))
        else:
            self.observe("hook", self._framework_error or MISSING)
        for th in threads:
            th.start()
        loop_thread = None
        canary_said = False
        while self.now() < self.timing.duration_s:
            if loop_thread is None and self.now() >= self.timing.loop_at_s:
                loop_thread = threading.Thread(target=self.runaway, name="runaway", daemon=True)
                loop_thread.start()
            if not canary_said and self.now() >= self.timing.canary_at_s:
                canary_said = True
                self.observe(
                    "canary",
                    f"acme rolls writer v2 out: {' -> '.join(f'{w:g}%' for w in ROLLOUT_STEPS)} of its tasks "
                    "while no metric is worse (its answers score worse)",
                )
                # in a thread: a producer's start takes a second or two, and the clock goes on
                threading.Thread(target=self._start_rollout_safely, name="rollout", daemon=True).start()
            time.sleep(0.1)
        self._stop.set()
        for th in [*threads, *([loop_thread] if loop_thread else [])]:
            th.join(20 if th.name == "framework-agent" else 10)
        if framework is not None:
            self.result.framework = framework.result
        return self.finish()

    def traffic(self, tenant: str) -> None:
        period = 1.0 / TASKS_PER_S
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.task(tenant)
            except Exception as exc:  # noqa: BLE001 - the demo keeps going, and says why
                self.observe(
                    "error",
                    f"{tenant}: task failed: {type(exc).__name__}: {exc}",
                    once=f"err:{type(exc).__name__}",
                )
            self._stop.wait(max(0.0, period - (time.monotonic() - started)))

    def finish(self) -> WorkloadResult:
        for em in self._emitters.values():
            em.flush(15)
        for em in self._emitters.values():
            st: dict[str, Any] = em.stats()
            self.result.sent += int(st.get("sent", 0))
            self.result.dropped += int(st.get("dropped", 0))
            self.result.failed += int(st.get("failed", 0))
            em.shutdown(5)
        fw = self.result.framework
        if fw is not None:
            self.result.sent += fw.sent
            self.result.dropped += fw.dropped
            self.result.failed += fw.failed
        self.guard.close()
        return self.result
