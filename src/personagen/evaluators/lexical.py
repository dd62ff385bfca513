r"""Language-light lexical features shared by the ranking, support and relevance checks.

Stems, numbers and "key tokens" (code, identifiers, paths) are what a wrong answer changes
while keeping the words around them: "two spaces" for "four spaces", `os.sep` for `os.path`.
Everything here is deterministic, needs no model and works on any script: words are Unicode
`\\w` runs; Chinese, Japanese and Korean text, which has no spaces, is split into characters.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

from personagen.llm._text import STOPWORDS

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
# A number as written: 4, 4.5, 1,000, 12%, 1e-3 (a following unit is a separate word).
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?")
# Code-ish tokens: inner dots, underscores, slashes, backslashes, colons, equals signs or a
# call's parenthesis ("os.path", "real_prefix", "C:\\new", "x=1", "hasattr(sys,"). Plain
# CamelCase/ALLCAPS words are not among them: "HTTP" or "APIs" are everyday paraphrase.
_KEY_INNER = re.compile(r"\w[._/\\:=]+\w|\w\(|\\")
_ABBREVIATION = re.compile(r"^(?:\w\.){1,3}\w?$")
_KEY_SPLIT = re.compile(r"[\s\"'“”‘’`,;]+")
_EDGE = "\"'“”‘’`.,;:!?()[]{}<>*"
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {
    "thirty": "30",
    "forty": "40",
    "fifty": "50",
    "hundred": "100",
    "thousand": "1000",
    "twice": "2",
    "dozen": "12",
}
del _NUMBER_WORDS["one"]  # mostly a pronoun ("any file containing one")
_NEGATIONS = frozenset(
    "not no never none nothing nobody neither nor cannot can't don't doesn't didn't isn't "
    "aren't wasn't weren't won't wouldn't shouldn't mustn't without n't kein keine nicht nie "
    "jamais pas ne ni nunca".split()
)
_SUFFIXES = (
    "ations",
    "ation",
    "ments",
    "ment",
    "ingly",
    "ings",
    "ing",
    "ies",
    "ied",
    "edly",
    "ed",
    "es",
    "ly",
    "s",
)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens; CJK runs become single characters."""
    out: list[str] = []
    for token in _TOKEN.findall(text):
        token = token.lower().replace("’", "'")
        if _CJK.search(token):
            out.extend(ch for ch in token if not ch.isspace())
        else:
            out.append(token)
    return out


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """A crude, language-agnostic stem: number words as digits, common suffixes cut.

    Good enough to match "indent"/"indentation", "spaces"/"space", "levels"/"level"; it is
    only ever compared with other stems made the same way.
    """
    if word in _NUMBER_WORDS:
        return _NUMBER_WORDS[word]
    if word.isdigit() or len(word) <= 3:
        return word
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= (3 if suffix == "s" else 4):
            word = word[: -len(suffix)]
            break
    return word[:7]


def content_stems(text: str) -> list[str]:
    """Stems of the words that carry content (no stopwords, no 1-letter Latin words)."""
    return [
        stem(t)
        for t in tokens(text)
        if t not in STOPWORDS and (len(t) > 1 or _CJK.match(t) or t.isdigit())
    ]


def numbers(text: str) -> set[str]:
    """Numbers in the text, normalized ("1,000" -> "1000", "four" -> "4", "5%" -> "5")."""
    found = {m.group().lstrip("+").replace(",", "") for m in _NUMBER.finditer(text)}
    found |= {_NUMBER_WORDS[t] for t in tokens(text) if t in _NUMBER_WORDS}
    return {_canonical_number(n) for n in found if n not in ("-", "")}


def _canonical_number(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def key_tokens(text: str) -> set[str]:
    """Code-like tokens (identifiers, paths, calls) a correct answer must keep verbatim."""
    found = set()
    for raw in _KEY_SPLIT.split(text):
        token = raw.strip(_EDGE)
        if len(token) >= 2 and _KEY_INNER.search(token):
            if not _NUMBER.fullmatch(token) and not _ABBREVIATION.match(token):
                found.add(token)
    return found


def negated(text: str) -> bool:
    """Whether the text contains a negation word."""
    lowered = text.lower().replace("’", "'")
    return "n't" in lowered or any(t in _NEGATIONS for t in tokens(text))


def normalized(text: str) -> str:
    """Text with whitespace runs collapsed (for verbatim containment checks)."""
    return " ".join(text.split())


class LexicalScorer:
    """BM25 over a small pool of texts (a question's candidate sentences)."""

    def __init__(self, pool: Sequence[str], *, k1: float = 1.2, b: float = 0.75) -> None:
        self._docs = [Counter(content_stems(t)) for t in pool]
        self._lengths = [sum(d.values()) for d in self._docs]
        self._avg = (sum(self._lengths) / len(self._lengths)) if self._lengths else 1.0
        frequency: Counter[str] = Counter()
        for doc in self._docs:
            frequency.update(doc.keys())
        n = len(self._docs)
        self._idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in frequency.items()}
        self._k1, self._b = k1, b

    def scores(self, query: str) -> list[float]:
        """BM25 score of every pool text for `query`."""
        terms = content_stems(query)
        out = []
        for doc, length in zip(self._docs, self._lengths, strict=True):
            score = 0.0
            norm = self._k1 * (1 - self._b + self._b * length / (self._avg or 1.0))
            for term in terms:
                tf = doc.get(term, 0)
                if tf:
                    score += self._idf.get(term, 0.0) * tf * (self._k1 + 1) / (tf + norm)
            out.append(score)
        return out
