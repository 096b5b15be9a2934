"""Train the packaged linear injection model on the DEV split only and write its weights.

    .venv/bin/python benchmarks/data/injection/train.py [--out PATH] [--fpr 0.03] [--tool-fpr 0.03]

Training rows (dev split of benchmarks/injection.py, never the test split): each deepset and
look-alike message as one user-channel row; each BIPIA dev e-mail line as a benign tool-channel
row and each BIPIA dev attack string as an injection tool-channel row (in a tool result the
attack is one line among the e-mail's lines, and the model scores a message by its worst line;
tool rows carry the data-channel cue features). Each (channel, class) group carries a quarter
of the total weight. Logistic regression with L2, full-batch Adam, in numpy (a
development-time dependency only: the client scores in pure Python).

The thresholds: 5-fold cross-validation on the dev split, repeated 8 times with other folds
(folds by message, near-duplicate messages in one fold; BIPIA e-mails split into folds, BIPIA attacks folded by kind so held-out
attacks are of kinds the fold never saw, as the test split's are; each fold's injected e-mails
are built from its own e-mails and attacks only), out-of-fold scores, then per channel the
lowest threshold at which the rules OR the model flag at most ``--fpr`` (user) or
``--tool-fpr`` (tool) of that channel's dev benign messages. The final model is trained on the
whole dev split. Writes collectors/src/agentledger/collectors/screen_model.bin.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import random
import sys
from pathlib import Path

import numpy as np

from agentledger.collectors.screen_model import (
    _WORD,
    HASH_BITS,
    encode_model,
    features,
    length_scale,
    segments,
)
from agentledger.collectors.screening import RuleDetector

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
OUT = ROOT / "collectors" / "src" / "agentledger" / "collectors" / "screen_model.bin"
FOLDS = 5
REPEATS = 8  # the cross-validation is repeated with other folds: 304 out-of-fold e-mail scores, not 38
L2 = 3e-5  # chosen on dev out-of-fold figures (3e-5 / 1e-4 / 3e-4 compared; docs/adr/0015)
STEPS = 400
_FIT = {"l2": L2}
KEEP = 1e-3  # weights smaller than this are dropped from the file


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("injection_bench", ROOT / "benchmarks" / "injection.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


Row = tuple[list[int], list[float]]  # buckets and their values


def _row(segment: str, channel: str) -> Row:
    text, fixed = features(segment, channel)
    v = 1.0 / length_scale(len(_WORD.findall(segment)), channel)
    return text + fixed, [v] * len(text) + [1.0] * len(fixed)


def _one_row(text: str, channel: str) -> Row:
    return _row(" ".join(segments(text)), channel)


def _dev_units(
    repeat: int = 0,
) -> tuple[list[tuple[str, int, int]], list[tuple[str, int]], list[tuple[str, int, str]]]:
    """(text, label, fold) message rows; (e-mail, fold); (attack, fold, kind), dev split only.

    BIPIA's own train and test e-mail files share 12 e-mails (11 word for word, one inside a
    test e-mail that adds a subject line): those are left out of training (the test file is
    read for that comparison only), so the test split's benign e-mails are all new to the model. Attacks are folded by kind (BIPIA's category), so out-of-fold figures measure kinds the
    model has not seen: the test split's attacks are all of kinds the dev split lacks."""
    bench = _bench()
    rng = random.Random(repeat)  # each repeat of the cross-validation folds differently
    dev = [c for c in bench._deepset() + bench._lookalikes() if c.split == "dev"]
    # near-duplicates share a fold, as they share a side of the dev/test split
    group = bench.near_duplicate_groups([c.text for c in dev])
    fold_of = {g: (i + repeat) % FOLDS for i, g in enumerate(dict.fromkeys(group))}
    rows = [(c.text, c.label, fold_of[g]) for c, g in zip(dev, group, strict=True)]
    test_emails = _emails("test")
    emails = [(e, i % FOLDS) for i, e in enumerate(_emails("train")) if not any(e in t for t in test_emails)]
    rng.shuffle(emails)
    emails = [(e, i % FOLDS) for i, (e, _) in enumerate(emails)]
    by_kind = json.loads((HERE / "bipia" / "text_attack_train.json").read_text())
    kinds = list(by_kind)
    rng.shuffle(kinds)
    attacks = [(a, kinds.index(kind) % FOLDS, kind) for kind, items in by_kind.items() for a in items]
    return rows, emails, attacks


def _emails(name: str) -> list[str]:
    return [
        json.loads(x)["context"]
        for x in (HERE / "bipia" / "email" / f"{name}.jsonl").read_text().splitlines()
    ]


def _inject(email: str, attack: str, where: int) -> str:
    if where == 0:
        return f"{attack}\n{email}"
    if where == 1:
        mid = len(email) // 2
        cut = email.rfind(" ", 0, mid) + 1 or mid
        return f"{email[:cut]}\n{attack}\n{email[cut:]}"
    return f"{email}\n{attack}"


def _fit(feats: list[Row], labels: list[int], groups: list[str]) -> tuple[np.ndarray, float]:
    n = len(feats)
    y = np.asarray(labels, dtype=np.float64)
    # each (channel, class) group carries a quarter of the total weight
    keys = [f"{g}{lab}" for g, lab in zip(groups, labels, strict=True)]
    count = {k: keys.count(k) for k in set(keys)}
    sw = np.asarray([1.0 / (len(count) * count[k]) for k in keys])
    rows = np.repeat(np.arange(n), [len(f[0]) for f in feats])
    buckets = np.fromiter((b for f in feats for b in f[0]), dtype=np.int64, count=len(rows))
    values = np.fromiter((v for f in feats for v in f[1]), dtype=np.float64, count=len(rows))
    seen, idx = np.unique(buckets, return_inverse=True)  # fit only the buckets that occur
    dim = len(seen)
    w = np.zeros(dim)
    b = 0.0
    m_w, v_w = np.zeros(dim), np.zeros(dim)
    m_b = v_b = 0.0
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    for t in range(1, STEPS + 1):
        z = b + np.bincount(rows, weights=w[idx] * values, minlength=n)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
        r = (p - y) * sw
        g_w = np.bincount(idx, weights=r[rows] * values, minlength=dim) + _FIT["l2"] * w
        g_b = float(r.sum())
        m_w = b1 * m_w + (1 - b1) * g_w
        v_w = b2 * v_w + (1 - b2) * g_w * g_w
        w -= lr * (m_w / (1 - b1**t)) / (np.sqrt(v_w / (1 - b2**t)) + eps)
        m_b = b1 * m_b + (1 - b1) * g_b
        v_b = b2 * v_b + (1 - b2) * g_b * g_b
        b -= lr * (m_b / (1 - b1**t)) / (np.sqrt(v_b / (1 - b2**t)) + eps)
    full = np.zeros(1 << HASH_BITS)
    full[seen] = w
    return full, b


def _training_rows(rows, emails, attacks, skip: int | None):  # type: ignore[no-untyped-def]
    """Messages as user-channel rows (look-alikes on both channels); BIPIA e-mail lines and
    attack strings as tool-channel rows (in a tool result the attack is one line among the
    e-mail's lines, and the model scores a message by its worst line)."""
    feats: list[Row] = []
    labels: list[int] = []
    groups: list[str] = []

    def add(f: Row, label: int, group: str) -> None:
        feats.append(f)
        labels.append(label)
        groups.append(group)

    for text, label, fold in rows:
        if fold != skip:
            add(_one_row(text, "user"), label, "user")
    for email, fold in emails:
        if fold != skip:
            for seg in segments(email):
                add(_row(seg, "tool"), 0, "tool")
    for attack, fold, _ in attacks:
        if fold != skip:
            add(_one_row(attack, "tool"), 1, "tool")
    return feats, labels, groups


def _score(w: np.ndarray, b: float, text: str, channel: str) -> float:
    best = 0.0
    for seg in segments(text):
        buckets, values = _row(seg, channel)
        z = b + float((w[buckets] * np.asarray(values)).sum())
        best = max(best, float(1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))))
    return best


def _threshold(negatives: list[tuple[float, bool]], fpr: float) -> float:
    """The lowest threshold at which rules OR model flag at most ``fpr`` of ``negatives``."""
    threshold = 0.99
    for t in sorted({round(s, 4) for s, _ in negatives} | {0.5}, reverse=True):
        if t <= 0.05:
            break
        fp = sum(1 for s, r in negatives if r or s >= t)
        if fp / len(negatives) > fpr:
            break
        threshold = t
    return min(0.99, threshold + 1e-4)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument(
        "--fpr", type=float, default=0.03, help="dev out-of-fold FPR (user channel) the threshold allows"
    )
    ap.add_argument("--tool-fpr", type=float, default=0.03, help="the same for the tool channel")
    ap.add_argument("--l2", type=float, default=L2, help="L2 penalty of the logistic regression")
    args = ap.parse_args()
    _FIT["l2"] = args.l2
    rules = RuleDetector()

    # Out-of-fold scores of dev messages: (score, label, group, rules flagged, kind).
    oof: list[tuple[float, int, str, bool, str]] = []
    for fold, repeat in itertools.product(range(FOLDS), range(REPEATS)):
        rows, emails, attacks = _dev_units(repeat)
        w, b = _fit(*_training_rows(rows, emails, attacks, fold))
        for text, label, f in rows:
            if f == fold:
                oof.append(
                    (_score(w, b, text, "user"), label, "direct", rules.screen(text, "user").flagged, "")
                )
        held = [(a, kind) for a, f, kind in attacks if f == fold]
        k = 0
        for email, f in emails:
            if f != fold:
                continue
            oof.append((_score(w, b, email, "tool"), 0, "indirect", rules.screen(email, "tool").flagged, ""))
            for _ in range(2):
                attack, kind = held[k % len(held)]
                text = _inject(email, attack, k % 3)
                oof.append(
                    (_score(w, b, text, "tool"), 1, "indirect", rules.screen(text, "tool").flagged, kind)
                )
                k += 1
        print(f"fold {fold} (repeat {repeat}): done", flush=True)

    user_t = _threshold([(s, r) for s, y, g, r, _ in oof if y == 0 and g == "direct"], args.fpr)
    tool_t = _threshold([(s, r) for s, y, g, r, _ in oof if y == 0 and g == "indirect"], args.tool_fpr)
    print(
        f"thresholds: user {user_t:.4f} (dev OOF FPR <= {args.fpr}), tool {tool_t:.4f} (<= {args.tool_fpr})"
    )
    at = {"direct": user_t, "indirect": tool_t}
    for group in ("direct", "indirect", "all"):
        sel = [x for x in oof if group in ("all", x[2])]
        pos = [x for x in sel if x[1] == 1]
        neg = [x for x in sel if x[1] == 0]
        model_rec = sum(x[0] >= at[x[2]] for x in pos) / len(pos)
        both_rec = sum(x[0] >= at[x[2]] or x[3] for x in pos) / len(pos)
        both_fpr = sum(x[0] >= at[x[2]] or x[3] for x in neg) / len(neg)
        print(
            f"dev OOF {group:8} model recall {model_rec:.3f}  rules|model recall {both_rec:.3f} FPR {both_fpr:.3f}"
        )
    kinds = sorted({x[4] for x in oof if x[4]})
    for kind in kinds:
        sel = [x for x in oof if x[4] == kind]
        print(
            f"  dev OOF indirect {kind:28} rules|model recall {sum(x[0] >= tool_t or x[3] for x in sel) / len(sel):.2f}"
        )

    w, b = _fit(*_training_rows(*_dev_units(), None))
    keep = np.flatnonzero(np.abs(w) >= KEEP)
    raw = encode_model(
        [int(i) for i in keep], [float(w[i]) for i in keep], float(b), float(user_t), float(tool_t)
    )
    args.out.write_bytes(raw)
    print(f"wrote {args.out} ({len(raw)} bytes, {len(keep)} weights)")


if __name__ == "__main__":
    main()
