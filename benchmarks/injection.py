"""Injection screening: recall, false-positive rate and cost per screened message.

Data (vendored and pinned, benchmarks/data/injection/SOURCES.md): deepset/prompt-injections
(direct, EN + DE, Apache-2.0), BIPIA e-mail contexts with its text attacks inserted (indirect,
tool output, MIT), and the project's own look-alikes (benign typo notes, role-play requests,
encoded text; and encoded / hidden injections), reported apart because we wrote them.

The rules were written and the model trained against the dev split only (the model's two
thresholds, user/agent and tool, chosen there by cross-validation); the table reports the test
split unless ``--split dev``. Anchors in the same run: a naive keyword list (recall / FPR / cost), and the
cost of ``json.loads`` of the same message as a chat message. Usage:
    .venv/bin/python benchmarks/injection.py [--quick] [--split test|dev|all] [--json PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agentledger.collectors.screen_model import LinearDetector, RulesAndModel
from agentledger.collectors.screen_policy import Screener, Screening
from agentledger.collectors.screening import RuleDetector

DATA = Path(__file__).resolve().parent / "data" / "injection"

# The anchor: what a first attempt usually is (lower-cased substring search).
NAIVE_KEYWORDS = (
    "ignore previous instructions", "ignore all previous instructions", "ignore the above",
    "disregard previous instructions", "system prompt", "jailbreak", "forget everything",
    "you are now", "developer mode",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Case:
    text: str
    label: int  # 1 = injection
    group: str  # "direct" | "indirect" | "lookalike"
    split: str  # "dev" | "test"


NEAR_DUPLICATE = 0.8  # word-set Jaccard at which two deepset messages are one document
_WORDS = re.compile(r"\w+")


def near_duplicate_groups(texts: list[str], at: float = NEAR_DUPLICATE) -> list[int]:
    """For each text, the index of its group: texts whose lower-cased word sets overlap by at
    least ``at`` (Jaccard), joined transitively ("Has Russia attacked Ukraine?" and "Has
    Russia attacked Ukraine? Why?" are one group)."""
    words = [frozenset(_WORDS.findall(t.lower())) for t in texts]
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    order = sorted(range(len(texts)), key=lambda i: len(words[i]))
    lo = 0
    for k, i in enumerate(order):
        a = words[i]
        while len(words[order[lo]]) < at * len(a):  # smaller sets cannot reach ``at``
            lo += 1
        for j in order[lo:k]:
            b = words[j]
            inter = len(a & b)
            if inter >= at * (len(a) + len(b) - inter):
                parent[root(i)] = root(j)
    return [root(i) for i in range(len(texts))]


def _deepset() -> list[Case]:
    """deepset rows, split by the SHA-256 of a group's first text in sorted order (3/5 dev):
    near-duplicates (``near_duplicate_groups``) land on the same side."""
    rows = [
        json.loads(line) for line in (DATA / "deepset" / "prompt_injections.jsonl").read_text().splitlines()
    ]
    group = near_duplicate_groups([r["text"] for r in rows])
    key: dict[int, str] = {}
    for g, r in zip(group, rows, strict=True):
        key[g] = min(key.get(g, r["text"]), r["text"])
    out = []
    for g, row in zip(group, rows, strict=True):
        h = int(hashlib.sha256(key[g].encode()).hexdigest()[:8], 16)
        out.append(Case(row["text"], int(row["label"]), "direct", "dev" if h % 5 < 3 else "test"))
    return out


def _bipia() -> list[Case]:
    out = []
    for split, name in (("dev", "train"), ("test", "test")):
        attacks_by_kind = json.loads((DATA / "bipia" / f"text_attack_{name}.json").read_text())
        attacks = [a for kind in attacks_by_kind.values() for a in kind]
        emails = [
            json.loads(x)["context"]
            for x in (DATA / "bipia" / "email" / f"{name}.jsonl").read_text().splitlines()
        ]
        k = 0
        for email in emails:
            out.append(Case(email, 0, "indirect", split))
            for _ in range(2):
                attack = attacks[k % len(attacks)]
                where = k % 3
                if where == 0:
                    text = f"{attack}\n{email}"
                elif where == 1:
                    mid = len(email) // 2
                    cut = email.rfind(" ", 0, mid) + 1 or mid
                    text = f"{email[:cut]}\n{attack}\n{email[cut:]}"
                else:
                    text = f"{email}\n{attack}"
                out.append(Case(text, 1, "indirect", split))
                k += 1
    return out


def _lookalikes() -> list[Case]:
    rows = [json.loads(x) for x in (DATA / "lookalikes" / "lookalikes.jsonl").read_text().splitlines()]
    return [
        Case(r["text"], int(r["label"]), "lookalike", "dev" if i % 2 == 0 else "test")
        for i, r in enumerate(rows)
    ]


def load_cases() -> list[Case]:
    return _deepset() + _bipia() + _lookalikes()


def naive(text: str) -> bool:
    low = text.lower()
    return any(k in low for k in NAIVE_KEYWORDS)


def rates(cases: list[Case], flag: Callable[[Case], bool]) -> dict[str, float | int]:
    tp = fn = fp = tn = 0
    for c in cases:
        hit = flag(c)
        if c.label:
            tp, fn = tp + hit, fn + (not hit)
        else:
            fp, tn = fp + hit, tn + (not hit)
    return {
        "recall": round(tp / (tp + fn), 4) if tp + fn else float("nan"),
        "fpr": round(fp / (fp + tn), 4) if fp + tn else float("nan"),
        "positives": tp + fn,
        "negatives": fp + tn,
    }


def cost_us(texts: list[str], fn: Callable[[str], object], rounds: int) -> tuple[float, float]:
    """Median and p99 µs per call over ``rounds`` passes of every text (one timing per call)."""
    samples: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for t in texts:
            t0 = clock()
            fn(t)
            samples.append((clock() - t0) / 1000)
    samples.sort()
    return round(statistics.median(samples), 2), round(samples[int(len(samples) * 0.99)], 2)


class _Sink:
    """Stands in for the emitter's queue: the hook's check only enqueues."""

    def __init__(self) -> None:
        self._worker = self
        self.events: list[dict[str, object]] = []

    def put(self, event: dict[str, object]) -> None:
        self.events.append(event)


class _Caller:
    tenant, agent, agent_version, workflow = "acme", "writer", None, None
    trace_id, span_id, parent_span_id = "a" * 32, "b" * 16, None


def hook_check_us(texts: list[str], rounds: int) -> tuple[float, float]:
    """What the hook's screening adds to one chat call whose last message is a tool result
    (system, user, assistant tool call, tool result): first sight, and the same history again
    (cached verdicts), record-only so nothing raises."""
    call = {"id": "c1", "type": "function", "function": {"name": "fetch", "arguments": "{}"}}
    first: list[float] = []
    again: list[float] = []
    clock = time.perf_counter_ns
    for r in range(max(1, rounds // 4)):
        screener = Screener(Screening(default="record"))
        sink = _Sink()
        for t in texts:
            kwargs = {
                "messages": [
                    {"role": "system", "content": "You answer shipping questions."},
                    {"role": "user", "content": f"What is the shipping policy? ({r})"},
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": "c1", "content": t},
                ]
            }
            t0 = clock()
            screener.check(_Caller(), "openai", kwargs, sink)
            first.append((clock() - t0) / 1000)
            t0 = clock()
            screener.check(_Caller(), "openai", kwargs, sink)
            again.append((clock() - t0) / 1000)
    return round(statistics.median(first), 2), round(statistics.median(again), 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer timing rounds (CI)")
    ap.add_argument("--split", choices=("test", "dev", "all"), default="test")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    detectors = {"rules+linear": RulesAndModel(), "rules": RuleDetector(), "linear": LinearDetector()}
    detector = detectors["rules+linear"]  # the default, reported under the unprefixed keys
    cases = [c for c in load_cases() if args.split == "all" or c.split == args.split]
    public = [c for c in cases if c.group != "lookalike"]
    groups = {
        "public (direct + indirect)": public,
        "direct (deepset)": [c for c in cases if c.group == "direct"],
        "indirect (BIPIA e-mail)": [c for c in cases if c.group == "indirect"],
        "look-alikes (ours)": [c for c in cases if c.group == "lookalike"],
    }

    channel = {"direct": "user", "indirect": "tool", "lookalike": "tool"}  # look-alikes: the harder channel

    linear = detectors["linear"]
    assert isinstance(linear, LinearDetector)
    res: dict[str, object] = {
        "split": args.split, "detector": detector.name,
        "linear_threshold": linear.threshold, "linear_data_threshold": linear.data_threshold,
    }  # fmt: skip
    print(
        f"split: {args.split}   default detector: {detector.name}   model thresholds (chosen on dev): "
        f"user/agent {linear.threshold:.3f}, tool {linear.data_threshold:.3f}"
    )
    print(f"{'detector':13} {'set':28} {'n+':>5} {'n-':>5} {'recall':>8} {'FPR':>7}")
    for label, det in detectors.items():
        prefix = "" if label == "rules+linear" else f"{label}_"
        for name, group in groups.items():
            ours = rates(group, lambda c, d=det: d.screen(c.text, channel[c.group]).flagged)  # type: ignore[misc]
            key = name.split(" ")[0].replace("-", "")
            res[f"{prefix}{key}_recall"], res[f"{prefix}{key}_fpr"] = ours["recall"], ours["fpr"]
            res[f"{prefix}{key}_positives"], res[f"{prefix}{key}_negatives"] = (
                ours["positives"],
                ours["negatives"],
            )
            print(
                f"{label:13} {name:28} {ours['positives']:>5} {ours['negatives']:>5} {ours['recall']:>8} {ours['fpr']:>7}"
            )
    for name, group in groups.items():
        anchor = rates(group, lambda c: naive(c.text))
        key = name.split(" ")[0].replace("-", "")
        res[f"anchor_naive_{key}_recall"], res[f"anchor_naive_{key}_fpr"] = anchor["recall"], anchor["fpr"]
        print(
            f"{'naive anchor':13} {name:28} {anchor['positives']:>5} {anchor['negatives']:>5} {anchor['recall']:>8} {anchor['fpr']:>7}"
        )

    texts = [c.text for c in cases]
    rounds = 2 if args.quick else 20
    as_json = [json.dumps({"role": "tool", "tool_call_id": "call_1", "content": t}) for t in texts]
    screen_med, screen_p99 = cost_us(
        texts, lambda t: detector.screen(t, "tool"), rounds
    )  # the longer rule set
    rules_med, rules_p99 = cost_us(texts, lambda t: detectors["rules"].screen(t, "tool"), rounds)
    linear_med, linear_p99 = cost_us(texts, lambda t: detectors["linear"].screen(t, "tool"), rounds)
    res.update(
        rules_us_median=rules_med,
        rules_us_p99=rules_p99,
        linear_us_median=linear_med,
        linear_us_p99=linear_p99,
    )
    naive_med, naive_p99 = cost_us(texts, naive, rounds)
    json_med, json_p99 = cost_us(as_json, json.loads, rounds)
    chars = statistics.median(len(t) for t in texts)
    hook_first, hook_again = hook_check_us(texts, rounds)
    res.update(hook_check_us_first_median=hook_first, hook_check_us_cached_median=hook_again)
    res.update(
        screen_us_median=screen_med, screen_us_p99=screen_p99,
        anchor_naive_us_median=naive_med, anchor_naive_us_p99=naive_p99,
        anchor_json_loads_us_median=json_med, anchor_json_loads_us_p99=json_p99,
        message_chars_median=chars, messages=len(texts), timing_rounds=rounds,
        load_average=os.getloadavg()[0],
    )  # fmt: skip
    print(f"\ncost per screened message ({len(texts)} messages, median {chars:.0f} chars, {rounds} rounds)")
    print(f"{'figure':34} {'median µs':>10} {'p99 µs':>8}")
    print(f"{'RulesAndModel.screen (default)':34} {screen_med:>10} {screen_p99:>8}")
    print(f"{'RuleDetector.screen':34} {rules_med:>10} {rules_p99:>8}")
    print(f"{'LinearDetector.screen':34} {linear_med:>10} {linear_p99:>8}")
    print(f"{'anchor: naive keyword list':34} {naive_med:>10} {naive_p99:>8}")
    print(f"{'anchor: json.loads of the message':34} {json_med:>10} {json_p99:>8}")
    print(f"{'hook check, tool result first seen':34} {hook_first:>10}")
    print(f"{'hook check, same history again':34} {hook_again:>10}")
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
