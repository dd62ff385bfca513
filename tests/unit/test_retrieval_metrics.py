"""Span-grounded retrieval metrics on hand-computed cases."""

from __future__ import annotations

import pytest

from personagen.evaluators.retrieval_metrics import (
    RetrievalScores,
    TextRange,
    aggregate,
    context_chars,
    covered_chars,
    hit,
    merge_ranges,
    overlaps,
    reciprocal_rank,
    score_retrieval,
    span_recall,
)
from personagen.state.documents import Chunk, Span


def r(start: int, end: int, doc: str = "d") -> TextRange:
    return TextRange(doc, start, end)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (r(0, 10), r(5, 15), True),
        (r(0, 10), r(9, 10), True),
        (r(0, 5), r(5, 10), False),  # half-open ranges that only touch share nothing
        (r(0, 10), r(0, 10, doc="e"), False),  # same offsets, other document
        (r(3, 4), r(0, 100), True),
    ],
)
def test_overlaps(a: TextRange, b: TextRange, expected: bool) -> None:
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


@pytest.mark.parametrize(
    ("ranges", "expected"),
    [
        ([], []),
        ([(5, 9), (0, 3)], [(0, 3), (5, 9)]),
        ([(0, 5), (5, 9)], [(0, 9)]),
        ([(0, 10), (2, 4), (8, 12)], [(0, 12)]),
        ([(4, 4), (6, 2), (1, 2)], [(1, 2)]),  # empty and inverted ranges dropped
    ],
)
def test_merge_ranges(ranges: list[tuple[int, int]], expected: list[tuple[int, int]]) -> None:
    assert merge_ranges(ranges) == expected


def test_recall_counts_the_union_of_chunks_within_each_gold_span() -> None:
    retrieved = [r(0, 10), r(20, 30)]
    gold = [r(5, 25)]  # 20 characters; chunks cover 5..10 and 20..25
    assert covered_chars(retrieved, gold) == (10, 20)
    assert span_recall(retrieved, gold) == pytest.approx(0.5)
    assert hit(retrieved, gold)
    assert reciprocal_rank(retrieved, gold) == 1.0
    assert context_chars(retrieved) == 20


def test_overlapping_chunks_are_not_counted_twice_but_are_handed_over_twice() -> None:
    retrieved = [r(0, 10), r(5, 15)]
    gold = [r(0, 20)]
    assert span_recall(retrieved, gold) == pytest.approx(15 / 20)
    assert context_chars(retrieved) == 20


def test_overlapping_gold_spans_are_merged() -> None:
    gold = [r(0, 10), r(5, 15)]  # 15 distinct characters
    assert covered_chars([r(0, 5)], gold) == (5, 15)
    assert span_recall([r(0, 100)], gold) == 1.0


def test_recall_is_per_document() -> None:
    gold = [r(0, 10, "a"), r(0, 30, "b")]
    retrieved = [r(0, 10, "b"), r(0, 10, "c")]
    assert covered_chars(retrieved, gold) == (10, 40)
    assert span_recall(retrieved, gold) == pytest.approx(0.25)


def test_reciprocal_rank_of_first_overlapping_chunk() -> None:
    gold = [r(100, 120)]
    assert reciprocal_rank([r(0, 10), r(50, 60), r(110, 130)], gold) == pytest.approx(1 / 3)
    assert reciprocal_rank([r(0, 10)], gold) == 0.0
    assert reciprocal_rank([], gold) == 0.0


def test_nothing_retrieved_or_nothing_to_find() -> None:
    assert score_retrieval([], [r(0, 5)]) == RetrievalScores(False, 0.0, 0.0, 0)
    assert span_recall([r(0, 5)], []) == 0.0
    assert not hit([r(0, 5)], [])


def test_accepts_chunks_and_spans() -> None:
    text = "alpha beta gamma delta"
    chunk = Chunk(id="d:0-10", doc_id="d", index=0, start=0, end=10, text=text[0:10])
    span = Span(doc_id="d", start=6, end=16, text=text[6:16])
    scores = score_retrieval([chunk], [span])
    assert scores == RetrievalScores(True, 1.0, 0.4, 10)


def test_aggregate_means() -> None:
    rows = [
        RetrievalScores(True, 1.0, 1.0, 100),
        RetrievalScores(True, 0.5, 0.5, 300),
        RetrievalScores(False, 0.0, 0.0, 200),
        RetrievalScores(True, 1 / 3, 0.25, 400),
    ]
    assert aggregate(rows) == pytest.approx(
        {
            "hit_rate": 0.75,
            "mrr": (1 + 0.5 + 1 / 3) / 4,
            "span_recall": 1.75 / 4,
            "context_chars": 250.0,
            "questions": 4,
        }
    )
    assert aggregate([]) == {
        "hit_rate": 0.0,
        "mrr": 0.0,
        "span_recall": 0.0,
        "context_chars": 0.0,
        "questions": 0,
    }
