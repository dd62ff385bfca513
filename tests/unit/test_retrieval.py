"""BM25 retrieval: relevance, edge cases, deterministic ties, batching."""

from __future__ import annotations

import pytest

from personagen.data import BM25Index, chunk_text
from personagen.state.documents import Chunk

CORPUS = [
    "A fixed-rate mortgage keeps the monthly payment the same for years.",
    "Night shifts are easier when nurses sleep before the first shift.",
    "Closing costs include legal fees, surveys and stamp duty.",
    "Bleed the radiators every autumn so the heating works well.",
    "A deposit of ten percent lowers the mortgage interest rate.",
]


def make_chunks(texts: list[str], doc_id: str = "d" * 64) -> list[Chunk]:
    return [
        Chunk(id=f"{doc_id[:12]}:{i}", doc_id=doc_id, index=i, start=0, end=len(t), text=t)
        for i, t in enumerate(texts)
    ]


@pytest.fixture
def index() -> BM25Index:
    return BM25Index(make_chunks(CORPUS))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("how do I sleep before night shifts", 1),
        ("what are closing costs and stamp duty", 2),
        ("radiators heating autumn", 3),
        ("deposit percent", 4),
        ("fixed rate monthly payment", 0),
    ],
)
def test_relevant_chunk_comes_first(index, query, expected):
    results = index.search(query, k=3)
    assert results[0][0].text == CORPUS[expected]
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)
    assert all(isinstance(score, float) and score > 0 for score in scores)


def test_k_larger_than_corpus_and_zero(index):
    results = index.search("mortgage", k=100)
    assert [chunk.index for chunk, _ in results] == [0, 4] or len(results) == 2
    assert index.search("mortgage", k=1)[0][0].index in (0, 4)
    assert index.search("mortgage", k=0) == []


def test_negative_k_is_an_error(index):
    with pytest.raises(ValueError, match="k must be"):
        index.search("mortgage", k=-1)


@pytest.mark.parametrize("query", ["", "   ", "the and of", "zzzz unknownword", "!!!"])
def test_queries_without_known_terms_return_nothing(index, query):
    assert index.search(query, k=5) == []


def test_empty_corpus():
    index = BM25Index([])
    assert len(index) == 0
    assert index.search("anything", k=5) == []
    assert index.search_many(["a", "b"], k=5) == [[], []]


def test_corpus_of_stopwords_only():
    index = BM25Index(make_chunks(["the and of", "a an the"]))
    assert index.search("the", k=5) == []


def test_ties_keep_corpus_order():
    texts = ["apple pie recipe", "banana bread", "apple pie recipe", "apple pie recipe"]
    index = BM25Index(make_chunks(texts))
    results = index.search("apple pie", k=10)
    assert [chunk.index for chunk, _ in results] == [0, 2, 3]
    assert len({score for _, score in results}) == 1


def test_search_many_matches_search(index):
    queries = ["mortgage deposit", "", "night shift sleep", "radiators"]
    batched = index.search_many(queries, k=3)
    assert batched == [index.search(query, k=3) for query in queries]
    assert index.search_many([], k=3) == []


def test_language_controls_stopwords():
    chunks = make_chunks(["the cat", "a dog"])
    assert BM25Index(chunks, language="en").search("the", k=5) == []
    german = BM25Index(chunks, language="de")
    assert [chunk.index for chunk, _ in german.search("the", k=5)] == [0]
    assert german.language == "de"


def test_works_on_real_chunks_and_prints_nothing(capsys):
    text = "\n\n".join(CORPUS * 3)
    chunks = chunk_text("e" * 64, text, chunk_size=80, chunk_overlap=0)
    index = BM25Index(chunks)
    [(best, _)] = index.search("radiators autumn", k=1)
    assert "radiators" in best.text
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert index.chunks == chunks
