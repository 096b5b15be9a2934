"""API ingest and query benchmark.

A load process (a separate Python process on 127.0.0.1, asyncio + httpx) posts batches of
100 contract events to ``POST /v1/events`` with several requests in flight, then times
``GET /v1/costs`` on a small warehouse. The anchor, measured in the same run by the same load
process: the same batches produced straight to Kafka with aiokafka (envelopes, acks=all,
idempotence) — what the API costs on top of the broker.

Keys: ingest_events_per_s, ingest_p99_ms, query_p99_ms, anchor_kafka_events_per_s,
ratio_api_to_kafka, and ingest_events_per_server_cpu_s (events per CPU-second of the API server,
which does not depend much on what else the shared machine is running).
Usage: .venv/bin/python benchmarks/api.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

BATCH = 100


def _p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]


def _bodies(batches: int) -> list[bytes]:
    import orjson

    from agentledger.samples import sample_events

    out = []
    for i in range(batches):
        events = sample_events(BATCH, seed=1000 + i, tenant="acme", agent=f"bench-{i % 8}")
        out.append(orjson.dumps({"events": [e.model_dump(mode="json") for e in events]}))
    return out


async def _load(
    url: str, key: str, read_key: str, bootstrap: str, topic: str, batches: int, concurrency: int
) -> dict[str, Any]:
    """Runs in the load process: API ingest, queries, then the Kafka anchor."""
    import httpx
    import orjson
    from aiokafka import AIOKafkaProducer

    from agentledger.wire import encode_envelope_dicts

    bodies = _bodies(batches)
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as client:
        await client.post("/v1/events", content=bodies[0])  # warm-up (connections, producer metadata)
        queue = list(range(1, len(bodies)))

        async def worker() -> None:
            while queue:
                body = bodies[queue.pop()]
                t = time.perf_counter()
                r = await client.post("/v1/events", content=body)
                latencies.append((time.perf_counter() - t) * 1000)
                if r.status_code != 202:
                    raise RuntimeError(f"ingest answered {r.status_code}: {r.text[:200]}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        ingest_s = time.perf_counter() - t0
        print("INGEST_DONE", flush=True)  # the parent stops counting the server's CPU here

        query_ms: list[float] = []
        for i in range(200 if batches >= 1000 else 60):
            t = time.perf_counter()
            params = {"group_by": ["agent", "model"], "bucket": "hour"} if i % 2 else {}
            r = await client.get("/v1/costs", params=params, headers={"authorization": f"Bearer {read_key}"})
            query_ms.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                raise RuntimeError(f"query answered {r.status_code}: {r.text[:200]}")

    # Anchor: the same events, as envelopes, straight to Kafka (same in-flight depth).
    envelopes = []
    for body in bodies[1:]:
        events = orjson.loads(body)["events"]
        by_key: dict[str, list[Any]] = {}
        for e in events:
            by_key.setdefault(f"{e['tenant']}/{e['agent']}", []).append(e)
        envelopes += [(k, encode_envelope_dicts(k, v)) for k, v in by_key.items()]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    await producer.start()
    try:
        await producer.send_and_wait(topic, envelopes[0][1], key=envelopes[0][0].encode())
        t0 = time.perf_counter()
        pending = [await producer.send(topic, value, key=k.encode()) for k, value in envelopes]
        await asyncio.gather(*pending)
        anchor_s = time.perf_counter() - t0
    finally:
        await producer.stop()
    events = (len(bodies) - 1) * BATCH
    return {
        "ingest_events_per_s": events / ingest_s,
        "ingest_p50_ms": statistics.median(latencies),
        "ingest_p99_ms": _p99(latencies),
        "query_p50_ms": statistics.median(query_ms),
        "query_p99_ms": _p99(query_ms),
        "anchor_kafka_events_per_s": events / anchor_s,
        "events": events,
        "concurrency": concurrency,
    }


def _drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load process; measure the CPU this process (the API server's threads; the main
    thread only waits) spent while the load process generated and posted its batches. Posting
    is the only work the server does then, so events per server CPU-second is the API's
    capacity on one free core, whatever else the machine is doing."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--load", json.dumps(spec)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    cpu0 = time.process_time()
    assert proc.stdout is not None and proc.stderr is not None
    cpu_ingest = None
    lines = []
    for line in proc.stdout:
        if line.startswith("INGEST_DONE"):
            cpu_ingest = time.process_time() - cpu0
        lines.append(line)
    stderr = proc.stderr.read()
    if proc.wait(timeout=600) != 0 or cpu_ingest is None:
        raise SystemExit(f"load process failed:\n{stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["server_cpu_s_ingest"] = cpu_ingest
    result["ingest_events_per_server_cpu_s"] = result["events"] / cpu_ingest
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run (CI): under a minute")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight")
    parser.add_argument("--load", help=argparse.SUPPRESS)  # internal: run as the load process
    args = parser.parse_args()
    if args.load:
        spec = json.loads(args.load)
        print(json.dumps(asyncio.run(_load(**spec))))
        return

    from agentledger.admin import create_topics
    from agentledger.api.app import create_app
    from agentledger.api.config import ApiSettings
    from agentledger.api.testing import ApiServer, land_demo_warehouse, standard_keys
    from agentledger.localkafka import LocalKafka
    from agentledger.settings import Settings
    from agentledger.warehouse.reader import WarehouseReader

    batches = 300 if args.quick else 3000
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        home = Path(tmp)
        local = None
        bootstrap = os.environ.get("AGENTLEDGER_KAFKA_BOOTSTRAP")
        if not bootstrap:
            local = LocalKafka(home / "kafka")
            bootstrap = local.up(nodes=1, timeout=120).bootstrap
        try:
            prefix = f"bench{uuid.uuid4().hex[:8]}."
            asyncio.run(create_topics(bootstrap, prefix=prefix))
            land_demo_warehouse(str(home / "wh"), n_traces=2000)
            keys = standard_keys(home / "keys.sqlite")
            limits = ApiSettings(keys_path=home / "keys.sqlite", ingest_rate_per_s=1e9, ingest_burst=10**9)
            app = create_app(
                Settings(kafka_bootstrap=bootstrap, topic_prefix=prefix, home=home),
                limits,
                warehouse=WarehouseReader(str(home / "wh")),
            )
            with ApiServer(app) as url:
                spec = {"url": url, "key": keys["acme_ingest"], "read_key": keys["acme_read"], "bootstrap": bootstrap,
                        "topic": prefix + "agentledger.events.v1", "batches": batches,
                        "concurrency": args.concurrency}  # fmt: skip
                result = _drive(spec)
        finally:
            if local is not None:
                local.down()
    result["ratio_api_to_kafka"] = result["ingest_events_per_s"] / result["anchor_kafka_events_per_s"]
    result["quick"] = args.quick
    print(f"{'figure':<28}{'value':>14}   anchor (same batches straight to Kafka)")
    print(f"{'ingest_events_per_s':<28}{result['ingest_events_per_s']:>14,.0f}   "
          f"{result['anchor_kafka_events_per_s']:,.0f} events/s  ratio {result['ratio_api_to_kafka']:.2f}")  # fmt: skip
    for key in ("ingest_p50_ms", "ingest_p99_ms", "query_p50_ms", "query_p99_ms"):
        print(f"{key:<28}{result[key]:>14.1f}")
    print(f"{'ingest_events_per_server_cpu_s':<28}{result['ingest_events_per_server_cpu_s']:>14,.0f}   "
          "(capacity of one free core; the machine's load does not change it much)")  # fmt: skip
    print(f"({result['events']:,} events in batches of {BATCH}, {result['concurrency']} requests in flight)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
