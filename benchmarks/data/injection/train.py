"""Train the packaged linear injection model on the DEV split only and write its weights.

    .venv/bin/python benchmarks/data/injection/train.py [--out PATH] [--fpr 0.03]

Training rows (dev split of benchmarks/injection.py, never the test split): each deepset and
look-alike message as one row; each BIPIA dev e-mail line as a benign row and each BIPIA dev
attack string as an injection row (in a tool result the attack is one line among the e-mail's
lines, and the model scores a message by its worst line). Classes are weighted to equal
total weight. Logistic regression with L2, full-batch Adam, in numpy (a development-time
dependency only: the client scores in pure Python).

The threshold: 5-fold cross-validation on the dev split (folds by message; BIPIA e-mails and
attack strings are split into folds and each fold's injected e-mails are built from its own
e-mails and attacks only), out-of-fold scores, then the lowest threshold at which the rules
OR the model flag at most ``--fpr`` of the dev benign messages. The final model is trained on
the whole dev split. Writes collectors/src/agentledger/collectors/screen_model.bin.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from agentledger.collectors.screen_model import HASH_BITS, encode_model, features, segments
from agentledger.collectors.screening import RuleDetector

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
OUT = ROOT / "collectors" / "src" / "agentledger" / "collectors" / "screen_model.bin"
FOLDS = 5
L2 = 1e-4
STEPS = 400
KEEP = 1e-3  # weights smaller than this are dropped from the file


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("injection_bench", ROOT / "benchmarks" / "injection.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _one_row(text: str) -> list[int]:
    return features(" ".join(segments(text)))


def _dev_units() -> tuple[list[tuple[str, int, int]], list[tuple[str, int]], list[tuple[str, int]]]:
    """(text, label, fold) message rows; (e-mail, fold); (attack, fold), dev split only."""
    bench = _bench()
    rows = [
        (c.text, c.label, i % FOLDS)
        for i, c in enumerate(c for c in bench._deepset() + bench._lookalikes() if c.split == "dev")
    ]
    emails = [
        (json.loads(x)["context"], i % FOLDS)
        for i, x in enumerate((HERE / "bipia" / "email" / "train.jsonl").read_text().splitlines())
    ]
    by_kind = json.loads((HERE / "bipia" / "text_attack_train.json").read_text())
    attacks = [(a, i % FOLDS) for i, a in enumerate(a for kind in by_kind.values() for a in kind)]
    return rows, emails, attacks


def _inject(email: str, attack: str, where: int) -> str:
    if where == 0:
        return f"{attack}\n{email}"
    if where == 1:
        mid = len(email) // 2
        cut = email.rfind(" ", 0, mid) + 1 or mid
        return f"{email[:cut]}\n{attack}\n{email[cut:]}"
    return f"{email}\n{attack}"


def _fit(feats: list[list[int]], labels: list[int]) -> tuple[np.ndarray, float]:
    n = len(feats)
    y = np.asarray(labels, dtype=np.float64)
    pos = max(1.0, y.sum())
    sw = np.where(y == 1, 0.5 * n / pos, 0.5 * n / max(1.0, n - pos)) / n
    rows = np.repeat(np.arange(n), [len(f) for f in feats])
    buckets = np.fromiter((b for f in feats for b in f), dtype=np.int64, count=len(rows))
    seen, idx = np.unique(buckets, return_inverse=True)  # fit only the buckets that occur
    dim = len(seen)
    w = np.zeros(dim)
    b = 0.0
    m_w, v_w = np.zeros(dim), np.zeros(dim)
    m_b = v_b = 0.0
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-8
    for t in range(1, STEPS + 1):
        z = b + np.bincount(rows, weights=w[idx], minlength=n)
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
        r = (p - y) * sw
        g_w = np.bincount(idx, weights=r[rows], minlength=dim) + L2 * w
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
    feats: list[list[int]] = []
    labels: list[int] = []
    for text, label, fold in rows:
        if fold != skip:
            feats.append(_one_row(text))
            labels.append(label)
    for email, fold in emails:
        if fold != skip:
            for seg in segments(email):
                feats.append(features(seg))
                labels.append(0)
    for attack, fold in attacks:
        if fold != skip:
            feats.append(_one_row(attack))
            labels.append(1)
    return feats, labels


def _score(w: np.ndarray, b: float, text: str) -> float:
    best = 0.0
    for seg in segments(text):
        z = b + float(w[features(seg)].sum()) if features(seg) else -60.0
        best = max(best, 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60))))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--fpr", type=float, default=0.03, help="dev out-of-fold FPR the threshold allows")
    args = ap.parse_args()
    rows, emails, attacks = _dev_units()
    rules = RuleDetector()

    # Out-of-fold scores of dev messages: (score, label, group, rules flagged).
    oof: list[tuple[float, int, str, bool]] = []
    for fold in range(FOLDS):
        w, b = _fit(*_training_rows(rows, emails, attacks, fold))
        for text, label, f in rows:
            if f == fold:
                oof.append((_score(w, b, text), label, "direct", rules.screen(text, "user").flagged))
        held_attacks = [a for a, f in attacks if f == fold]
        k = 0
        for email, f in emails:
            if f != fold:
                continue
            oof.append((_score(w, b, email), 0, "indirect", rules.screen(email, "tool").flagged))
            for _ in range(2):
                text = _inject(email, held_attacks[k % len(held_attacks)], k % 3)
                oof.append((_score(w, b, text), 1, "indirect", rules.screen(text, "tool").flagged))
                k += 1
        print(f"fold {fold}: done", flush=True)

    negatives = [(s, r) for s, y, _, r in oof if y == 0]
    threshold = 0.99
    for t in sorted({round(s, 4) for s, _ in negatives} | {0.5}, reverse=True):
        if t <= 0.05:
            break
        fp = sum(1 for s, r in negatives if r or s >= t)
        if fp / len(negatives) > args.fpr:
            break
        threshold = t
    threshold = min(0.99, threshold + 1e-4)
    print(f"threshold {threshold:.4f} (dev out-of-fold FPR of rules OR model <= {args.fpr})")
    for group in ("direct", "indirect", "all"):
        sel = [x for x in oof if group in ("all", x[2])]
        pos = [x for x in sel if x[1] == 1]
        neg = [x for x in sel if x[1] == 0]
        model_rec = sum(x[0] >= threshold for x in pos) / len(pos)
        both_rec = sum(x[0] >= threshold or x[3] for x in pos) / len(pos)
        both_fpr = sum(x[0] >= threshold or x[3] for x in neg) / len(neg)
        print(
            f"dev OOF {group:8} model recall {model_rec:.3f}  rules|model recall {both_rec:.3f} FPR {both_fpr:.3f}"
        )

    w, b = _fit(*_training_rows(rows, emails, attacks, None))
    keep = np.flatnonzero(np.abs(w) >= KEEP)
    raw = encode_model([int(i) for i in keep], [float(w[i]) for i in keep], float(b), float(threshold))
    args.out.write_bytes(raw)
    print(f"wrote {args.out} ({len(raw)} bytes, {len(keep)} weights)")


if __name__ == "__main__":
    main()
