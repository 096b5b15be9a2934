"""Injection screening: a pluggable ``Detector`` and the default, ``RuleDetector``.

``RuleDetector`` works offline with nothing downloaded: weighted regular-expression rules
(instruction override, role / system impersonation, exfiltration asks, tool-call hijack) in
English, German, French and Spanish, run over a normalised copy of the text (NFKC, zero-width
and bidi characters removed, Cyrillic / Greek look-alike letters mapped to Latin, leetspeak
undone) and over what base64 / hex runs and hidden HTML / markdown decode to. A score is
``1 - prod(1 - weight)`` over the rules that matched; the text is flagged at ``threshold``.

It is a screen, not a guarantee: an injection phrased as an ordinary task ("recommend a good
book", inside an e-mail) carries no cue that rules can see (docs/security.md).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

CHANNELS = ("user", "tool", "agent")


@dataclass(frozen=True, slots=True)
class Verdict:
    """One detector's judgement of one text: ``score`` in [0, 1], ``flagged`` at its threshold,
    ``reasons`` the rule names that matched (never the text)."""

    score: float
    flagged: bool
    detector: str
    reasons: tuple[str, ...] = ()


@runtime_checkable
class Detector(Protocol):
    """What the hook calls on each screened message. ``channel`` is ``user``, ``tool`` or
    ``agent``. Must be thread-safe and should not raise (a raise is logged and the message
    counts as unscreened)."""

    name: str

    def screen(self, text: str, channel: str) -> Verdict: ...


# -- normalisation -------------------------------------------------------------------------

_INVISIBLE = dict.fromkeys(
    [0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x2060, 0x2061, 0x2062, 0x2063,
     0x2064, 0xFEFF, *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)  # fmt: skip
# Cyrillic and Greek letters that look like Latin ones (the common homoglyph swaps).
_HOMOGLYPHS = str.maketrans(
    "аеорсухіјѕԁɡһӏԛԝАВЕКМНОРСТХІЈЅԌαοτνικρΑΒΕΗΙΚΜΝΟΡΤΧΥΖ",
    "aeopcyxijsdghlqwABEKMHOPCTXIJSGaotvikpABEHIKMNOPTXYZ",
)
_LEET = str.maketrans("0134578@$|!", "oieastbasil")
_LEET_HINT = re.compile(r"[a-z][0-9@$][a-z]|[0-9@$][a-z]{2}")
_B64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_HEX_RUN = re.compile(r"(?:[0-9a-fA-F]{2}[\s:]?){12,}")
_HIDDEN = re.compile(
    r"<!--(.*?)-->|<[^>]*(?:display\s*:\s*none|font-size\s*:\s*0|visibility\s*:\s*hidden|hidden)[^>]*>"
    r"|\[[^\]]*\]\(\s*https?://[^)\s]*[?&][^)\s]*=",
    re.S | re.I,
)


def normalise(text: str) -> str:
    """The text as the rules read it: NFKC, invisible characters dropped, look-alike letters
    mapped to Latin, lower case, runs of white space as one space."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).translate(_HOMOGLYPHS)
    return " ".join(text.lower().split())


def _decoded(text: str) -> list[tuple[str, str]]:
    """(how, text) for what base64 or hex runs in ``text`` decode to, when that is text."""
    out: list[tuple[str, str]] = []
    for run in _B64_RUN.findall(text)[:4]:
        if run.isalpha() and (run.islower() or run.isupper()):
            continue  # a long plain word, not base64
        try:
            raw = base64.b64decode(run + "=" * (-len(run) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue
        decoded = _printable(raw)
        if decoded:
            out.append(("base64", decoded))
    for run in _HEX_RUN.findall(text)[:4]:
        try:
            raw = bytes.fromhex("".join(ch for ch in run if ch not in " \t\n:"))
        except ValueError:
            continue
        decoded = _printable(raw)
        if decoded:
            out.append(("hex", decoded))
    return out


def _printable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(ch.isalpha() or ch == " " for ch in text)
    return text if len(text) >= 8 and letters >= 0.8 * len(text) else None


# -- rules ---------------------------------------------------------------------------------

_PREV = r"(?:previous|prior|preceding|above|earlier|former|foregoing|original|initial|old|all|any|every|your|the|these|those|my)"
_ORDERS = (
    r"(?:instructions?|prompts?|rules?|directions?|directives?|tasks?|assignments?|orders?|guidelines?"
    r"|commands?|context|information|conversation|constraints?|restrictions?|programming|everything)"
)

# (name, weight, pattern): patterns run on normalise(text).
RULES: tuple[tuple[str, float, str], ...] = (
    # instruction override, EN
    (
        "override",
        0.9,
        rf"\b(?:ignore|disregard|forget|skip|overrid(?:e|ing)|bypass|drop|abandon|leave)\b(?:\s+\S+){{0,4}}?\s+{_PREV}\b"
        rf"(?:\s+\S+){{0,3}}?\s+{_ORDERS}\b",
    ),
    (
        "override",
        0.9,
        r"\b(?:ignore|disregard|forget)\s+(?:about\s+)?(?:all|everything|that|this|the above|above)\b",
    ),
    ("override", 0.8, r"\bforget\s+(?:about\s+)?everything\b|\bforget\s+all\b"),
    (
        "new_task",
        0.7,
        r"\b(?:now|next)\b[^.?!]{0,30}\b(?:focus|concentrate|work)\s+on\s+(?:your|a|the|this)?\s*new\s+(?:task|assignment|challenge)",
    ),
    (
        "new_task",
        0.55,
        r"\bnew\s+(?:task|tasks|assignment|challenge|instructions?)\b\s*(?:follow|:|is|for you)",
    ),
    ("new_task", 0.55, r"\b(?:start|begin)\s+(?:over|again|from (?:scratch|the front|the beginning))\b"),
    (
        "closure_pivot",
        0.55,
        r"\b(?:well done|very good|very well|excellent|great|fantastic|congratulations|perfect|simply great|"
        r"that (?:is|was) (?:enough|done|ok|okay|fine)|that's (?:enough|done))\b[^?]{0,120}?\b(?:now|but now)\b"
        r"[^?]{0,40}?\b(?:write|help|answer|tell|show|task|please|say|print|generate|create|give|reply|respond)\b",
    ),
    (
        "stop_pivot",
        0.6,
        r"\b(?:attention|stop|halt|wait)\b\s*[-,!.:]+\s*(?:stop|ignore|now|i urgently|new)\b",
    ),
    ("instead", 0.45, r"\binstead\b[^.]{0,30}\b(?:output|print|say|write|respond|reply)\b"),
    # instruction override, DE / FR / ES
    (
        "override_de",
        0.9,
        r"\b(?:ignorier\w*|vergiss|vergessen sie|missachte\w*|übergeh\w*)\b(?:\s+\S+){0,4}?\s+"
        r"(?:anweisung\w*|aufgabe\w*|auftr[aä]g\w*|befehl\w*|regeln|vorgaben|informationen|alles|instruktion\w*|prompt\w*)",
    ),
    ("override_de", 0.85, r"\bvergiss\s+(?:alles|alle)\b|\bvergiss\s+(?:das|dies)\s+(?:alles|davor)"),
    (
        "new_task_de",
        0.6,
        r"\bneue\w*\s+(?:aufgabe|herausforderung|anweisung)\w*|\bkonzentrier\w*\s+(?:dich|sie sich)\s+(?:jetzt|nun)\b"
        r"|\bfang\w*\s+(?:von vorne|neu)\s+an\b",
    ),
    (
        "closure_pivot_de",
        0.55,
        r"\b(?:gut gemacht|sehr gut|super|toll|hervorragend|ausgezeichnet|herzlichen glückwunsch|das reicht|das ist erledigt|"
        r"einfach großartig|fantastisch|prima)\b[^?]{0,120}?\b(?:jetzt|nun)\b",
    ),
    (
        "override_fr",
        0.9,
        r"\b(?:ignore[rz]?|oublie[rz]?|ne tiens? pas compte)\b(?:\s+\S+){0,4}?\s+(?:instructions?|consignes?|règles|tâches?"
        r"|directives?|tout|ce qui précède)",
    ),
    ("new_task_fr", 0.6, r"\bnouvelles?\s+(?:tâches?|instructions?|consignes?)\b"),
    (
        "override_es",
        0.9,
        r"\b(?:ignora[r]?|olvida[r]?|olvide|ignore|omite|haz caso omiso de)\b(?:\s+\S+){0,4}?\s+(?:instrucciones|indicaciones"
        r"|reglas|tareas?|órdenes|todo|lo anterior)",
    ),
    ("new_task_es", 0.6, r"\bnuevas?\s+(?:tareas?|instrucciones)\b"),
    (
        "override",
        0.9,
        r"\b(?:change|update|replace|overwrite) your (?:instructions|rules|prompt|programming)\b"
        r"|\byour (?:new )?instructions are now\b|\bforgot everything\b",
    ),
    ("override", 0.6, r"\b(?:what (?:i|you) (?:said|told you)|what'?s|waht'?s|what was said) before\b"),
    (
        "new_instruction",
        0.6,
        r"\b(?:additional|new|further) (?:instruction|statement|order|command)s?\b|(?:^|\W)(?:instruction|order|befehl|anweisung)\s*:",
    ),
    (
        "ignore_sources",
        0.6,
        r"\b(?:not|disregarding|ignoring|without)\b[^.?]{0,25}\b(?:the )?(?:articles|documents|sources|provided context)\b"
        r"|\bdespite what you'?ve been told\b",
    ),
    (
        "response_steer",
        0.55,
        r"\b(?:repeat after me|answer (?:every question |everything )?with|reply (?:only )?with|respond (?:only )?with"
        r"|antworte\w* (?:im stil|mit)|in your (?:answer|response|reply|output)|(?:encode|translate|reverse|encrypt|format)"
        r" your (?:response|answer|reply|output)|your (?:response|answer|reply)'?s? (?:character|language|format))\b",
    ),
    (
        "override_de",
        0.85,
        r"\babweichend (?:zu|von) (?:den )?(?:vorherigen|obigen|bisherigen)|\bhöre? nicht auf\b|\balle vorherigen informationen\b"
        r"|\b(?:obige\w*|vorherige\w*|bisherige\w*|das obige)\b(?:\s+\S+){0,3}?\s+ignorier\w*",
    ),
    (
        "override_xx",
        0.85,
        r"\b(?:zaboravi|забудь\w*|игнорируй\w*|ignora|dimentica|esque[cç]a|ignore)\b(?:\s+\S+){0,3}?\s+"
        r"(?:instrukcij\w*|инструкц\w*|istruzioni|instru[cç][oõ]es|le istruzioni|as instru[cç][oõ]es)",
    ),
    ("pwn", 0.7, r"\bexploit\w* (?:ai|ki|llm)\b|\bpwned\b|\bki-systeme auszunutzen\b"),
    (
        "roleplay_frame",
        0.6,
        r"\b(?:break|breaking|falling out of|fall out of|breaking out of) (?:the |their |his |her )?(?:character|figure|role)s?\b"
        r"|\b(?:stay|stays|remain|remains|bleiben|verharren)\b(?:\s+\S+){0,3}?\s+in (?:their|his|her|your|ihren) rollen?\b"
        r"|\bin ihren rollen\b|\baus ihren charakteren\b",
    ),
    # role / system impersonation
    (
        "fake_system",
        0.8,
        r"(?:^|\s)(?:system|assistant|developer)\s*:\s|<\|im_start\|>|<\|system\|>|\[/?inst\]|<<sys>>|</?system>"
        r"|#{2,}\s*(?:system|new instructions?|instruction)\b|\bsystem (?:prompt )?(?:override|update|message)\s*:",
    ),
    (
        "persona",
        0.5,
        r"\byou are now\b|\bfrom now on,? you\b|\b(?:pretend|imagine)\s+(?:that\s+)?(?:you are|you're|to be)\b"
        r"|\bnow you are\b|\b(?:du bist jetzt|jetzt bist du|tu es maintenant|ahora eres)\b|\bstell dir vor,? du bist\b"
        r"|^(?:\S+[.!] )?(?:you are|du bist) (?:the|a|an|ein|eine|keine?) \w+|\byou are the \w+\. as the\b|\bstay (?:fully |always )?in (?:your|their) roles?"
        r"|\bwithout (?:even )?falling out of\b",
    ),
    ("act_as", 0.35, r"\b(?:act as an?|you will act as|agis comme|act[uú]a como)\b"),
    (
        "act_as_template",
        0.6,
        r"\bi want you to act as\b|\bich möchte, dass (?:sie|du) als\b[^.]{0,60}\b(?:fungier|agier|auftret)\w*",
    ),
    (
        "jailbreak",
        0.8,
        r"\b(?:developer mode|dan mode|do anything now|jailbreak\w*|no (?:restrictions|filters|limits)|unfiltered|"
        r"without (?:any )?(?:restrictions|filters|censorship))\b",
    ),
    # exfiltration
    (
        "exfiltrate",
        0.85,
        r"\b(?:show|print|reveal|output|repeat|tell|give|display|dump|leak|share|write|spell|return|list)\b(?:\s+\S+){0,3}?\s+"
        r"(?:(?:system|initial|hidden|original|secret|full|previous|above|your)\s+)+"
        r"(?:prompt|prompts|instructions|prompt texts?|rules|configuration|context|messages?)\b",
    ),
    (
        "exfiltrate",
        0.85,
        r"\b(?:show|print|reveal|output|tell|give|display)\b[^.]{0,20}\ball\s+(?:your|the)\s+(?:prompt|instructions)"
        r"|\bcopy of the (?:full )?prompt\b|\b(?:zeig\w*|gib)\b[^.]{0,30}\bprompt",
    ),
    (
        "exfiltrate_secret",
        0.7,
        r"\b(?:send|post|forward|upload|email|e-mail|leak|exfiltrate|include)\b[^.]{0,60}\b(?:api[ _-]?keys?|passwords?|"
        r"credentials|secrets?|tokens?|private keys?|ssh keys?|env(?:ironment)? variables|cookies)\b",
    ),
    ("exfil_link", 0.8, r"!\[[^\]]*\]\(\s*https?://[^)\s]*[?&][a-z_]*=\s*[{$<]"),
    # tool-call hijack (mostly in tool output)
    (
        "tool_hijack",
        0.7,
        r"\b(?:call|invoke|use|run|execute|trigger)\s+(?:the\s+)?(?:\w+\s+)?(?:tool|function|plugin|api)\b[^.]{0,40}\b"
        r"(?:with|to|and)\b[^.]{0,60}\b(?:delete|transfer|send|forward|pay|wire|grant|rm |drop|exfiltrate)",
    ),
    (
        "tool_hijack",
        0.75,
        r"\brm\s+-rf\b|\bcurl\s+[^|]{0,80}\|\s*(?:ba)?sh\b|\bwget\s+\S+\s*;|\bdrop\s+table\b",
    ),
    (
        "addressed_ai",
        0.55,
        r"\b(?:ai|assistant|llm|chatbot|language model|gpt|claude|agent)s?\b[^.]{0,25}\b(?:reading|processing|summari[sz]ing)\s+this\b"
        r"|\b(?:note|message|instructions?) (?:to|for) (?:the )?(?:ai|assistant|llm|model|agent)\b"
        r"|\bif you are an? (?:ai|assistant|llm|language model|agent)\b",
    ),
    (
        "important_override",
        0.45,
        r"\b(?:important|urgent|critical)\s*[:!]+[^.]{0,60}\b(?:must|instead|ignore|do not)\b",
    ),
)


def _compile(rules: tuple[tuple[str, float, str], ...]) -> tuple[re.Pattern[str], list[tuple[str, float]]]:
    """One alternation with a named group per rule: one scan of the text, not one per rule."""
    parts, names = [], []
    for i, (name, weight, pattern) in enumerate(rules):
        parts.append(f"(?P<r{i}>{pattern})")
        names.append((name, weight))
    return re.compile("|".join(parts), re.S), names


_PATTERN, _NAMES = _compile(RULES)


class RuleDetector:
    """The default detector: weighted rules over the normalised text and its decoded parts."""

    name = "rules-v1"

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = threshold

    def screen(self, text: str, channel: str = "user") -> Verdict:
        hits: dict[str, float] = {}
        self._scan(normalise(text), hits)
        if _LEET_HINT.search(text.lower()):
            leet = normalise(text).translate(_LEET)
            before = set(hits)
            self._scan(leet, hits)
            if set(hits) - before:
                hits["leetspeak"] = 0.0
        if len(text) >= 16:
            for how, decoded in _decoded(text):
                before = set(hits)
                self._scan(normalise(decoded), hits)
                if set(hits) - before:
                    hits[how] = 0.2  # an instruction hidden in an encoding is itself a cue
            if "<" in text or "](" in text:
                for m in _HIDDEN.finditer(text):
                    hits.setdefault("hidden_markup", 0.3)
                    if m.group(1):
                        self._scan(normalise(m.group(1)), hits)
        keep = 1.0
        for weight in hits.values():
            keep *= 1.0 - weight
        score = round(1.0 - keep, 4)
        return Verdict(score, score >= self.threshold, self.name, tuple(sorted(hits)))

    @staticmethod
    def _scan(text: str, hits: dict[str, float]) -> None:
        for m in _PATTERN.finditer(text):
            group = m.lastgroup
            if group is None:
                continue
            name, weight = _NAMES[int(group[1:])]
            if weight > hits.get(name, 0.0):
                hits[name] = weight
