"""A small linear injection model that ships inside the package (pure Python, no download).

Logistic regression over hashed features of each line of a message: words, word pairs and the
character 4-grams of each word (so misspellings, other inflections and encodings share
weights), their sum divided by the square root of the line's word count, or on a data
channel by the word count itself (so long prose does not add up to an alarm). A message's
score is the highest of its lines' scores: an attack inserted into a long e-mail is one line
among many, and a whole-message average would hide it.

On a data channel (``tool``: tool results, retrieved documents) a line also gets cue features,
counted once whatever its length: a sentence opening with a task verb, a question (question
word first, question mark last), a question mark at the line's end, its first word, its
length bucket. Text that is data describes; a line in it that asks the model for work is the
typical indirect injection, while the same line from a user is an ordinary request. The ``user`` and ``agent`` channels use neither the cues nor the data
threshold.

The weights (``screen_model.bin``, about 0.1 MB) are trained on the benchmark's dev split
only by ``benchmarks/data/injection/train.py``, which also picks both thresholds by
cross-validation on that split. File layout (little-endian): magic ``ALSM``, version (u16),
hash bits (u16), feature count n (u32), bias, threshold, data-channel threshold, weight scale
(f32 each), then n bucket ids (u32, ascending) and n weights (i16, times the scale).
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
VERSION = 2
HASH_BITS = 20
_WORD = re.compile(r"\w+")
_LINE_MAX = 600  # a longer line is cut into pieces of about this many characters
_CACHE_MAX = 65536  # words whose summed feature weights are remembered
DATA_CHANNELS = frozenset(("tool",))  # channels whose text is data, not someone's request


def _wordset(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Verbs that open a task given to an assistant ("explain ...", "write ...", "translate ...").
# In a tool result (an e-mail, a web page) a sentence opening with one is a cue: data describes,
# it does not ask the model reading it for work. A general list, not taken from the test data;
# verbs that e-mails and pages aim at their human reader ("check", "find out", "make the most
# of", "share", "use") are left out: on dev e-mails they were the false positives.
TASK_VERBS = _wordset(
    "add analyse analyze answer append assess augment break calculate categorise categorize "
    "classify combine compare compile compose compute convert create decode define describe "
    "design detail determine develop devise discuss draft edit elaborate encode enhance "
    "estimate evaluate explain express extract forecast format forget generate identify "
    "ignore illustrate include insert integrate interpret introduce invent list mention "
    "modify outline paraphrase predict prepare present produce propose provide recommend "
    "reformat rephrase replace respond restate reverse review rewrite say schedule scramble "
    "simplify solve spell suggest summarise summarize tell transform translate write"
)
QUESTION_WORDS = _wordset(
    "what how who whom whose why when where which can could would will is are do does did"
)
_LEADS = _wordset("please now also kindly then and additionally next finally first lastly")
# A segment's sentences (with their end mark, if any): a question is a question word at the
# start and a question mark at the end ("what's on board" as a heading is not one).
_SENTENCE = re.compile(r"[^.!?|:;]+[.!?|:;]*")
_FIRST = re.compile(r"\w+")


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


DATA_BIAS = _h("T:bias")


def cue_features(segment: str) -> list[int]:
    """Data-channel cues of one segment: a sentence opening with a task verb, a question, or
    the segment's first word (an injected line is a sentence of its own)."""
    out = [DATA_BIAS]
    kinds: set[str] = set()
    for i, m in enumerate(_SENTENCE.finditer(segment)):
        words = _FIRST.findall(m.group(), 0, 60)[:2]
        if not words:
            continue
        first = words[1] if words[0] in _LEADS and len(words) > 1 else words[0]
        at = "0" if i == 0 else "n"
        if first in TASK_VERBS:
            kinds.add("task" + at)
        elif first in QUESTION_WORDS and m.group().rstrip().endswith("?"):
            kinds.add("ask" + at)
        if i == 0:
            out.append(_h("T:f:" + first))
    if segment.endswith("?"):
        kinds.add("qmark")
    n = segment.count(" ") + 1
    kinds.add(next(f"len{b}" for b in (8, 16, 32, 64, 0) if n <= b or b == 0))
    out.extend(_h("T:cue:" + k) for k in sorted(kinds))
    return out


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


def features(segment: str, channel: str = "user") -> tuple[list[int], list[int]]:
    """Every bucket of one normalised segment (training uses this; scoring sums per word):
    the text's buckets, whose sum is divided by ``length_scale``, and the data-channel cues,
    which count once whatever the length."""
    words = _WORD.findall(segment)
    out: list[int] = []
    for w in words:
        out.extend(word_features(w))
    out.extend(pair_feature(a, b) for a, b in itertools.pairwise(words))
    return out, (cue_features(segment) if channel in DATA_CHANNELS else [])


def length_scale(words: int, channel: str = "user") -> float:
    """What a segment's summed text weights are divided by: a long line of ordinary prose adds
    up many small weights, and without it would outscore a short injected sentence. On a data
    channel the word count itself (a mean: e-mails and pages are long prose, and the weights
    learnt from users' messages, where injections run longer than questions, must not read
    length as a cue); elsewhere its square root."""
    return float(max(1, words)) if channel in DATA_CHANNELS else math.sqrt(max(1, words))


_HEAD = "<4sHHIffff"


def encode_model(
    buckets: list[int],
    weights: list[float],
    bias: float,
    threshold: float,
    data_threshold: float | None = None,
) -> bytes:
    """The ``screen_model.bin`` bytes for a trained model (used by the training script)."""
    scale = max((abs(w) for w in weights), default=1.0) / 32767 or 1.0
    order = sorted(range(len(buckets)), key=buckets.__getitem__)
    ids = array("I", (buckets[i] for i in order))
    q = array("h", (round(weights[i] / scale) for i in order))
    if sys.byteorder == "big":
        ids.byteswap()
        q.byteswap()
    data_t = threshold if data_threshold is None else data_threshold
    head = struct.pack(_HEAD, MAGIC, VERSION, HASH_BITS, len(ids), bias, threshold, data_t, scale)
    return head + ids.tobytes() + q.tobytes()


def decode_model(raw: bytes) -> tuple[dict[int, float], float, float, float]:
    """(bucket → weight, bias, threshold, data-channel threshold) from ``screen_model.bin`` bytes."""
    size = struct.calcsize(_HEAD)
    if len(raw) < size:
        raise ValueError("not a screen model this version can read")
    magic, version, bits, n, bias, threshold, data_t, scale = struct.unpack_from(_HEAD, raw)
    if magic != MAGIC or version != VERSION or bits != HASH_BITS or len(raw) != size + 6 * n:
        raise ValueError("not a screen model this version can read")
    ids = array("I")
    ids.frombytes(raw[size : size + 4 * n])
    q = array("h")
    q.frombytes(raw[size + 4 * n : size + 6 * n])
    if sys.byteorder == "big":
        ids.byteswap()
        q.byteswap()
    return {b: v * scale for b, v in zip(ids, q, strict=True)}, bias, threshold, data_t


class LinearDetector:
    """Scores a message by its most injection-like line (see the module docstring).

    ``threshold`` (user and agent messages) and ``data_threshold`` (tool results) default to
    the ones the training script chose on the dev split; ``threshold`` alone sets both.
    """

    name = "linear-v2"

    def __init__(
        self, threshold: float | None = None, model: bytes | None = None, data_threshold: float | None = None
    ) -> None:
        if model is None:
            model = resources.files(__package__).joinpath("screen_model.bin").read_bytes()
        self._weights, self._bias, trained, trained_data = decode_model(model)
        self.threshold = trained if threshold is None else threshold
        if data_threshold is None:
            data_threshold = trained_data if threshold is None else threshold
        self.data_threshold = data_threshold
        if not (0 < self.threshold <= 1 and 0 < self.data_threshold <= 1):
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

    def segment_score(self, segment: str, channel: str = "user") -> float:
        words = _WORD.findall(segment)
        if not words:
            return 0.0
        get = self._weights.get
        z = sum(self._word(w) for w in words)
        z += sum(get(pair_feature(a, b), 0.0) for a, b in itertools.pairwise(words))
        z = self._bias + z / length_scale(len(words), channel)
        if channel in DATA_CHANNELS:
            z += sum(get(b, 0.0) for b in cue_features(segment))
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def score(self, text: str, channel: str = "user") -> float:
        return max((self.segment_score(s, channel) for s in segments(text)), default=0.0)

    def screen(self, text: str, channel: str = "user") -> Verdict:
        score = round(self.score(text, channel), 4)
        flagged = score >= (self.data_threshold if channel in DATA_CHANNELS else self.threshold)
        return Verdict(score, flagged, self.name, ("linear",) if flagged else ())


class RulesAndModel:
    """The rules and the linear model together: flagged when either flags, the score the
    higher of the two, the reasons of both."""

    name = "rules+linear-v2"

    def __init__(self, rules: Detector | None = None, model: LinearDetector | None = None) -> None:
        self.rules: Detector = rules if rules is not None else RuleDetector()
        self.model = model if model is not None else LinearDetector()

    def screen(self, text: str, channel: str = "user") -> Verdict:
        r = self.rules.screen(text, channel)
        m = self.model.screen(text, channel)
        return Verdict(max(r.score, m.score), r.flagged or m.flagged, self.name, r.reasons + m.reasons)
