"""Span-grounded retrieval metrics: how much of an answer's source text a retriever finds.

Every accepted answer keeps the character spans of the source it rests on, so a retrieval
setting can be judged without a model: a retrieved chunk is relevant when its character
range overlaps a gold span of the same document. Everything here is pure arithmetic on
`(doc_id, start, end)` ranges; chunks, spans, `RetrievedContext`s or plain `TextRange`s can
be passed alike.

Per question:

- `hit`: some retrieved chunk overlaps some gold span.
- `reciprocal_rank`: 1 / rank of the first overlapping chunk (0 when none does).
- `span_recall`: share of the gold characters covered by the union of the retrieved
  ranges, computed per document on merged intervals (overlapping spans or chunks are not
  counted twice).
- `context_chars`: characters handed to the reader (the sum of the chunk lengths, overlap
  between chunks included, since a reader is given every chunk whole).

`aggregate` averages them over questions: hit_rate, mrr, span_recall, context_chars.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

__all__ = [
    "Located",
    "RetrievalScores",
    "TextRange",
    "aggregate",
    "context_chars",
    "covered_chars",
    "hit",
    "merge_ranges",
    "overlaps",
    "reciprocal_rank",
    "score_retrieval",
    "span_recall",
]


class Located(Protocol):
    """Anything with a document id and a character range (`Chunk`, `Span`, ...)."""

    @property
    def doc_id(self) -> str:
        """Id of the document the range is in."""
        ...

    @property
    def start(self) -> int:
        """Offset of the first character."""
        ...

    @property
    def end(self) -> int:
        """Offset one past the last character."""
        ...


class TextRange(NamedTuple):
    """A plain character range of a document."""

    doc_id: str
    start: int
    end: int


def overlaps(a: Located, b: Located) -> bool:
    """True when two ranges share at least one character of the same document."""
    return a.doc_id == b.doc_id and a.start < b.end and b.start < a.end


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union of half-open `(start, end)` ranges, as sorted disjoint ranges.

    Empty or inverted ranges are dropped; touching ranges (`(0, 5)`, `(5, 9)`) are joined.
    """
    merged: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def _by_doc(ranges: Iterable[Located]) -> dict[str, list[tuple[int, int]]]:
    grouped: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for item in ranges:
        grouped[item.doc_id].append((item.start, item.end))
    return {doc_id: merge_ranges(spans) for doc_id, spans in grouped.items()}


def _intersection(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """Characters shared by two lists of sorted disjoint ranges (a linear merge)."""
    total = i = j = 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if low < high:
            total += high - low
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def covered_chars(retrieved: Iterable[Located], gold: Iterable[Located]) -> tuple[int, int]:
    """Gold characters covered by the retrieved ranges, and gold characters in all.

    Both sides are merged per document first, so overlapping chunks or spans count once.

    Returns:
        `(covered, total)`.
    """
    gold_by_doc = _by_doc(gold)
    retrieved_by_doc = _by_doc(retrieved)
    total = sum(end - start for spans in gold_by_doc.values() for start, end in spans)
    covered = sum(
        _intersection(spans, retrieved_by_doc[doc_id])
        for doc_id, spans in gold_by_doc.items()
        if doc_id in retrieved_by_doc
    )
    return covered, total


def hit(retrieved: Iterable[Located], gold: Sequence[Located]) -> bool:
    """True when any retrieved range overlaps any gold span."""
    return any(overlaps(chunk, span) for chunk in retrieved for span in gold)


def reciprocal_rank(retrieved: Sequence[Located], gold: Sequence[Located]) -> float:
    """1 / (1-based rank of the first retrieved range overlapping a gold span); 0 if none."""
    for rank, chunk in enumerate(retrieved, start=1):
        if any(overlaps(chunk, span) for span in gold):
            return 1.0 / rank
    return 0.0


def span_recall(retrieved: Iterable[Located], gold: Iterable[Located]) -> float:
    """Share of the gold characters inside the retrieved ranges, in [0, 1].

    Gold spans without characters give 0.0: there is nothing to find (the sweep drops
    such questions before scoring).
    """
    covered, total = covered_chars(retrieved, gold)
    return covered / total if total else 0.0


def context_chars(retrieved: Iterable[Located]) -> int:
    """Characters handed to the reader: the sum of the retrieved ranges' lengths."""
    return sum(max(0, item.end - item.start) for item in retrieved)


@dataclass(frozen=True, slots=True)
class RetrievalScores:
    """The metrics of one question's retrieval."""

    hit: bool
    reciprocal_rank: float
    span_recall: float
    context_chars: int


def score_retrieval(retrieved: Sequence[Located], gold: Sequence[Located]) -> RetrievalScores:
    """All four metrics of one ranked retrieval against a question's gold spans."""
    return RetrievalScores(
        hit=hit(retrieved, gold),
        reciprocal_rank=reciprocal_rank(retrieved, gold),
        span_recall=span_recall(retrieved, gold),
        context_chars=context_chars(retrieved),
    )


def aggregate(scores: Iterable[RetrievalScores]) -> dict[str, float]:
    """Means over questions: hit_rate, mrr, span_recall, context_chars, and `questions`.

    No questions gives zeros (and `questions` 0).
    """
    rows = list(scores)
    count = len(rows)
    if not count:
        return {
            "hit_rate": 0.0,
            "mrr": 0.0,
            "span_recall": 0.0,
            "context_chars": 0.0,
            "questions": 0,
        }
    return {
        "hit_rate": sum(r.hit for r in rows) / count,
        "mrr": sum(r.reciprocal_rank for r in rows) / count,
        "span_recall": sum(r.span_recall for r in rows) / count,
        "context_chars": sum(r.context_chars for r in rows) / count,
        "questions": count,
    }
