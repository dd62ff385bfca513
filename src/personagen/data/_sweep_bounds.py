"""Sound bounds on a sweep setting's metrics, computed from offsets alone (no retrieval).

The sweep stops early: a setting whose best possible metrics cannot change which setting
`rag_sweep.choose` picks is not evaluated. Its bounds come from where its chunks lie
relative to each question's gold spans, whatever a retriever would rank:

- span_recall of a question at top_k <= the gold characters covered by the k chunks that
  overlap the gold most (each counted whole, so their union can only be smaller), over the
  gold characters.
- reciprocal rank <= 1 when some chunk overlaps the gold, else 0.
- context_chars: a question retrieves at least one chunk overlapping its gold when it has
  a hit (so at least the shortest such chunk). The embedding retriever, and hybrid fusion
  that includes it, always return min(k, chunks) chunks, so a question also gets at least the
  k - 1 shortest other chunks of the corpus (the k shortest when it has no hit); BM25
  returns only chunks sharing a term, so nothing more is certain there.

A setting can enter the winner's tie group only with mrr >= best mrr - tolerance, which
needs that share of questions to hit (reciprocal rank <= hit) and as many with
span_recall >= best - tolerance; the cheapest way to give that many questions a hit
bounds its mean context from below. `matters` applies `choose`'s rule to these bounds; a
setting for which it is False leaves `choose` unchanged on any superset of the rows it
was checked against whose best stays the same (the sweep re-checks every skipped setting
against the final table and evaluates those that fail).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ChunkingBounds",
    "QuestionBounds",
    "SettingBound",
    "Standing",
    "chunking_bounds",
    "matters",
    "question_bounds",
    "setting_bound",
]

_INF = float("inf")
# Rows round span_recall and mrr to 6 places: a row passing a cut by rounding up may have a
# true mean this much below it.
_ROUNDING = 1e-6


@dataclass(frozen=True)
class QuestionBounds:
    """One question's bound components under one chunking."""

    gold: int
    """Gold characters (spans merged per document)."""
    covers: tuple[int, ...]
    """Gold characters inside each chunk overlapping the gold, largest first (at most max k)."""
    shortest_hit: int
    """Length of the shortest chunk overlapping the gold (0 when none does)."""

    @property
    def hitable(self) -> bool:
        """Some chunk overlaps the gold."""
        return bool(self.covers)


@dataclass(frozen=True)
class ChunkingBounds:
    """Chunking-wide components: chunk count and sums of the shortest chunks."""

    chunks: int
    shortest: tuple[int, ...]
    """shortest[j]: sum of the j shortest chunk lengths, j = 0..max k."""


@dataclass(frozen=True)
class SettingBound:
    """Best possible metrics of one setting (retriever, top_k) under one chunking."""

    span_recall: float
    mrr: float
    context: list[tuple[int, int]]
    """Per question: the least context with a hit and without one."""
    tie_key: tuple[int, int, int, int, int]
    """`choose`'s tie-break after context: retriever, top_k, size, overlap, splitter."""

    def least_context(self, hits: int) -> float:
        """The least mean context_chars with at least `hits` questions hitting (inf: never)."""
        n = len(self.context)
        if not n:
            return 0.0
        base = sum(miss for _, miss in self.context)
        deltas = sorted(hit - miss for hit, miss in self.context if hit != _INF_INT)
        if hits > len(deltas):
            return _INF
        taken = sum(deltas[:hits]) + sum(d for d in deltas[hits:] if d < 0)
        return round((base + taken) / n, 2)


_INF_INT = 1 << 62


def question_bounds(
    gold: Sequence[tuple[int, int, int]],
    doc: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    max_k: int,
) -> QuestionBounds:
    """Bound components of a question with gold ranges `(doc index, start, end)`.

    The ranges must be merged (disjoint) per document; chunks are `(doc, start, end)` arrays
    in document-then-start order.
    """
    overlap: dict[int, int] = {}
    total = 0
    for d, lo, hi in gold:
        total += hi - lo
        first = int(np.searchsorted(doc, d, side="left"))
        last = int(np.searchsorted(doc, d, side="right"))
        # Chunks of one document come in start order; those starting before `hi` are a
        # prefix, and among them the ones ending after `lo` overlap (ends need not be sorted).
        stop = first + int(np.searchsorted(start[first:last], hi, side="left"))
        candidates = np.arange(first, stop)
        ends = end[first:stop]
        inside = candidates[ends > lo]
        if not len(inside):
            continue
        shared = np.minimum(end[inside], hi) - np.maximum(start[inside], lo)
        for index, chars in zip(inside.tolist(), shared.tolist(), strict=True):
            overlap[index] = overlap.get(index, 0) + int(chars)
    if not overlap:
        return QuestionBounds(gold=total, covers=(), shortest_hit=0)
    covers = tuple(sorted(overlap.values(), reverse=True)[:max_k])
    lengths = end[list(overlap)] - start[list(overlap)]
    return QuestionBounds(gold=total, covers=covers, shortest_hit=int(lengths.min()))


def chunking_bounds(start: np.ndarray, end: np.ndarray, max_k: int) -> ChunkingBounds:
    """Chunk count and prefix sums of the shortest chunk lengths up to `max_k`."""
    lengths = np.sort(end - start)[:max_k]
    sums = [0, *np.cumsum(lengths).tolist()]
    return ChunkingBounds(chunks=len(start), shortest=tuple(int(s) for s in sums))


def setting_bound(
    questions: Sequence[QuestionBounds],
    chunking: ChunkingBounds,
    *,
    dense: bool,
    top_k: int,
    tie_key: tuple[int, int, int, int, int],
) -> SettingBound:
    """The bound of one setting over `questions` (in the order the sweep scores them)."""
    n = len(questions)
    k = min(top_k, chunking.chunks)
    shortest = chunking.shortest
    recalls = [min(q.gold, sum(q.covers[:top_k])) / q.gold if q.gold else 0.0 for q in questions]
    hits = [1.0 if q.hitable else 0.0 for q in questions]
    context: list[tuple[int, int]] = []
    for q in questions:
        if dense:
            miss = shortest[min(k, len(shortest) - 1)]
            hit = max(q.shortest_hit + shortest[min(max(k - 1, 0), len(shortest) - 1)], miss)
        else:
            miss, hit = 0, q.shortest_hit
        context.append((hit if q.hitable else _INF_INT, miss))
    return SettingBound(
        span_recall=round(sum(recalls) / n, 6) if n else 0.0,
        mrr=round(sum(hits) / n, 6) if n else 0.0,
        context=context,
        tie_key=tie_key,
    )


@dataclass(frozen=True)
class Standing:
    """What `choose` saw: best recall, best MRR among the recall ties, the winner's key."""

    recall: float
    mrr: float
    key: tuple[float, int, int, int, int, int]


def matters(bound: SettingBound, standing: Standing | None, tolerance: float) -> bool:
    """False when no values within `bound` can change `choose`'s pick given `standing`."""
    if standing is None:
        return True
    if bound.span_recall > standing.recall:
        return True  # it could raise the best recall and so change the candidates
    if bound.span_recall < standing.recall - tolerance:
        return False
    if bound.mrr > standing.mrr:
        return True
    if bound.mrr < standing.mrr - tolerance:
        return False
    n = len(bound.context)
    need = max(standing.recall - tolerance, standing.mrr - tolerance) - _ROUNDING
    hits = max(0, math.ceil(n * need - 1e-9)) if n else 0
    least = bound.least_context(hits)
    return (least, *bound.tie_key) < standing.key
