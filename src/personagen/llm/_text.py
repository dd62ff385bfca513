"""Small text helpers shared by the LLM layer (tokenising for the fake model and estimates)."""

from __future__ import annotations

import re

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9À-Ý])")

STOPWORDS = frozenset(
    """a an and are as at be been but by can could did do does for from had has have how i if
    in into is it its me my of on or our should so than that the their them then there these
    they this to us was we were what when where which who why will with would you your about
    after all also any before being both each few more most much no nor not now only other
    out over own same some such too under until up very while am just may might must
    shall""".split()
)


def words(text: str) -> list[str]:
    """Lower-cased word tokens."""
    return [w.lower() for w in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """Word tokens without stopwords or one-letter words."""
    return [w for w in words(text) if w not in STOPWORDS and len(w) > 1]


def sentences(text: str) -> list[str]:
    """Split text into sentences (good enough for prose; keeps the original characters)."""
    parts: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if not block:
            continue
        parts.extend(s.strip() for s in _SENTENCE_END.split(block) if s.strip())
    return parts


def estimate_tokens(text: str) -> int:
    """A provider-independent token estimate (~4 characters a token, at least 1)."""
    return max(1, (len(text) + 3) // 4)
