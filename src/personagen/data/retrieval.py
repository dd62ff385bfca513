"""Lexical retrieval over chunks with BM25 (bm25s), for grounding questions and answers.

BM25 needs no model and no network, and is a strong baseline for finding the passages a
question is about. Results are deterministic: equal scores keep the order the chunks were
given in (document order, then chunk index), so runs are reproducible.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from personagen.state.documents import Chunk

__all__ = ["BM25Index"]

# bm25s sets its logger to DEBUG, so its debug lines reach any handler an application
# installs; only its warnings are worth showing.
logging.getLogger("bm25s").setLevel(logging.WARNING)


def _stopwords_for(language: str) -> str | None:
    return "en" if language.strip().lower().split("-")[0] == "en" else None


class BM25Index:
    """A BM25 index over chunks.

    Example:
        >>> index = BM25Index(chunks)
        >>> for chunk, score in index.search("mortgage deposit", k=5): ...
    """

    def __init__(
        self,
        chunks: Sequence[Chunk],
        *,
        language: str = "en",
        k1: float = 1.5,
        b: float = 0.75,
    ) -> None:
        """Index chunks.

        Args:
            chunks: The chunks to search, in the order ties are broken by.
            language: ISO 639-1 code of the text; English drops English stopwords, other
                languages keep every word.
            k1: BM25 term-frequency saturation.
            b: BM25 length normalisation.
        """
        import bm25s

        self._bm25s = bm25s
        self._chunks = list(chunks)
        self._stopwords = _stopwords_for(language)
        self.language = language
        self._retriever: Any = None
        if not self._chunks:
            return
        tokens = self._tokenize([chunk.text for chunk in self._chunks])
        if not any(tokens):
            return  # Nothing indexable (only stopwords or punctuation): every search is empty.
        retriever = bm25s.BM25(k1=k1, b=b)
        retriever.index(tokens, show_progress=False)
        self._retriever = retriever

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        tokens: list[list[str]] = self._bm25s.tokenize(
            texts, stopwords=self._stopwords, return_ids=False, show_progress=False
        )
        return tokens

    def __len__(self) -> int:
        """Number of chunks indexed."""
        return len(self._chunks)

    @property
    def chunks(self) -> list[Chunk]:
        """The indexed chunks, in index order."""
        return list(self._chunks)

    def search(self, query: str, k: int) -> list[tuple[Chunk, float]]:
        """Find the chunks that best match a query.

        Args:
            query: Free text.
            k: Maximum number of results; more than the corpus holds is fine.

        Returns:
            Up to `k` (chunk, score) pairs, best first. Chunks sharing no term with the
            query are not returned, so an empty query or corpus gives [].

        Raises:
            ValueError: `k` is negative.
        """
        return self.search_many([query], k)[0]

    def search_many(self, queries: Iterable[str], k: int) -> list[list[tuple[Chunk, float]]]:
        """Run several queries at once (one tokenisation pass); see `search`.

        Returns:
            One result list per query, in the order of `queries`.

        Raises:
            ValueError: `k` is negative.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be a non-negative integer, got {k!r}")
        queries = list(queries)
        if self._retriever is None or k == 0 or not queries:
            return [[] for _ in queries]
        results: list[list[tuple[Chunk, float]]] = []
        for query_tokens in self._tokenize([query or "" for query in queries]):
            token_ids = self._retriever.get_tokens_ids(query_tokens)
            if not token_ids:
                results.append([])
                continue
            scores = np.asarray(self._retriever.get_scores_from_ids(token_ids), dtype=np.float64)
            candidates = np.flatnonzero(scores > 0)
            # lexsort sorts by the last key first: score descending, then position ascending.
            order = candidates[np.lexsort((candidates, -scores[candidates]))][:k]
            results.append([(self._chunks[int(i)], float(scores[i])) for i in order])
        return results
