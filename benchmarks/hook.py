"""Benchmark of the provider-SDK hook: what ``al.instrument()`` adds to one LLM call.

    .venv/bin/python benchmarks/hook.py [--quick] [--json PATH] [--transport counting|memory]

One run, the real openai SDK against the local fake provider (HTTP on 127.0.0.1, its own
process), three ways: plain (no hook), hooked (caller resolved, Guard checked with commands
for other agents in force, usage recorded), and plain through a pass-through HTTP proxy on
127.0.0.1 (the anchor: the least a gateway adds, one more local hop and nothing else).

The events go to a transport that encodes each batch as the Kafka transport does, counts it and
drops it (``--transport counting``, the default): once a broker has a batch the process holds
nothing more, so the figures are the hook's cost, not the benchmark's memory growth.
``--transport memory`` keeps every event in a ``MemoryTransport`` instead (what runs before
2026-11-30 06:50 UTC used; it adds ~0.2 minor page faults per hooked call).

The ways run in alternating blocks of ``BLOCK`` calls (plain, hooked, proxy, then proxy,
hooked, plain, ...), so that a machine whose load moves from second to second hits all three
alike; a figure is the median over rounds of one round's difference of block means. Both in
wall-clock time and in this thread's CPU time (``time.thread_time_ns``: what the call costs
here, without the time other processes held the cores).

Figures (JSON keys): call_us_median / call_us_p99 per way (per call); hook_overhead_us_median
(hooked - plain, wall, median of per-round differences; target <= 50) and hook_overhead_us_p99
(p99 hooked call - p99 plain call: noise at this size); hook_cpu_us_median / _p99 (the same
in thread CPU time, median and p99 of the per-round differences); proxy_overhead_us_median /
_p99 (proxy - plain, wall: the anchor) and hook_proxy_ratio; hook_work_us_median / _p99 and
hook_work_cpu_us_median / _p99 (the same comparison with the network replaced by an in-memory httpx
transport: the SDK's own request and parsing code still runs); hook_own_us_median / _p99 and
hook_own_cpu_us_* (the hook's wrapper alone around a method that answers at once, blocks of 100
calls: its cost with warm CPU caches); sender_build_cpu_us_median (the sender thread's CPU
per usage event, blocks of 100: the events are built there, off the agent's thread);
minflt_per_call_<way> and minflt_per_call_work_<way> (minor page faults per call on the timing
thread, ``getrusage(RUSAGE_THREAD)``, over the network and in memory); load_avg_start /
load_avg_end (1-minute load average) and cpus.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import openai

try:  # the HTTP client this openai version is built on
    import httpx2 as httpx
except ImportError:
    import httpx  # type: ignore[no-redef]

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import fakeprovider
from fakeprovider import FakeProvider

from agentledger import collectors as al
from agentledger.collectors import Guard, MemoryTransport
from agentledger.collectors.transport import Batch, NoOpTransport, Outcome
from agentledger.events import Action, CommandParams, ControlCommand, Scope, ScopeKind

MSGS: Any = [{"role": "user", "content": "What is 2 + 2?"}]
TARGET_US = 50.0
BLOCK = 10  # calls per block; a round is one block of each way


class _Proxy(BaseHTTPRequestHandler):
    """Forwards each request to the upstream over one keep-alive connection per thread."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    upstream: tuple[str, int] = ("127.0.0.1", 0)
    local = threading.local()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(*self.upstream)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request("POST", self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def start_proxy(upstream_port: int) -> ThreadingHTTPServer:
    handler = type("Proxy", (_Proxy,), {"upstream": ("127.0.0.1", upstream_port), "local": threading.local()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def guard_with_other_commands() -> Guard:
    """A Guard as a busy tenant has it: kills and throttles for other agents, none for ours."""
    guard = Guard(start=False)
    for n in range(20):
        guard.apply(
            ControlCommand(
                command_id=f"cmd-{uuid.uuid4().hex[:12]}",
                ts=datetime.now(UTC),
                action=Action.KILL,
                scope=Scope(kind=ScopeKind.AGENT, tenant="acme", agent=f"other-{n}"),
                reason="bench",
                params=CommandParams(kill_reason="budget"),
            )
        )
    return guard


class CountingTransport(NoOpTransport):
    """Encodes each batch as the Kafka transport does, counts its events by type and drops
    them: once the broker has a batch the client holds nothing more, so the process's memory
    stays flat. ``MemoryTransport`` (``--transport memory``) keeps every event, and the heap
    grows by one event a hooked call: the benchmark's own cost, not the hook's."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.encoded_bytes = 0

    async def send(self, batches: list[Batch], outcome: Outcome) -> None:
        counts = self.counts
        for batch in batches:
            self.encoded_bytes += len(batch.envelope())
            for event in batch.events:
                kind = event["type"]
                counts[kind] = counts.get(kind, 0) + 1
        outcome.delivered(sum(len(b.events) for b in batches))


def usage_count(transport: Any) -> int:
    if isinstance(transport, CountingTransport):
        return transport.counts.get("usage", 0)
    return sum(1 for e in transport.events if e["type"] == "usage")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Ways:
    """Per-call and per-round times of ways that run in alternating blocks, in µs."""

    def __init__(self, names: list[str]) -> None:
        self.calls: dict[str, list[float]] = {name: [] for name in names}
        self.rounds: dict[str, list[float]] = {name: [] for name in names}  # block mean, wall
        self.rounds_cpu: dict[str, list[float]] = {name: [] for name in names}  # block mean, CPU
        self.faults: dict[str, int] = dict.fromkeys(names, 0)  # minor page faults, this thread

    def diff(self, way: str, base: str, cpu: bool = False) -> list[float]:
        """Per round: the mean of ``way``'s block minus the mean of ``base``'s."""
        rounds = self.rounds_cpu if cpu else self.rounds
        return [a - b for a, b in zip(rounds[way], rounds[base], strict=True)]


def blocks(ways: dict[str, Callable[[], Any]], calls: int, warmup: int) -> Ways:
    """``calls`` calls of each way, in blocks of ``BLOCK``; each round runs one block of every
    way, in an order that reverses from round to round (so no way always follows another).
    The hook is on only while a hooked call runs, so every other way runs the untouched SDK."""
    for _ in range(warmup):
        for fn in ways.values():
            fn()
    out = Ways(list(ways))
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    usage, me = resource.getrusage, resource.RUSAGE_THREAD
    order = list(ways.items())
    gc.collect()
    for n in range(max(1, calls // BLOCK)):
        for name, fn in order if n % 2 == 0 else order[::-1]:
            per_call = out.calls[name]
            f0 = usage(me).ru_minflt
            c0 = cpu_clock()
            b0 = clock()
            for _ in range(BLOCK):
                t0 = clock()
                fn()
                per_call.append((clock() - t0) / 1000)
            out.rounds[name].append((clock() - b0) / 1000 / BLOCK)
            out.rounds_cpu[name].append((cpu_clock() - c0) / 1000 / BLOCK)
            out.faults[name] += usage(me).ru_minflt - f0
    return out


def build_work(emitter: Any, response: Any, nblocks: int) -> list[float]:
    """What the sender thread spends building one usage event from a response (the hook hands
    it over unbuilt), µs per event in blocks of 100, thread CPU time: as the sender does it, in
    a batch."""
    from agentledger.collectors.naming import resolve

    hook = al.hook.installed()
    assert hook is not None
    caller, ts = resolve(emitter), time.time_ns()
    out = []
    for _ in range(nblocks):
        c0 = time.thread_time_ns()
        for _ in range(100):
            hook._response_event(
                caller, "openai", response.usage, response.id, response.model, "openai", None, None, ts
            )
        out.append((time.thread_time_ns() - c0) / 100_000)
    return out


def serve(what: str, upstream: int) -> None:
    """A server process: the fake provider, or the proxy in front of it (prints its port)."""
    if what == "fake":
        # Headers and body leave the fake in two writes: with Nagle on, a keep-alive client
        # waits for the delayed ACK (~40 ms) on every call, burying everything measured here.
        fakeprovider._Handler.disable_nagle_algorithm = True
        fake = FakeProvider().start()
        print(fake.port, flush=True)
    else:
        proxy = start_proxy(upstream)
        print(proxy.server_address[1], flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin


def spawn(what: str, upstream: int = 0) -> tuple[subprocess.Popen[str], int]:
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", what, str(upstream)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    return child, int(child.stdout.readline())


def own_work(response: Any, nblocks: int) -> tuple[list[float], list[float]]:
    """The hook's own work per call, µs: its wrapper around a method that returns ``response``
    at once (no SDK, no network), in blocks of 100 calls (the clock's cost is not counted)."""
    from agentledger.collectors.hook import TARGETS, _wrap

    instant = _wrap(TARGETS[0], lambda self, *args, **kwargs: response)
    resource = type("Resource", (), {"_client": None})()
    out, cpu = [], []
    for _ in range(nblocks):
        c0 = time.thread_time_ns()
        t0 = time.perf_counter_ns()
        for _ in range(100):
            instant(resource, model="gpt-4o", messages=MSGS)
        out.append((time.perf_counter_ns() - t0) / 100_000)
        cpu.append((time.thread_time_ns() - c0) / 100_000)
    return out, cpu


def run(calls: int, warmup: int, transport: str = "counting") -> dict[str, Any]:
    sink: Any = CountingTransport() if transport == "counting" else MemoryTransport()
    emitter = al.configure(tenant="acme", agent="bench", transport=sink)
    guard = guard_with_other_commands()
    figures: dict[str, Any] = {
        "calls": calls,
        "transport": transport,
        "block": BLOCK,
        "cpus": os.cpu_count(),
        "load_avg_start": round(os.getloadavg()[0], 2),
    }
    # Servers in their own processes, as a provider and a gateway are: in this one they would
    # take the GIL from the calls being timed.
    fake, fake_port = spawn("fake")
    proxy, proxy_port = spawn("proxy", fake_port)
    try:
        direct = openai.OpenAI(base_url=f"http://127.0.0.1:{fake_port}/v1", api_key="sk-fake", max_retries=0)
        via_proxy = openai.OpenAI(
            base_url=f"http://127.0.0.1:{proxy_port}/v1", api_key="sk-fake", max_retries=0
        )
        canned = direct.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSGS).http_response
        in_memory = openai.OpenAI(
            base_url="http://in-memory/v1", api_key="sk-fake", max_retries=0,
            http_client=httpx.Client(transport=httpx.MockTransport(
                lambda request: httpx.Response(200, content=canned.content, headers={"content-type": "application/json"})
            )),
        )  # fmt: skip

        al.instrument(guard=guard)
        # The same call without the hook: the SDK's own method, as stored when it was wrapped.
        original = next(o for cls, name, o, _ in al.hook._PATCHED if cls.__name__ == "Completions")

        def plain(client: openai.OpenAI) -> Callable[[], Any]:
            return lambda: original(client.chat.completions, model="gpt-4o", messages=MSGS)

        def hooked(client: openai.OpenAI) -> Callable[[], Any]:
            return lambda: client.chat.completions.create(model="gpt-4o", messages=MSGS)

        with emitter.span("bench", kind="agent", agent="bench"):
            net = blocks(
                {"plain": plain(direct), "hooked": hooked(direct), "proxy": plain(via_proxy)}, calls, warmup
            )
            mem = blocks({"plain": plain(in_memory), "hooked": hooked(in_memory)}, calls, warmup)
            assert al.flush(10)  # the usage events are built on the sender's thread: count after
            recorded = al.hook.installed().recorded  # type: ignore[union-attr]
            usage_events = usage_count(sink)
            response = direct.chat.completions.parse(model="gpt-4o", messages=MSGS)
            own, own_cpu = own_work(response, calls // 10)
            build = build_work(emitter, response, calls // 10)
        al.uninstrument()
    finally:
        for child in (proxy, fake):
            child.communicate(timeout=10)  # closes its stdin: it exits
    figures["load_avg_end"] = round(os.getloadavg()[0], 2)
    for name, values in net.calls.items():
        figures[f"call_us_median_{name}"] = round(statistics.median(values), 1)
        figures[f"call_us_p99_{name}"] = round(pct(values, 0.99), 1)
    hook_wall, hook_cpu, proxy_wall = (
        net.diff("hooked", "plain"),
        net.diff("hooked", "plain", cpu=True),
        net.diff("proxy", "plain"),
    )
    figures["hook_overhead_us_median"] = round(statistics.median(hook_wall), 1)
    figures["hook_overhead_us_p99"] = round(pct(net.calls["hooked"], 0.99) - pct(net.calls["plain"], 0.99), 1)
    figures["hook_cpu_us_median"] = round(statistics.median(hook_cpu), 1)
    figures["hook_cpu_us_p99"] = round(pct(hook_cpu, 0.99), 1)
    figures["proxy_overhead_us_median"] = round(statistics.median(proxy_wall), 1)
    figures["proxy_overhead_us_p99"] = round(pct(net.calls["proxy"], 0.99) - pct(net.calls["plain"], 0.99), 1)
    anchor = figures["proxy_overhead_us_median"]
    figures["hook_proxy_ratio"] = (
        round(figures["hook_overhead_us_median"] / anchor, 3) if anchor > 0 else None
    )
    for prefix, ways in (("minflt_per_call", net), ("minflt_per_call_work", mem)):
        for name, faults in ways.faults.items():
            figures[f"{prefix}_{name}"] = round(faults / len(ways.calls[name]), 3)
    work, work_cpu = mem.diff("hooked", "plain"), mem.diff("hooked", "plain", cpu=True)
    figures["hook_work_us_median"] = round(statistics.median(work), 1)
    figures["hook_work_us_p99"] = round(pct(work, 0.99), 1)
    figures["hook_work_cpu_us_median"] = round(statistics.median(work_cpu), 1)
    figures["hook_work_cpu_us_p99"] = round(pct(work_cpu, 0.99), 1)
    figures["hook_own_us_median"] = round(statistics.median(own), 2)
    figures["hook_own_us_p99"] = round(pct(own, 0.99), 2)
    figures["hook_own_cpu_us_median"] = round(statistics.median(own_cpu), 2)
    figures["hook_own_cpu_us_p99"] = round(pct(own_cpu, 0.99), 2)
    figures["sender_build_cpu_us_median"] = round(statistics.median(build), 2)
    figures["usage_events"] = usage_events
    figures["usage_events_expected"] = recorded
    figures["hooked_calls"] = 2 * (BLOCK * max(1, calls // BLOCK) + warmup)
    al.shutdown(5)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few calls (CI: a few seconds)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--transport",
        choices=("counting", "memory"),
        default="counting",
        help="where the events go: encoded, counted and dropped (default, as Kafka leaves the "
        "process) or kept in memory (MemoryTransport: the heap grows an event a call)",
    )
    parser.add_argument("--serve", nargs=2, metavar=("fake|proxy", "UPSTREAM_PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0
    calls, warmup = (200, 20) if args.quick else (3000, 200)
    figures = run(calls, warmup, args.transport)
    print(
        f"{'figure':30} {'median µs':>10} {'p99 µs':>10}  note "
        f"(load {figures['load_avg_start']:.1f} -> {figures['load_avg_end']:.1f} on {figures['cpus']} CPUs, "
        f"{figures['transport']} transport)"
    )
    rows = [
        ("call, plain", "call_us_median_plain", "call_us_p99_plain", "openai SDK -> local server"),
        ("call, hooked", "call_us_median_hooked", "call_us_p99_hooked", "same call, al.instrument()"),
        ("call, via proxy", "call_us_median_proxy", "call_us_p99_proxy", "same call, one local hop"),
        ("hook overhead", "hook_overhead_us_median", "hook_overhead_us_p99", f"per-round diff, target <= {TARGET_US:g}"),
        ("hook overhead, thread CPU", "hook_cpu_us_median", "hook_cpu_us_p99", "per-round diff of CPU time"),
        ("proxy overhead (anchor)", "proxy_overhead_us_median", "proxy_overhead_us_p99", "gateway floor"),
        ("hook work (no network)", "hook_work_us_median", "hook_work_us_p99", "in-memory transport"),
        ("hook work, thread CPU", "hook_work_cpu_us_median", "hook_work_cpu_us_p99", "same, CPU time"),
        ("hook's own work (warm)", "hook_own_us_median", "hook_own_us_p99", "wrapper alone, blocks of 100"),
        ("hook's own work, CPU", "hook_own_cpu_us_median", "hook_own_cpu_us_p99", "same, thread time"),
    ]  # fmt: skip
    for label, median_key, p99_key, note in rows:
        print(f"{label:30} {figures[median_key]:>10,.1f} {figures[p99_key]:>10,.1f}  {note}")
    if figures["hook_proxy_ratio"] is not None:
        print(f"hook / proxy overhead (median): {figures['hook_proxy_ratio']:.3f}")
    print(
        f"usage event built on the sender's thread: {figures['sender_build_cpu_us_median']:.1f} µs CPU each"
    )
    print(
        "minor page faults per call, this thread: "
        + ", ".join(
            f"{k[len('minflt_per_call_') :]} {v:.3f}" for k, v in figures.items() if k.startswith("minflt_")
        )
    )
    print(f"usage events recorded: {figures['usage_events']} for {figures['hooked_calls']} hooked calls")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
