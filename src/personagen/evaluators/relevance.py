"""Ranking sentences for a question, and a contrastive relevance judge.

An absolute similarity says little: on the embedded model an answer about the wrong thing
still scores 0.75-0.81 against its question, because everything in one document is "about"
the same subject. What discriminates is a comparison:

- an answer must be closer to its own question than to the run's other questions
  (`question contrast`), and
- it must be about as close to the question as the best sentences the retriever found for
  it (`alternative contrast`): a true sentence from elsewhere in the document, picked for a
  question it does not answer, loses to the sentence that does.

Similarity is a fusion of BM25 over the candidate pool and embedding cosine (when the client
has embeddings), each scaled to [0, 1] within the pool, so neither scale has to be tuned.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from langchain_core.embeddings import Embeddings

from personagen.evaluators.lexical import LexicalScorer, content_stems, normalized
from personagen.llm.client import LLMClient

__all__ = ["EmbeddingCache", "RelevanceScore", "contrastive_relevance", "rank_candidates"]

_CACHE_SIZE = 20_000


class EmbeddingCache:
    """Query and passage vectors of one embeddings model, memoized (LRU) per process."""

    def __init__(self, embeddings: Embeddings, client: LLMClient | None = None) -> None:
        self.embeddings = embeddings
        self.client = client
        self._vectors: OrderedDict[tuple[bool, str], list[float]] = OrderedDict()
        self._lock = asyncio.Lock()

    async def vectors(self, texts: Sequence[str], *, query: bool) -> list[list[float]]:
        """Vectors of `texts` (e5-style query or passage side), computing only new ones."""
        missing = list(dict.fromkeys(t for t in texts if (query, t) not in self._vectors))
        if missing:
            async with self._lock:  # one embedding batch at a time per model
                missing = [t for t in missing if (query, t) not in self._vectors]
                if missing:
                    computed = await self._embed(missing, query=query)
                    for text, vector in zip(missing, computed, strict=True):
                        self._vectors[(query, text)] = vector
                        if len(self._vectors) > _CACHE_SIZE:
                            self._vectors.popitem(last=False)
        return [self._vectors[(query, t)] for t in texts]

    async def _embed(self, texts: list[str], *, query: bool) -> list[list[float]]:
        async def call() -> list[list[float]]:
            if query:
                return [await self.embeddings.aembed_query(t) for t in texts]
            return await self.embeddings.aembed_documents(texts)

        if self.client is None:
            return await call()
        async with self.client.slot():
            return await call()


def embedding_cache(client: LLMClient) -> EmbeddingCache | None:
    """The client's shared embedding cache, or None when it has no embeddings."""
    if client.embeddings is None:
        return None
    found = client.cache.get("embedding_cache")
    if not isinstance(found, EmbeddingCache):
        found = client.cache["embedding_cache"] = EmbeddingCache(client.embeddings, client)
    return found


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a)) or 1.0
    nb = math.sqrt(sum(y * y for y in b)) or 1.0
    return dot / (na * nb)


def _scaled(values: Sequence[float]) -> list[float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        return [1.0 if hi > 0 else 0.0 for _ in values]
    return [(v - lo) / (hi - lo) for v in values]


async def _fused(
    anchor: str,
    pool: Sequence[str],
    cache: EmbeddingCache | None,
    *,
    anchor_is_query: bool,
) -> list[float]:
    """Similarity of each pool text to `anchor`: BM25 and cosine, each scaled within the pool."""
    lexical = _scaled(LexicalScorer(pool).scores(anchor))
    if cache is None:
        return lexical
    anchor_vec = (await cache.vectors([anchor], query=anchor_is_query))[0]
    pool_vecs = await cache.vectors(list(pool), query=not anchor_is_query)
    semantic = _scaled([_cosine(anchor_vec, v) for v in pool_vecs])
    return [0.5 * lex + 0.5 * sem for lex, sem in zip(lexical, semantic, strict=True)]


async def rank_candidates(
    question: str, candidates: Sequence[str], cache: EmbeddingCache | None
) -> list[tuple[int, float]]:
    """Candidates' indexes, best first, with their fused similarity to the question."""
    if not candidates:
        return []
    if len(candidates) == 1:
        return [(0, 1.0)]
    scores = await _fused(question, candidates, cache, anchor_is_query=True)
    return sorted(enumerate(scores), key=lambda item: (-item[1], item[0]))


@dataclass(frozen=True)
class RelevanceScore:
    """The contrastive relevance of an answer to its question, in [0, 1], with its reason."""

    value: float | None
    reason: str


def _overlaps(sentence: str, answer: str) -> bool:
    """Whether a candidate sentence is (a part of) the answer itself."""
    s, a = normalized(sentence), normalized(answer)
    if s in a or a in s:
        return True
    stems_s, stems_a = set(content_stems(s)), set(content_stems(a))
    return bool(stems_s) and len(stems_s & stems_a) / len(stems_s) >= 0.8


def _same_subject(asked: set[str], other: str) -> bool:
    return bool(asked) and len(asked & set(content_stems(other))) / len(asked) >= 0.75


async def contrastive_relevance(
    question: str,
    answer: str,
    *,
    other_questions: Sequence[str],
    alternatives: Sequence[str],
    cache: EmbeddingCache | None,
    evidence: Sequence[str] = (),
) -> RelevanceScore:
    """How clearly `answer` answers `question` rather than something else.

    Args:
        question: The pair's question.
        answer: Its answer.
        other_questions: The run's other questions (the question contrast).
        alternatives: Sentences the retriever found for the question (the alternative
            contrast); sentences that are part of the answer are left out.
        cache: Embeddings (None: lexical similarity only).
        evidence: The source text the answer rests on (its spans): compared together with
            the answer, so a paraphrase in other words is not penalised for its wording.

    Returns:
        1.0 when the answer is closest to its own question and among the two sentences
        closest to the question; 1/rank (question contrast) and 2/rank (alternatives)
        otherwise, the lower of the two; None when there is nothing to compare with.
    """
    if not answer.strip():
        return RelevanceScore(None, "relevance: the answer is empty")
    flat = normalized(answer)
    extra = [e for e in dict.fromkeys(normalized(e) for e in evidence) if e and e not in flat]
    stated = " ".join([answer, *extra])
    # A rival that asks for the same thing (most of the question's words) is no contrast.
    asked = set(content_stems(question))
    others = [
        q
        for q in dict.fromkeys(other_questions)
        if q.strip() and q != question and not _same_subject(asked, q)
    ]
    rivals = [s for s in dict.fromkeys(alternatives) if s.strip() and not _overlaps(s, answer)]
    parts: list[tuple[float, str]] = []
    if others:
        pool = [question, *others]
        scores = await _fused(stated, pool, cache, anchor_is_query=False)
        rank = 1 + sum(1 for s in scores[1:] if s > scores[0])
        closest = others[max(range(len(others)), key=lambda i: scores[i + 1])]
        parts.append(
            (
                1.0 / rank,
                "closest to its own question"
                if rank == 1
                else f"closer to {rank - 1} other question(s), e.g. {closest[:80]!r}",
            )
        )
    if rivals:
        pool = [stated, *rivals]
        scores = await _fused(question, pool, cache, anchor_is_query=True)
        rank = 1 + sum(1 for s in scores[1:] if s > scores[0])
        parts.append(
            (
                min(1.0, 2.0 / rank),
                f"ranks {rank} of {len(pool)} among the retrieved sentences for the question",
            )
        )
    if not parts:
        return RelevanceScore(None, "relevance: no other question or sentence to compare with")
    value = round(min(v for v, _ in parts), 4)
    return RelevanceScore(value, "; ".join(why for _, why in parts))
