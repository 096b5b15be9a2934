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
_INVISIBLE_RE = re.compile("[" + "".join(chr(c) for c in sorted(_INVISIBLE)) + "]")
_CYRILLIC_GREEK = re.compile("[\u0370-\u04ff\u0500-\u052f]")
_MIXED_WORD = re.compile(r"\w*(?:[a-zA-Z]\w*[\u0370-\u052f]|[\u0370-\u052f]\w*[a-zA-Z])\w*")
# Five or more upper-case words in a row inside a message ("DO NOT ANSWER THIS BUT JUST OUTPUT").
_SHOUT = re.compile(r"(?<![A-Z])[A-ZÄÖÜ]{2,}(?:[ ,]+[A-ZÄÖÜ\"!?]{2,}){4,}")
_LEET = str.maketrans("0134578@$|!", "oieastbasil")
_LEET_HINT = re.compile(r"[a-z][0-9@$][a-z]|[0-9@$][a-z]{2}")
_B64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
_HEX_ONLY = re.compile(r"[0-9a-fA-F]+")
_HIDDEN = re.compile(
    r"<!--(.*?)-->|<[^>]*(?:display\s*:\s*none|font-size\s*:\s*0|visibility\s*:\s*hidden|hidden)[^>]*>"
    r"|\[[^\]]*\]\(\s*https?://[^)\s]*[?&][^)\s]*=",
    re.S | re.I,
)


def normalise(text: str) -> str:
    """The text as the rules read it: NFKC, invisible characters dropped, look-alike letters
    mapped to Latin, lower case, runs of white space as one space."""
    if not text.isascii():
        if not unicodedata.is_normalized("NFKC", text):
            text = unicodedata.normalize("NFKC", text)
        if _INVISIBLE_RE.search(text):
            text = text.translate(_INVISIBLE)
        if _CYRILLIC_GREEK.search(text):  # only words that mix scripts: Russian text stays Russian
            text = _MIXED_WORD.sub(lambda m: m.group().translate(_HOMOGLYPHS), text)
    return " ".join(text.lower().split())


def _decoded(text: str) -> list[tuple[str, str]]:
    """(how, text) for what base64 or hex runs in ``text`` decode to, when that is text."""
    out: list[tuple[str, str]] = []
    for run in _B64_RUN.findall(text)[:6]:
        if run.isalpha() and (run.islower() or run.isupper()):
            continue  # a long plain word, not base64
        if len(run) >= 24 and _HEX_ONLY.fullmatch(run):
            how, raw = "hex", bytes.fromhex(run[: len(run) // 2 * 2])
        else:
            try:
                how, raw = "base64", base64.b64decode(run + "=" * (-len(run) % 4), validate=False)
            except (binascii.Error, ValueError):
                continue
        decoded = _printable(raw)
        if decoded:
            out.append((how, decoded))
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

_VERB = r"(?:write|help|answer|tell|show|task|please|say|print|generate|create|give|reply|respond)"


@dataclass(frozen=True, slots=True)
class Rule:
    """One cue: ``pattern`` runs on the normalised text only when one of ``triggers`` (plain
    substrings) is in it, so a message with no trigger word costs a few substring scans."""

    name: str
    weight: float
    triggers: tuple[str, ...]
    pattern: str
    lead: int = 40  # how far before its trigger a match may start (long texts are searched in windows)
    tool_only: bool = False  # a cue only in data (a tool result): normal in what a user writes


_OVERRIDE_VERBS = (
    "ignor", "disregard", "forget", "skip", "overrid", "bypass", "drop", "abandon", "leave", "remove", "delete",
    "clear", "erase",
)  # fmt: skip

RULES: tuple[Rule, ...] = (
    # instruction override, EN
    Rule("override", 0.9, _OVERRIDE_VERBS,
         rf"\b(?:ignore|disregard|forget|skip|overrid(?:e|ing)|bypass|drop|abandon|leave|remove|delete|clear|erase)\b"
         r"(?:\s+\S+){0,4}?\s+"
         rf"{_PREV}\b(?:\s+\S+){{0,3}}?\s+{_ORDERS}\b"),
    Rule("override", 0.9, ("ignor", "disregard", "forget", "forgot"),
         r"\b(?:ignore|disregard|forget)\s+(?:about\s+)?(?:all|everything|that|this|the above|above)\b"
         r"|\bforgot everything\b"),
    Rule("override", 0.9, ("your",),
         r"\b(?:change|update|replace|overwrite) your (?:instructions|rules|prompt|programming)\b"
         r"|\byour (?:new )?instructions are now\b"),
    Rule("override", 0.6, ("before",),
         r"\b(?:what (?:i|you) (?:said|told you)|what'?s|waht'?s|what was said) before\b"),
    Rule("new_task", 0.7, ("new",),
         r"\b(?:now|next)\b[^.?!]{0,30}\b(?:focus|concentrate|work)\s+on\s+(?:your|a|the|this)?\s*new\s+"
         r"(?:task|assignment|challenge)", lead=100),
    Rule("new_task", 0.55, ("new",),
         r"\bnew\s+(?:task|tasks|assignment|challenge|instructions?)\b\s*(?:follow|:|is|for you)"),
    Rule("new_task", 0.55, ("start", "begin"),
         r"\b(?:start|begin)\s+(?:over|again|from (?:scratch|the front|the beginning))\b"),
    Rule("new_instruction", 0.6, ("instruction", "statement", "order", "command", "befehl", "anweisung"),
         r"\b(?:additional|new|further) (?:instruction|statement|order|command)s?\b"
         r"|(?:^|\W)(?:instruction|order|befehl|anweisung)\s*:"),
    Rule("closure_pivot", 0.55, ("now",),
         r"\b(?:well done|very good|very well|excellent|great|fantastic|congratulations|perfect|simply great"
         r"|that (?:is|was) (?:enough|done|ok|okay|fine)|that's (?:enough|done))\b[^?]{0,120}?\b(?:now|but now)\b"
         rf"[^?]{{0,40}}?\b{_VERB}\b", lead=170),
    Rule("stop_pivot", 0.6, ("attention", "stop", "halt", "wait", "achtung"),
         r"\b(?:attention|stop|halt|wait|achtung|stopp)\b\s*[-,!.:]+\s*(?:stop|stopp|ignore|now|i urgently|new|write|ich)\b"),
    Rule("instead", 0.45, ("instead",), r"\binstead\b[^.]{0,30}\b(?:output|print|say|write|respond|reply)\b"),
    Rule("ignore_sources", 0.6, ("articles", "documents", "sources", "context", "been told"),
         r"\b(?:not|disregarding|ignoring|without)\b[^.?]{0,25}\b(?:the )?(?:articles|documents|sources|provided context)\b"
         r"|\bdespite what you'?ve been told\b", lead=60),
    Rule("response_steer", 0.55, ("repeat after", "answer", "reply", "respond", "antworte", "response", "output",
                                "say", "sag"),
         r"\b(?:repeat after me|answer (?:every question |everything )?with|reply (?:only )?with|respond (?:only )?with"
         r"|antworte\w* (?:im stil|mit)|\bsay (?:\"|yes\b|only\b)|\bsagen sie (?:mir )?\"|\bsag (?:\"|ja\b)|in your (?:answer|response|reply|output)|(?:encode|translate|reverse|encrypt|format)"
         r" your (?:response|answer|reply|output)|your (?:response|answer|reply)'?s? (?:character|language|format))\b"),
    # data that addresses the model's answer ("remove spaces from your response") is a cue in a
    # tool result (an e-mail, a web page), not in what a user writes
    Rule("response_steer_data", 0.55, ("your ans", "your resp", "your repl", "your output"),
         r"\byour (?:answer|response|reply|output)s?\b", tool_only=True),
    # instruction override, DE / FR / ES / others
    Rule("override_de", 0.9, ("ignorier", "vergiss", "vergessen", "missacht", "übergeh"),
         r"\b(?:ignorier\w*|vergiss|vergessen sie|missachte\w*|übergeh\w*)\b(?:\s+\S+){0,4}?\s+"
         r"(?:anweisung\w*|aufgabe\w*|auftr[aä]g\w*|befehl\w*|regeln|vorgaben|informationen|alles|instruktion\w*|prompt\w*"
         r"|angaben|obige\w*|oben\w*)"),
    Rule("override_de", 0.85, ("vergiss",), r"\bvergiss\s+(?:alles|alle)\b|\bvergiss\s+(?:das|dies)\s+(?:alles|davor)"),
    Rule("override_de", 0.85, ("abweichend", "höre", "hör ", "vorherigen informationen", "ignorier"),
         r"\babweichend (?:zu|von) (?:den )?(?:vorherigen|obigen|bisherigen)|\bhöre? nicht auf\b"
         r"|\balle vorherigen informationen\b|\b(?:obige\w*|vorherige\w*|bisherige\w*|das obige)\b(?:\s+\S+){0,3}?\s+ignorier\w*", lead=100),
    Rule("new_task_de", 0.6, ("neue", "konzentrier", "fang"),
         r"\bneue\w*\s+(?:aufgabe|herausforderung|anweisung)\w*|\bkonzentrier\w*\s+(?:dich|sie sich)\s+(?:jetzt|nun)\b"
         r"|\bfang\w*\s+(?:von vorne|neu)\s+an\b"),
    Rule("closure_pivot_de", 0.55, ("jetzt", "nun"),
         r"\b(?:gut gemacht|sehr gut|super|toll|hervorragend|ausgezeichnet|herzlichen glückwunsch|das reicht"
         r"|das ist erledigt|einfach großartig|fantastisch|prima)\b[^?]{0,120}?\b(?:jetzt|nun)\b", lead=170),
    Rule("override_fr", 0.9, ("ignor", "oubli", "tiens pas", "tenez pas"),
         r"\b(?:ignore[rz]?|oublie[rz]?|ne tiens? pas compte|ne tenez pas compte)\b(?:\s+\S+){0,4}?\s+"
         r"(?:instructions?|consignes?|règles|tâches?|directives?|tout|ce qui précède)"),
    Rule("new_task_fr", 0.6, ("nouvelle",), r"\bnouvelles?\s+(?:tâches?|instructions?|consignes?)\b"),
    Rule("override_es", 0.9, ("ignor", "olvid", "omite", "caso omiso"),
         r"\b(?:ignora[r]?|olvida[r]?|olvide|ignore|omite|haz caso omiso de)\b(?:\s+\S+){0,4}?\s+(?:instrucciones"
         r"|indicaciones|reglas|tareas?|órdenes|todo|lo anterior)"),
    Rule("new_task_es", 0.6, ("nueva",), r"\bnuevas?\s+(?:tareas?|instrucciones)\b"),
    Rule("override_xx", 0.85, ("zaboravi", "забуд", "игнор", "ignora", "dimentica", "esque", "ignore"),
         r"\b(?:zaboravi|забудь\w*|игнорируй\w*|ignora|dimentica|esque[cç]a|ignore)\b(?:\s+\S+){0,3}?\s+"
         r"(?:instrukcij\w*|инструкц\w*|istruzioni|instru[cç][oõ]es)"),
    # role / system impersonation
    Rule("fake_system", 0.8, ("system", "assistant", "developer", "human", "<|", "inst]", "<<sys", "##"),
         r"(?:^|\s)(?:system|assistant|developer|human)\s*:\s|<\|im_start\|>|<\|system\|>|\[/?inst\]|<<sys>>|</?system>"
         r"|#{2,}\s*(?:system|new instructions?|instruction)\b|\bsystem (?:prompt )?(?:override|update|message)\s*:"),
    Rule("persona", 0.5, ("you are", "you're", "from now on", "pretend", "imagine", "du bist", "bist du", "stell dir",
                          "you act",
                          "tu es", "ahora eres"),
         r"\byou are now\b|\bfrom now on,? you\b|\b(?:pretend|imagine)\s+(?:that\s+)?(?:you are|you're|to be|you can|you have)\b"
         r"|\b(?:now )?you act as\b"
         r"|\bnow you are\b|\b(?:du bist jetzt|jetzt bist du|tu es maintenant|ahora eres)\b|\bstell dir vor,? du bist\b"
         r"|^(?:\S+[.!] )?(?:you are|du bist) (?:the|a|an|ein|eine|keine?) \w+|\byou are the \w+\. as the\b"),
    Rule("roleplay_frame", 0.6, ("character", "figure", "role", "rolle", "charakter"),
         r"\b(?:break|breaking|falling out of|fall out of|breaking out of) (?:the |their |his |her )?"
         r"(?:character|figure|role)s?\b|\b(?:stay|stays|remain|remains|bleiben|verharren)\b(?:\s+\S+){0,3}?\s+in "
         r"(?:their|his|her|your|ihren) rollen?\b|\bin ihren rollen\b|\baus ihren charakteren\b", lead=100),
    Rule("act_as", 0.35, ("act as", "agis comme", "como"), r"\b(?:act as an?|you will act as|agis comme|act[uú]a como)\b"),
    Rule("act_as_template", 0.6, ("act as", "ich möchte"),
         r"\bi want you to act as\b|\bich möchte, dass (?:sie|du) als\b[^.]{0,60}\b(?:fungier|agier|auftret)\w*", lead=60),
    Rule("jailbreak", 0.8, ("developer mode", "dan", "do anything", "jailbreak", "no restrictions", "no filters",
                            "no limits", "unfiltered", "without"),
         r"\b(?:developer mode|dan mode|do anything now|jailbreak\w*|no (?:restrictions|filters|limits)|unfiltered"
         r"|without (?:any )?(?:restrictions|filters|censorship))\b"),
    Rule("pwn", 0.7, ("exploit", "pwned", "auszunutzen"),
         r"\bexploit\w* (?:ai|ki|llm)\b|\bpwned\b|\bki-systeme auszunutzen\b"),
    Rule("fabricate", 0.55, ("untrue", "unwahr", "false", "fake", "falsch"),
         r"\b(?:untrue|unwahre\w*|false|fake|falsche\w*)\s+(?:headlines?|überschrift\w*|news|nachricht\w*|statistic\w*)\b"),
    Rule("trigger_word", 0.6, ("say", "sage", "digo", "gesagt"),
         r"\b(?:if|when|wenn) (?:i|ich) (?:say|sage)\b[^.]{0,40}\b(?:you|du) (?:say|sagst)\b"
         r"|\bsi yo digo\b[^.]{0,30}\btu dices\b|\bwenn \"[^\"]{1,30}\" gesagt wird\b", lead=60),
    Rule("execute_code", 0.4, ("execute", "run "),
         r"\b(?:execute|run) (?:the following|this) (?:command|code|script)\b"),
    # exfiltration
    Rule("exfiltrate", 0.6, ("before", "above"),
         r"\bwhat (?:are|is|was|were) the (?:\d+ |first |last )?(?:sentences?|words?|lines?|text) (?:before|above)\b", lead=60),
    Rule("exfiltrate", 0.85, ("prompt", "instructions", "rules", "configuration", "context", "messages"),
         r"\b(?:show|print|reveal|output|repeat|tell|give|display|dump|leak|share|write|spell|return|list)\b"
         r"(?:\s+\S+){0,3}?\s+(?:(?:system|initial|hidden|original|secret|full|previous|above|your)\s+)+"
         r"(?:prompt|prompts|instructions|prompt texts?|rules|configuration|context|messages?)\b", lead=120),
    Rule("exfiltrate", 0.85, ("prompt", "instructions"),
         r"\b(?:show|print|reveal|output|tell|give|display)\b[^.]{0,20}\ball\s+(?:your|the)\s+(?:prompt|instructions)"
         r"|\bcopy of the (?:full )?prompt\b|\b(?:zeig\w*|gib)\b[^.]{0,30}\bprompt", lead=60),
    Rule("exfiltrate_secret", 0.7, ("key", "password", "credential", "secret", "token", "env", "cookie"),
         r"\b(?:send|post|forward|upload|email|e-mail|leak|exfiltrate|include)\b[^.]{0,60}\b(?:api[ _-]?keys?|passwords?"
         r"|credentials|secrets?|tokens?|private keys?|ssh keys?|env(?:ironment)? variables|cookies)\b", lead=90),
    Rule("exfil_link", 0.8, ("](",), r"!\[[^\]]*\]\(\s*https?://[^)\s]*[?&][a-z_]*=\s*[{$<]"),
    # tool-call hijack (mostly in tool output)
    Rule("tool_hijack", 0.7, ("tool", "function", "plugin", "api"),
         r"\b(?:call|invoke|use|run|execute|trigger)\s+(?:the\s+)?(?:\w+\s+)?(?:tool|function|plugin|api)\b[^.]{0,40}\b"
         r"(?:with|to|and)\b[^.]{0,60}\b(?:delete|transfer|send|forward|pay|wire|grant|rm |drop|exfiltrate)", lead=70),
    Rule("tool_hijack", 0.75, ("rm -rf", "curl", "wget", "drop table"),
         r"\brm\s+-rf\b|\bcurl\s+[^|]{0,80}\|\s*(?:ba)?sh\b|\bwget\s+\S+\s*;|\bdrop\s+table\b"),
    Rule("addressed_ai", 0.55, (" ai", "assistant", "llm", "model", "agent", "gpt", "claude", "chatbot"),
         r"\b(?:ai|assistant|llm|chatbot|language model|gpt|claude|agent)s?\b[^.]{0,25}\b"
         r"(?:reading|processing|summari[sz]ing)\s+this\b"
         r"|\b(?:note|message|instructions?) (?:to|for) (?:the )?(?:ai|assistant|llm|model|agent)\b"
         r"|\bif you are an? (?:ai|assistant|llm|language model|agent)\b"),
    Rule("important_override", 0.45, ("important", "urgent", "critical"),
         r"\b(?:important|urgent|critical)\s*[:!]+[^.]{0,60}\b(?:must|instead|ignore|do not)\b"),
)  # fmt: skip

_Compiled = tuple[str, float, tuple[str, ...], re.Pattern[str], int]
_COMPILED: tuple[_Compiled, ...] = tuple(
    (r.name, r.weight, r.triggers, re.compile(r.pattern, re.S), r.lead) for r in RULES if not r.tool_only
)
_COMPILED_TOOL: tuple[_Compiled, ...] = tuple(
    (r.name, r.weight, r.triggers, re.compile(r.pattern, re.S), r.lead) for r in RULES
)


class RuleDetector:
    """The default detector: weighted rules over the normalised text and its decoded parts."""

    name = "rules-v1"

    def __init__(self, threshold: float = 0.5) -> None:
        if not 0 < threshold <= 1:
            raise ValueError("threshold must be in (0, 1]")
        self.threshold = threshold

    def screen(self, text: str, channel: str = "user") -> Verdict:
        hits: dict[str, float] = {}
        rules = _COMPILED_TOOL if channel == "tool" else _COMPILED
        self._scan(normalise(text), hits, rules)
        if len(text) <= 2000 and _LEET_HINT.search(text.lower()):
            leet = normalise(text).translate(_LEET)
            before = set(hits)
            self._scan(leet, hits, rules)
            if set(hits) - before:
                hits["leetspeak"] = 0.0
        if len(text) >= 16:
            for how, decoded in _decoded(text):
                before = set(hits)
                self._scan(normalise(decoded), hits, rules)
                if set(hits) - before:
                    hits[how] = 0.2  # an instruction hidden in an encoding is itself a cue
            if "<" in text or "](" in text:
                for m in _HIDDEN.finditer(text):
                    hits.setdefault("hidden_markup", 0.3)
                    if m.group(1):
                        self._scan(normalise(m.group(1)), hits, rules)
        if _SHOUT.search(text):
            hits.setdefault("shouting", 0.55)
        keep = 1.0
        for weight in hits.values():
            keep *= 1.0 - weight
        score = round(1.0 - keep, 4)
        return Verdict(score, score >= self.threshold, self.name, tuple(sorted(hits)))

    @staticmethod
    def _scan(text: str, hits: dict[str, float], rules: tuple[_Compiled, ...]) -> None:
        short = len(text) <= _WINDOW
        for name, weight, triggers, pattern, lead in rules:
            if weight <= hits.get(name, 0.0):
                continue
            if short:
                if any(t in text for t in triggers) and pattern.search(text) is not None:
                    hits[name] = weight
            elif _windowed(text, triggers, pattern, lead):
                hits[name] = weight


_WINDOW = 400  # a rule's match spans at most ~200 characters around its trigger
_MAX_WINDOWS = 8  # per trigger and rule: a long text repeating a trigger word costs bounded time


def _windowed(text: str, triggers: tuple[str, ...], pattern: re.Pattern[str], lead: int) -> bool:
    """Search only around each trigger's occurrences (``pos``/``endpos`` keep ``^`` and ``\\b``
    true to the whole text): a long tool output costs what its trigger words cost."""
    for trigger in triggers:
        at = text.find(trigger)
        seen = 0
        while at >= 0 and seen < _MAX_WINDOWS:
            if pattern.search(text, max(0, at - lead), at + 220) is not None:
                return True
            at = text.find(trigger, at + 200)
            seen += 1
    return False
