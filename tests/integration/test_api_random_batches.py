"""Issue #13, hardening: random batches through the real API, worker, sink and warehouse.

Hypothesis builds batches of contract events (several tenants and keys, every event type,
names with Unicode edge cases, attributes and token counts on both sides of the documented
caps, duplicated event ids within and across tenants) and posts them to the API on a real
broker. Each event carries at most one deliberate defect, so the test knows, independently of
the product, which events must be accepted and which field a rejection must name. After every
batch the 202/422/403/413 answer is checked event by event; at the end the real worker prices
everything, the real sink lands it, and DuckDB must hold every accepted (tenant, event_id)
exactly once, nothing rejected, and every name NFKC-normalised.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from _streams_harness import Worker, start_worker
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentledger.api.app import create_app
from agentledger.api.config import ApiSettings
from agentledger.api.testing import ApiServer, standard_keys
from agentledger.settings import Settings
from agentledger.warehouse.catalog import Catalog
from agentledger.warehouse.sink import Sink, SinkConfig

MAX_EVENTS = 5_000  # AGENTLEDGER_API_MAX_EVENTS_PER_REQUEST, documented default
MAX_BODY = 5 * 1024 * 1024  # AGENTLEDGER_API_MAX_BODY_BYTES, documented default
MAX_VALUE = 4096  # attribute string values
MAX_ATTRS = 32

# -- names ---------------------------------------------------------------------------------------
# Valid after NFKC: plain ASCII, full-width letters, ligatures, combining marks (decomposed and
# precomposed forms of one name), emoji with modifiers, RTL script, names at the length limit
# only after normalisation.
VALID_NAMES = [
    "planner",
    "coder-2.v",
    "a",
    "ｐｌａｎｎｅｒ",  # full-width: "planner"
    "ﬁle-bot",  # ligature: "file-bot"
    "e\u0301quipe",  # combining acute: "équipe"
    "\u00e9quipe",  # precomposed: the same name as the previous one
    "🤖 bot",
    "👍🏽 reviewer",  # skin-tone modifier (Sk), not a format character
    "שלום",  # right-to-left script without any bidi control
    "Ω-\u2126",  # OHM SIGN folds to GREEK OMEGA
    "①②",  # circled digits: "12"
    "my\u00a0agent",  # NBSP inside folds to a space (allowed inside)
    "x" * 128,
    "ﬁ" * 64,  # 64 characters sent, 128 after NFKC: at the limit
    "e\u0301" * 128,  # 256 characters sent, 128 after NFKC
    "租户-🚀",
]
# Refused, and why (the reason must name the field that carries the name).
INVALID_NAMES = [
    "bad\u200bname",  # ZERO WIDTH SPACE (Cf)
    "evil\u202etxt.exe",  # RIGHT-TO-LEFT OVERRIDE (Cf)
    "\ufeffbom",  # BOM (Cf)
    "line\nbreak",
    "tab\tbed",
    "nul\x00byte",
    "para\u2029sep",  # PARAGRAPH SEPARATOR (Zp)
    "👨\u200d👩\u200d👧",  # emoji joined by ZERO WIDTH JOINER (Cf)
    "x" * 129,
    "ﬁ" * 65,  # 65 sent, 130 after NFKC: over the limit
    "a/b",
    "ａ／ｂ",  # FULLWIDTH SOLIDUS folds to "/"
    " lead",
    "\u3000lead",  # IDEOGRAPHIC SPACE folds to a leading space
    "\u00a0lead",  # NBSP folds to a leading space
    "",
]
# Tenants an all-tenant key sends (some of them one tenant under two spellings).
ADMIN_TENANTS = [
    "acme",
    "ａｃｍｅ",
    "globex",
    "ｉｎｉｔｅｃｈ",
    "initech",
    "café",
    "cafe\u0301",
    "租户",
    "🚀team",
]
BOUND = {
    "acme_ingest": ("acme", ["acme", "ａｃｍｅ"]),
    "globex_ingest": ("globex", ["globex", "ｇｌｏｂｅｘ"]),
}


def nfkc(name: str) -> str:
    return unicodedata.normalize("NFKC", name)


# -- event specs ---------------------------------------------------------------------------------


@dataclass
class Spec:
    """One event as drawn: its type, names, edge values and at most one defect."""

    kind: str
    tenant: str
    agent: str
    workflow: str | None
    defect: str | None = None  # the field the rejection must name; None: valid
    overrides: dict[str, Any] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    dup: int | None = None  # resend an earlier event of the batch (same id)
    dup_other_tenant: bool = False  # ... under another tenant (a different event, same id)


# (field, value, the field a rejection names or None). Token counts are strict integers from 0
# to 100 million; cached tokens are part of input_tokens (1200 in every usage event here).
TOKEN_EDGES: list[tuple[str, Any, str | None]] = [
    ("input_tokens", 0, None),
    ("input_tokens", 100_000_000, None),
    ("output_tokens", 100_000_000, None),
    ("cache_read_tokens", 1200, None),
    ("input_tokens", True, "input_tokens"),
    ("output_tokens", False, "output_tokens"),
    ("input_tokens", -1, "input_tokens"),
    ("output_tokens", 100_000_001, "output_tokens"),
    ("input_tokens", 2**63 - 1, "input_tokens"),
    ("input_tokens", "12", "input_tokens"),
    ("output_tokens", 1.0, "output_tokens"),
    ("cache_read_tokens", 10**9, "cache_read_tokens"),
    ("cache_read_tokens", 1201, "input_tokens"),  # more cached than sent: names input_tokens
]
VALUE_CHARS = ["x", "é", "🙂", "\n", "\u200b"]  # values are free text (hidden characters allowed)


@st.composite
def specs(draw: st.DrawFn, tenants: list[str]) -> Spec:
    kind = draw(st.sampled_from(["usage", "span", "tool_call", "quality"]))
    spec = Spec(
        kind=kind,
        tenant=draw(st.sampled_from(tenants)),
        agent=draw(st.sampled_from(VALID_NAMES)),
        workflow=draw(st.none() | st.sampled_from(VALID_NAMES)),
    )
    n_small = draw(st.integers(0, 3))
    spec.attributes = {f"k{i}": draw(st.sampled_from(["v", 7, 1.5, True])) for i in range(n_small)}
    edge = draw(
        st.sampled_from(
            [
                "none",
                "none",
                "none",
                "name",
                "bad_name",
                "value",
                "count",
                "tokens",
                "event_id",
                "missing",
                "type",
            ]
        )
    )
    if edge == "name":  # a valid edge-case name in another named field
        where = draw(st.sampled_from(["attribute_key", "tool", "model"]))
        name = draw(st.sampled_from(VALID_NAMES))
        if where == "attribute_key" or kind not in ("tool_call", "usage"):
            spec.attributes[name] = "v"
        else:
            spec.overrides["tool" if kind == "tool_call" else "model"] = name
    elif edge == "bad_name":
        name = draw(st.sampled_from(INVALID_NAMES))
        where = draw(st.sampled_from(["agent", "workflow", "tenant", "attributes"]))
        if where == "attributes":
            if name.startswith((" ", "\u3000", "\u00a0")) or "/" in nfkc(name):
                name = "bad\u200bkey"  # a key may hold "/" and lead with a space (these are valid keys)
            spec.attributes[name] = "v"
        else:
            setattr(spec, where, name)
        spec.defect = where
    elif edge == "value":
        length = draw(st.sampled_from([MAX_VALUE - 1, MAX_VALUE, MAX_VALUE + 1]))
        spec.attributes["big"] = draw(st.sampled_from(VALUE_CHARS)) * length
        spec.defect = "attributes" if length > MAX_VALUE else None
    elif edge == "count":
        n = draw(st.sampled_from([MAX_ATTRS, MAX_ATTRS + 1]))
        spec.attributes = {f"attr.{i}": i for i in range(n)}
        spec.defect = "attributes" if n > MAX_ATTRS else None
    elif edge == "tokens":
        spec.kind = "usage"
        name, value, spec.defect = draw(st.sampled_from(TOKEN_EDGES))
        spec.overrides[name] = value
    elif edge == "event_id":
        spec.overrides["event_id"] = draw(
            st.sampled_from(["short7c", "x" * 65, "has space-1", "ümlaut-id-1"])
        )
        spec.defect = "event_id"
    elif edge == "missing":
        spec.overrides["trace_id"] = None
        spec.defect = "trace_id"
    elif edge == "type":
        spec.overrides["type"] = "bogus"
        spec.defect = "type"
    return spec


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, list[Spec], int]:
    """(key role, event specs, how many events of earlier batches to resend)."""
    role = draw(st.sampled_from(["admin", "admin", "acme_ingest", "globex_ingest"]))
    tenants = ADMIN_TENANTS if role == "admin" else BOUND[role][1]
    size = draw(st.sampled_from([1, 2, 5, 12, 40]))
    events = draw(st.lists(specs(tenants), min_size=size, max_size=size))
    for i in range(1, len(events)):
        if draw(st.integers(0, 9)) == 0:  # ~10 %: the same event_id again
            events[i].dup = draw(st.integers(0, i - 1))
            events[i].dup_other_tenant = role == "admin" and draw(st.booleans())
    if role != "admin" and draw(st.integers(0, 14)) == 0:  # a bound key sending another tenant
        events[-1] = Spec(events[-1].kind, "initech", "planner", None)
    return role, events, draw(st.integers(0, 2))


# -- the run's ledger ----------------------------------------------------------------------------


@dataclass
class Ledger:
    t0: datetime
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    ids: Iterator[int] = field(default_factory=itertools.count)
    # (tenant, id) -> the accepted docs (several when an id was reused within a tenant)
    accepted: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    accepted_docs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (role, doc)
    refused_ids: set[str] = field(default_factory=set)
    accepted_copies: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    explained: Counter[str] = field(default_factory=Counter)  # rejections checked, by field
    folded: int = 0  # accepted events whose names NFKC changed

    def new_id(self) -> str:
        return f"fz-{self.run}-{next(self.ids):06d}"

    def hexid(self, n: int) -> str:
        return f"{next(self.ids) + 1:0{n}x}"

    def doc(self, spec: Spec) -> dict[str, Any]:
        ts = self.t0.isoformat()
        doc: dict[str, Any] = {
            "type": spec.kind,
            "event_id": self.new_id(),
            "ts": ts,
            "tenant": spec.tenant,
            "agent": spec.agent,
            "trace_id": self.hexid(32),
            "span_id": self.hexid(16),
            "attributes": spec.attributes,
        }
        if spec.workflow is not None:
            doc["workflow"] = spec.workflow
        if spec.kind == "usage":
            doc |= {"provider": "openai", "model": "gpt-4o", "input_tokens": 1200, "output_tokens": 80}
        elif spec.kind == "span":
            start = (self.t0 - timedelta(seconds=2)).isoformat()
            doc |= {"name": "chat gpt-4o", "kind": "llm", "start": start, "end": ts, "status": "ok"}
        elif spec.kind == "tool_call":
            doc |= {"tool": "search", "args_hash": "0123456789abcdef"}
        else:
            doc |= {"metric": "faithfulness", "score": 0.75}
        for k, v in spec.overrides.items():
            if v is None:
                doc.pop(k, None)
            else:
                doc[k] = v
        return doc


@dataclass
class Api:
    url: str
    keys: dict[str, str]

    def post(self, role: str, body: bytes) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[role]}", "content-type": "application/json"}
        return httpx.post(self.url + "/v1/events", content=body, headers=headers, timeout=120)


def post_and_check(
    api: Api, ledger: Ledger, role: str, docs: list[dict[str, Any]], defects: list[str | None]
) -> None:
    """Post one batch; the answer must match the defects event by event; record the outcome."""
    body = orjson.dumps({"events": docs})
    response = api.post(role, body)
    ledger.statuses[response.status_code] += 1
    bound = BOUND.get(role, (None, []))[0]
    valid = [i for i, d in enumerate(defects) if d is None]
    foreign = [i for i in valid if bound is not None and nfkc(docs[i]["tenant"]) != bound]
    answer = response.json()
    if len(body) > MAX_BODY:
        assert response.status_code == 413, response.text[:500]
        expected_ok: list[int] = []
    elif len(docs) > MAX_EVENTS:
        assert response.status_code == 422, response.text[:500]
        assert [p["loc"] for p in answer["detail"]["problems"]] == ["events"]
        expected_ok = []
    elif foreign:
        assert response.status_code == 403, response.text[:500]
        assert f"indexes {foreign[:10]}" in answer["detail"], answer  # names the foreign events
        expected_ok = []
    elif not valid:
        assert response.status_code == 422, response.text[:500]
        problems = answer["detail"]["problems"]
        assert [p["loc"] for p in problems] == [f"events.{i}" for i in range(len(docs))], problems
        for p in problems:
            field_name = defects[int(p["loc"].split(".")[1])]
            assert field_name and field_name in p["msg"], (field_name, p, docs[int(p["loc"].split(".")[1])])
            ledger.explained[field_name] += 1
        expected_ok = []
    else:
        assert response.status_code == 202, response.text[:1000]
        rejected = answer["rejected"]
        assert [r["index"] for r in rejected] == [i for i, d in enumerate(defects) if d is not None], rejected
        for r in rejected:  # every rejection explained, naming the field at fault
            field_name = defects[r["index"]]
            assert field_name and r["reason"] and field_name in r["reason"], (field_name, r)
            ledger.explained[field_name] += 1
        assert answer["accepted"] == len(valid)
        groups = {(nfkc(docs[i]["tenant"]), nfkc(docs[i]["agent"])) for i in valid}
        assert answer["envelopes"] >= len(groups)
        expected_ok = valid
    ok = set(expected_ok)
    for i, doc in enumerate(docs):
        if i in ok:
            key = (nfkc(doc["tenant"]), doc["event_id"])
            ledger.accepted.setdefault(key, []).append(doc)
            ledger.accepted_docs.append((role, doc))
            ledger.accepted_copies += 1
            names = [doc["tenant"], doc["agent"], doc.get("workflow") or "", *doc["attributes"]]
            ledger.folded += any(nfkc(n) != n for n in names)
        elif isinstance(doc.get("event_id"), str):
            ledger.refused_ids.add(doc["event_id"])


def build(
    ledger: Ledger, role: str, specs_: list[Spec], resend: int
) -> tuple[list[dict[str, Any]], list[str | None]]:
    docs: list[dict[str, Any]] = []
    defects: list[str | None] = []
    for spec in specs_:
        if spec.dup is not None:
            original = docs[spec.dup]
            doc = dict(original)
            defect = defects[spec.dup]
            if spec.dup_other_tenant:  # the same id under another tenant: a different event
                doc = ledger.doc(Spec(spec.kind, "globex" if nfkc(original["tenant"]) != "globex" else "acme",
                                      spec.agent, spec.workflow))  # fmt: skip
                doc["event_id"] = original["event_id"]
                defect = "event_id" if defects[spec.dup] == "event_id" else None  # only its id is shared
            docs.append(doc)
            defects.append(defect)
        else:
            docs.append(ledger.doc(spec))
            defects.append(spec.defect)
    # retries of events accepted in earlier batches, with a key allowed to send them
    earlier = [doc for r, doc in ledger.accepted_docs if r == role or role == "admin"]
    for j in range(min(resend, len(earlier))):
        docs.append(earlier[(j * 7919 + len(docs)) % len(earlier)])
        defects.append(None)
    return docs, defects


def landed_as_sent(row: dict[str, Any], sent: dict[str, Any]) -> bool:
    """A warehouse row holds the event sent: names NFKC-normalised (tool and model too),
    edge token counts exact, attribute keys normalised and values kept to the character."""
    names = ("tenant", "agent", "workflow", "tool", "model")
    counts = ("input_tokens", "output_tokens", "cache_read_tokens")
    return (
        all(row[n] == (nfkc(sent[n]) if n in sent else None) for n in names)
        and all(row[c] == sent[c] for c in counts if c in sent)
        and row["type"] == sent["type"]
        and orjson.loads(row["attributes"] or "{}") == {nfkc(k): v for k, v in sent["attributes"].items()}
    )


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def api(topics: Any, tmp_path: Path) -> Iterator[Api]:
    keys = standard_keys(tmp_path / "keys.sqlite")
    app = create_app(
        Settings(kafka_bootstrap=topics.bootstrap, topic_prefix=topics.prefix, home=tmp_path),
        ApiSettings(keys_path=tmp_path / "keys.sqlite"),  # the documented defaults
    )
    with ApiServer(app) as url:
        yield Api(url, keys)


def wait_for_worker(worker: Worker, n: int, timeout: float = 150.0) -> dict[str, Any]:
    """Until the worker published ``n`` distinct events, or its counters stop moving."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    still_since = time.monotonic()
    while time.monotonic() < deadline:
        assert worker.proc.poll() is None, f"worker died:\n{worker.log.read_text()[-3000:]}"
        counters = worker.stats()["counters"]
        if counters.get("events", 0) >= n:
            return dict(counters)
        if counters != last:
            last, still_since = counters, time.monotonic()
        elif time.monotonic() - still_since > 20:
            break
        time.sleep(0.3)
    return dict(last)


# -- the test ------------------------------------------------------------------------------------


def big_batch(ledger: Ledger) -> tuple[list[dict[str, Any]], list[str | None]]:
    """The documented maximum: 5,000 events in one request, edge names and defects sprinkled in."""
    docs: list[dict[str, Any]] = []
    defects: list[str | None] = []
    kinds = itertools.cycle(["usage", "span", "tool_call", "quality"])
    good, bad = itertools.cycle(VALID_NAMES), itertools.cycle(INVALID_NAMES)
    for i in range(MAX_EVENTS):
        spec = Spec(next(kinds), ADMIN_TENANTS[i % len(ADMIN_TENANTS)], "bulk", None)
        if i % 97 == 0:
            spec.agent = next(good)
        if i % 331 == 5:
            spec.agent, spec.defect = next(bad), "agent"
        if i % 613 == 11:
            spec.workflow, spec.defect = next(bad), "workflow"
        if i % 499 == 7:
            spec.attributes = {"big": "é" * (MAX_VALUE + i % 2)}
            spec.defect = "attributes" if i % 2 else None
        docs.append(ledger.doc(spec))
        defects.append(spec.defect)
    return docs, defects


def test_random_batches_land_exactly_once_and_every_rejection_is_explained(
    api: Api, topics: Any, tmp_path: Path
) -> None:
    ledger = Ledger(t0=datetime.now(UTC) - timedelta(minutes=2))

    @given(batch=batches())
    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
    def post_random(batch: tuple[str, list[Spec], int]) -> None:
        role, specs_, resend = batch
        docs, defects = build(ledger, role, specs_, resend)
        post_and_check(api, ledger, role, docs, defects)

    post_random()

    # The documented limits, at and over them.
    docs, defects = big_batch(ledger)
    assert len(orjson.dumps({"events": docs})) <= MAX_BODY
    post_and_check(api, ledger, "admin", docs, defects)
    over = [ledger.doc(Spec("usage", "acme", "over", None)) for _ in range(MAX_EVENTS + 1)]
    post_and_check(api, ledger, "admin", over, [None] * len(over))  # 422: nothing written
    huge = [
        ledger.doc(Spec("span", "acme", "huge", None, attributes={"a": "x" * MAX_VALUE})) for _ in range(1300)
    ]
    post_and_check(api, ledger, "admin", huge, [None] * len(huge))  # 413: over 5 MiB
    # the run really exercised the edges (a strategy that drifted to trivial batches fails here)
    fields = {
        "tenant",
        "agent",
        "workflow",
        "attributes",
        "input_tokens",
        "output_tokens",
        "event_id",
        "trace_id",
    }
    assert fields <= set(ledger.explained) and ledger.folded > 50, (ledger.explained, ledger.folded)
    assert ledger.statuses[202] >= 10 and ledger.statuses[422] >= 2 and ledger.statuses[413] == 1, (
        ledger.statuses
    )

    # The real worker prices everything, the real sink lands it.
    worker = start_worker(topics, tmp_path / "worker")
    try:
        counters = wait_for_worker(worker, len(ledger.accepted))
    finally:
        worker.kill()
    root = str(tmp_path / "wh")
    config = SinkConfig(topics.bootstrap, root, prefix=topics.prefix, group_id="wh-random", batch_rows=2000)
    stats = asyncio.run(Sink(config).run(idle_seconds=4, max_seconds=150))
    assert stats.rejected == 0, stats

    cat = Catalog(root)
    rows = cat.query(
        "SELECT tenant, event_id, agent, workflow, type, tool, model, input_tokens, output_tokens, "
        "cache_read_tokens, attributes FROM raw_events"
    )
    landed = Counter((r["tenant"], r["event_id"]) for r in rows)
    view = Counter((r["tenant"], r["event_id"]) for r in cat.query("SELECT tenant, event_id FROM events"))
    missing = set(ledger.accepted) - set(view)
    assert not missing, (len(missing), sorted(missing)[:5], counters)
    assert set(view) == set(ledger.accepted), sorted(set(view) - set(ledger.accepted))[:5]
    assert max(view.values()) == 1  # the warehouse's events view: each event once
    assert max(landed.values()) == 1, landed.most_common(3)  # the worker deduped the retries already
    # an id refused once may be accepted elsewhere (under another tenant, or valid the next time)
    never = ledger.refused_ids - {event_id for _, event_id in ledger.accepted}
    assert len(never) > 100 and not never & {e for _, e in landed}, sorted(never & {e for _, e in landed})[:5]
    for r in rows:  # as sent (one of the accepted copies of its id), names NFKC-normalised
        copies = ledger.accepted[(r["tenant"], r["event_id"])]
        assert any(landed_as_sent(r, sent) for sent in copies), (r, copies)
    assert counters.get("dlq", 0) == 0 and counters.get("rejected_events", 0) == 0, counters
    assert ledger.accepted_copies > len(ledger.accepted)  # duplicates were really sent
