"""The model's training script reads the benchmark's dev split only, and its cross-validation
holds out whole attack kinds (the test split's BIPIA attacks are all of kinds dev lacks);
deepset's near-duplicates fall on one side of the split and in one fold."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("numpy")  # a development dependency of the training script

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("repeat", [0, 1, 2])
def test_training_rows_never_contain_test_split_text(repeat: int) -> None:
    bench = _load("injection_bench_split", ROOT / "benchmarks" / "injection.py")
    train = _load("injection_train_split", ROOT / "benchmarks" / "data" / "injection" / "train.py")
    rows, emails, attacks = train._dev_units(repeat)
    test_texts = [c.text for c in bench.load_cases() if c.split == "test"]
    assert rows and emails and attacks and test_texts
    # no training message is a test case; no training e-mail or attack is inside one (BIPIA's
    # train and test e-mail files share 12 e-mails: train.py leaves those out). deepset itself
    # builds some injections as a benign question plus an attack, so a dev question may sit
    # inside a test injection; only exact copies would leak a label.
    assert not {t for t, _, _ in rows} & set(test_texts)
    joined = "\n\x00".join(test_texts)
    assert [e for e, _ in emails if e in joined] == []
    assert [a for a, _, _ in attacks if a in joined] == []
    # each attack kind sits in exactly one fold, and every fold holds out some kinds
    fold_of: dict[str, set[int]] = {}
    for _, fold, kind in attacks:
        fold_of.setdefault(kind, set()).add(fold)
    assert all(len(f) == 1 for f in fold_of.values())
    assert {f for fs in fold_of.values() for f in fs} == set(range(train.FOLDS))


def _jaccard(a: str, b: str) -> float:
    wa, wb = set(re.findall(r"\w+", a.lower())), set(re.findall(r"\w+", b.lower()))
    return len(wa & wb) / len(wa | wb) if wa | wb else 1.0


def test_no_deepset_test_message_has_a_near_duplicate_in_dev() -> None:
    # deepset holds rephrasings of one message ("Has Russia attacked Ukraine?" / "... Why?");
    # split by message, 12 test messages had a dev twin carrying the same label
    bench = _load("injection_bench_dups", ROOT / "benchmarks" / "injection.py")
    cases = bench._deepset()
    dev = [c.text for c in cases if c.split == "dev"]
    test = [c.text for c in cases if c.split == "test"]
    assert len(dev) > len(test) > 200
    straddling = [(t, d) for t in test for d in dev if _jaccard(t, d) >= bench.NEAR_DUPLICATE]
    assert straddling == []
    texts = {c.text for c in cases}
    assert {"Has Russia attacked Ukraine?", "Has Russia attacked Ukraine? Why?"} <= texts


def test_near_duplicate_groups_join_rephrasings_transitively() -> None:
    bench = _load("injection_bench_groups", ROOT / "benchmarks" / "injection.py")
    texts = [
        "has russia attacked ukraine",
        "what is a good recipe for dinner",
        "has russia attacked ukraine why",
        "has russia really attacked ukraine why",
        "what is a good book",
    ]
    g = bench.near_duplicate_groups(texts)
    assert g[0] == g[2] == g[3]  # 0-3 overlap 0.67 only: joined through 2
    assert len({g[0], g[1], g[4]}) == 3


def test_near_duplicates_in_dev_share_a_cross_validation_fold() -> None:
    bench = _load("injection_bench_folds", ROOT / "benchmarks" / "injection.py")
    train = _load("injection_train_folds", ROOT / "benchmarks" / "data" / "injection" / "train.py")
    rows, _, _ = train._dev_units(1)
    group = bench.near_duplicate_groups([t for t, _, _ in rows])
    folds: dict[int, set[int]] = {}
    for g, (_, _, fold) in zip(group, rows, strict=True):
        folds.setdefault(g, set()).add(fold)
    assert any(len([x for x in group if x == g]) > 1 for g in folds)  # there are groups to check
    assert all(len(f) == 1 for f in folds.values())
