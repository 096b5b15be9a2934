"""A small linear injection model that ships inside the package (pure Python, no download).

Logistic regression over hashed features of each line of a message: words, word pairs and the
character 4-grams of each word (so misspellings, other inflections and encodings share
weights). A message's score is the highest of its lines' scores: an attack inserted into a
long e-mail is one line among many, and a whole-message average would hide it.

The weights (``screen_model.bin``, about 0.2 MB) are trained on the benchmark's dev split
only by ``benchmarks/data/injection/train.py``, which also picks the threshold by
cross-validation on that split. File layout (little-endian): magic ``ALSM``, version (u16),
hash bits (u16), feature count n (u32), bias and threshold (f32, f32), weight scale (f32),
then n bucket ids (u32, ascending) and n weights (i16, times the scale).
"""

from __future__ import annotations

import itertools
import math
import re
import struct
import sys
import zlib
from array import array
from importlib import resources

from .screening import Detector, RuleDetector, Verdict, normalise

MAGIC = b"ALSM"
VERSION = 1
HASH_BITS = 20
_WORD = re.compile(r"\w+")
_LINE_MAX = 600  # a longer line is cut into pieces of about this many characters
_CACHE_MAX = 65536  # words whose summed feature weights are remembered


def _h(feature: str) -> int:
    return zlib.crc32(feature.encode("utf-8", "surrogatepass")) & ((1 << HASH_BITS) - 1)


def word_features(word: str) -> list[int]:
    """The buckets one word contributes on its own: the word and its character 4-grams."""
    padded = f"<{word}>"
    out = [_h("w:" + word)]
    if len(padded) <= 4:
        return out
    out.extend(_h("c:" + padded[i : i + 4]) for i in range(len(padded) - 3))
    return out


def pair_feature(a: str, b: str) -> int:
    return _h(f"p:{a} {b}")


def segments(text: str) -> list[str]:
    """The normalised pieces a message is scored by: its lines, long lines cut at spaces."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        while len(line) > _LINE_MAX:
            cut = line.rfind(" ", _LINE_MAX // 2, _LINE_MAX)
            cut = cut if cut > 0 else _LINE_MAX
            out.append(normalise(line[:cut]))
            line = line[cut:]
        piece = normalise(line)
        if piece:
            out.append(piece)
    return out


def features(segment: str) -> list[int]:
    """Every bucket of one normalised segment (training uses this; scoring sums per word)."""
    words = _WORD.findall(segment)
    out: list[int] = []
    for w in words:
        out.extend(word_features(w))
    out.extend(pair_feature(a, b) for a, b in itertools.pairwise(words))
    return out


def encode_model(buckets: list[int], weights: list[float], bias: float, threshold: float) -> bytes:
    """The ``screen_model.bin`` bytes for a trained model (used by the training script)."""
    scale = max((abs(w) for w in weights), default=1.0) / 32767 or 1.0
    order = sorted(range(len(buckets)), key=buckets.__getitem__)
    ids = array("I", (buckets[i] for i in order))
    q = array("h", (round(weights[i] / scale) for i in order))
    if sys.byteorder == "big":
        ids.byteswap()
        q.byteswap()
    head = struct.pack("<4sHHIfff", MAGIC, VERSION, HASH_BITS, len(ids), bias, threshold, scale)
    return head + ids.tobytes() + q.tobytes()


def decode_model(raw: bytes) -> tuple[dict[int, float], float, float]:
    """(bucket → weight, bias, threshold) from ``screen_model.bin`` bytes."""
    size = struct.calcsize("<4sHHIfff")
    magic, version, bits, n, bias, threshold, scale = struct.unpack_from("<4sHHIfff", raw)
    if magic != MAGIC or version != VERSION or bits != HASH_BITS:
        raise ValueError("not a screen model this version can read")
    ids = array("I")
    ids.frombytes(raw[size : size + 4 * n])
    q = array("h")
    q.frombytes(raw[size + 4 * n : size + 6 * n])
    if sys.byteorder == "big":
        ids.byteswap()
        q.byteswap()
    return {b: v * scale for b, v in zip(ids, q, strict=True)}, bias, threshold


class LinearDetector:
    """Scores a message by its most injection-like line (see the module docstring).

    ``threshold`` defaults to the one the training script chose on the dev split.
    """

    name = "linear-v1"

    def __init__(self, threshold: float | None = None, model: bytes | None = None) -> None:
        if model is None:
            model = resources.files(__package__).joinpath("screen_model.bin").read_bytes()
        self._weights, self._bias, trained = decode_model(model)
        self.threshold = trained if threshold is None else threshold
        if not 0 < self.threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        self._word_sum: dict[str, float] = {}

    def _word(self, word: str) -> float:
        s = self._word_sum.get(word)
        if s is None:
            get = self._weights.get
            s = sum(get(b, 0.0) for b in word_features(word))
            if len(self._word_sum) >= _CACHE_MAX:
                self._word_sum.clear()
            self._word_sum[word] = s
        return s

    def segment_score(self, segment: str) -> float:
        words = _WORD.findall(segment)
        if not words:
            return 0.0
        get = self._weights.get
        z = self._bias + sum(self._word(w) for w in words)
        z += sum(get(pair_feature(a, b), 0.0) for a, b in itertools.pairwise(words))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def score(self, text: str) -> float:
        return max((self.segment_score(s) for s in segments(text)), default=0.0)

    def screen(self, text: str, channel: str = "user") -> Verdict:
        score = round(self.score(text), 4)
        flagged = score >= self.threshold
        return Verdict(score, flagged, self.name, ("linear",) if flagged else ())


class RulesAndModel:
    """The rules and the linear model together: flagged when either flags, the score the
    higher of the two, the reasons of both."""

    name = "rules+linear-v1"

    def __init__(self, rules: Detector | None = None, model: LinearDetector | None = None) -> None:
        self.rules: Detector = rules if rules is not None else RuleDetector()
        self.model = model if model is not None else LinearDetector()

    def screen(self, text: str, channel: str = "user") -> Verdict:
        r = self.rules.screen(text, channel)
        m = self.model.screen(text, channel)
        return Verdict(max(r.score, m.score), r.flagged or m.flagged, self.name, r.reasons + m.reasons)
