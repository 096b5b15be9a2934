"""The model's training script reads the benchmark's dev split only, and its cross-validation
holds out whole attack kinds (the test split's BIPIA attacks are all of kinds dev lacks)."""

from __future__ import annotations

import importlib.util
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
