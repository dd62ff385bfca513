r"""A span-grounded sweep of chunking and retrieval settings, to pick the best for RAG.

Accepted answers keep the exact source spans they rest on, which makes them a retrieval
eval set with character-level ground truth: for each setting (chunk size, overlap,
splitter, retriever, top_k) every question is run through retrieval and the chunks it gets
back are compared with the answer's spans (`personagen.evaluators.retrieval_metrics`). No
model is called and nothing is re-labelled.

How the work is shared, so that 10 MB of text sweeps in seconds:

- Each document is tokenised once, the way `bm25s` tokenises (lower-case,
  `\b\w\w+\b`, stopwords dropped), keeping only token positions: the offsets of every
  token, and separately of the tokens the questions use. BM25 statistics of any chunking
  (chunk lengths, term frequencies, document frequencies) are then counts of positions
  between chunk offsets, found with `numpy.searchsorted`. So no inverted index is built per
  chunking, and only the questions' terms are ever scored. Rankings equal `BM25Index`'s
  (same tokens, Lucene BM25 with k1=1.5, b=0.75, ties in chunk order) up to float
  rounding; a chunk cut inside a word (only text without spaces is cut so) counts the
  word where it starts.
- Each (size, overlap, splitter) is chunked once with `chunk_text` and kept as three
  integer arrays (document, start, end); chunk text is sliced from the documents only
  when it is embedded. Every top_k is scored from one ranked list of the largest k.
- With embeddings, questions are embedded once, and each chunking's chunks once, in
  batches; `hybrid` fuses the BM25 and embedding rankings by reciprocal rank (k=60).

The search is bounded: at most `SweepGrid.max_settings` settings, and a wall-time budget
checked before each chunking and after each embedding batch (an embedding pass projected
to overrun it is not started or is abandoned). Chunkings are embedded in the order of
their best BM25 result, so a tight budget spends its time on the promising ones. What was
skipped, and why, is in the result.

Objective (`OBJECTIVE`): highest span_recall; among settings within `tolerance` of it,
highest MRR; among those within `tolerance` of that, the smallest mean context.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    PrivateAttr,
    field_validator,
    model_validator,
)

from personagen.data._sweep_bounds import (
    ChunkingBounds,
    QuestionBounds,
    SettingBound,
    Standing,
    chunking_bounds,
    matters,
    question_bounds,
    setting_bound,
)
from personagen.data._sweep_cache import SweepCache, digest, model_identity
from personagen.data.chunking import SPLITTERS, Splitter, chunk_text, validate_chunking
from personagen.evaluators.retrieval_metrics import (
    RetrievalScores,
    TextRange,
    aggregate,
    merge_ranges,
    score_retrieval,
)
from personagen.state.documents import Span

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings

__all__ = [
    "OBJECTIVE",
    "RETRIEVERS",
    "ChunkingParams",
    "EvalItem",
    "EvalSummary",
    "Retriever",
    "SettingRow",
    "SkippedSetting",
    "SweepGrid",
    "SweepCache",
    "SweepResult",
    "SweepTiming",
    "choose",
    "restrict",
    "sweep",
]

log = logging.getLogger(__name__)

Retriever = Literal["bm25", "embedding", "hybrid"]
"""BM25 over chunk text, cosine similarity of embeddings, or both fused by reciprocal rank."""
RETRIEVERS: tuple[str, ...] = get_args(Retriever)

OBJECTIVE = (
    "Highest span_recall (the share of the accepted answers' source-span characters inside "
    "the retrieved chunks); among settings within {tolerance} of the best, the highest MRR; "
    "among those within {tolerance} of that, the smallest mean context_chars (characters "
    "handed to the reader). Remaining ties go to bm25 (no model needed) before embedding "
    "before hybrid, then the smaller top_k, chunk size and overlap, then splitter order "
    "recursive, markdown, sentence."
)

# bm25s's tokeniser and BM25Index's parameters, which the lexical ranking reproduces.
_TOKEN_RE = re.compile(r"(?u)\b\w\w+\b")
_K1, _B = 1.5, 0.75
_RRF_K = 60
# Depth of each ranking fused by `hybrid` (and so retrieved when hybrid is swept).
_FUSION_DEPTH = 50
_QUERY_BLOCK = 64  # questions scored against an embedding matrix at once
_CHUNK_BLOCK = 2048  # chunk vectors widened to float64 at once (6 MB at 384 dims)
_PROBE_BATCH = 8  # chunks in the first embedding batch of a chunking


# --- models -----------------------------------------------------------------------------


class EvalItem(BaseModel):
    """A question with the gold source spans its accepted answer rests on."""

    question_id: str
    question: str
    spans: list[Span] = Field(default_factory=list)


class ChunkingParams(BaseModel):
    """One way of chunking: size and overlap in characters, and the splitter."""

    model_config = ConfigDict(frozen=True)

    chunk_size: PositiveInt
    chunk_overlap: NonNegativeInt
    splitter: Splitter = "recursive"

    @model_validator(mode="after")
    def _valid(self) -> ChunkingParams:
        validate_chunking(self.chunk_size, self.chunk_overlap, self.splitter)
        return self


def _every_splitter() -> list[Splitter]:
    return ["recursive", "markdown", "sentence"]


class SweepGrid(BaseModel):
    """The settings to try and the bound on how many."""

    model_config = ConfigDict(extra="forbid")

    chunk_sizes: list[PositiveInt] = Field(default_factory=lambda: [256, 512, 1024], min_length=1)
    overlap_fractions: list[float] = Field(
        default_factory=lambda: [0.0, 0.15],
        min_length=1,
        description="Overlap as a share of the chunk size, in [0, 1); rounded down to chars.",
    )
    splitters: list[Splitter] = Field(default_factory=lambda: _every_splitter(), min_length=1)
    retrievers: list[Retriever] | None = Field(
        default=None, description="None: bm25, plus embedding and hybrid when embeddings are given."
    )
    top_k: list[PositiveInt] = Field(default_factory=lambda: [1, 3, 5], min_length=1)
    max_settings: PositiveInt = Field(
        default=500, description="Settings (chunking x retriever x top_k) tried at most."
    )

    @field_validator("overlap_fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        bad = [f for f in value if not 0 <= f < 1]
        if bad:
            raise ValueError(f"overlap fractions must be in [0, 1), got {bad}")
        return value

    def chunkings(self) -> list[ChunkingParams]:
        """The distinct chunkings, splitter-major, then overlap, then size (grid order)."""
        seen: dict[tuple[int, int, str], ChunkingParams] = {}
        for splitter in dict.fromkeys(self.splitters):
            for fraction in dict.fromkeys(self.overlap_fractions):
                for size in dict.fromkeys(self.chunk_sizes):
                    params = ChunkingParams(
                        chunk_size=size, chunk_overlap=int(size * fraction), splitter=splitter
                    )
                    seen.setdefault(_key(params), params)
        return list(seen.values())


class SettingRow(BaseModel):
    """One setting tried and its metrics (means over the eval questions)."""

    chunk_size: int
    chunk_overlap: int
    overlap_fraction: float
    splitter: Splitter
    retriever: Retriever
    top_k: int
    hit_rate: float
    mrr: float
    span_recall: float
    context_chars: float
    chunks: int = Field(description="Chunks the corpus has under this chunking.")
    baseline: bool = Field(default=False, description="The chunking the run itself used.")

    @property
    def chunking(self) -> ChunkingParams:
        """The chunking part of the setting."""
        return ChunkingParams(
            chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap, splitter=self.splitter
        )


class SkippedSetting(BaseModel):
    """Settings not tried, and why."""

    chunk_size: int
    chunk_overlap: int
    splitter: Splitter
    retrievers: list[Retriever]
    settings: int = Field(description="Rows (retriever x top_k) this accounts for.")
    reason: str


class EvalSummary(BaseModel):
    """What the eval set held and what had to be left out of it."""

    questions: int = Field(default=0, description="Questions scored.")
    questions_dropped: int = 0
    spans: int = Field(default=0, description="Gold spans scored.")
    spans_missing_document: int = Field(default=0, description="Spans whose document is not swept.")
    spans_empty: int = Field(
        default=0, description="Spans with no characters inside their document."
    )
    dropped: list[dict[str, str]] = Field(
        default_factory=list, description="Questions left out: question_id and reason."
    )
    documents: int = 0
    chars: int = Field(default=0, description="Characters of text swept.")


class SweepTiming(BaseModel):
    """Where the sweep's time went, in seconds."""

    seconds: float = 0.0
    tokenize: float = 0.0
    chunking: float = 0.0
    bm25: float = 0.0
    embedding: float = 0.0
    scoring: float = 0.0
    budget_seconds: float = 0.0
    budget_exhausted: bool = False


class SweepResult(BaseModel):
    """The outcome of a sweep: the chosen setting, everything tried, what was skipped."""

    status: Literal["done", "skipped"]
    reason: str | None = Field(default=None, description="Why nothing was swept, when skipped.")
    objective: str
    chosen: SettingRow | None = None
    table: list[SettingRow] = Field(default_factory=list)
    skipped: list[SkippedSetting] = Field(default_factory=list)
    settings_planned: int = 0
    settings_evaluated: int = 0
    retrievers: list[Retriever] = Field(default_factory=list)
    embeddings: str | None = Field(default=None, description="Class of the embeddings model used.")
    language: str = "en"
    evaluation: EvalSummary = Field(default_factory=lambda: EvalSummary())
    timing: SweepTiming = Field(default_factory=lambda: SweepTiming())
    _reuse: _Reuse | None = PrivateAttr(default=None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what the graph state and `rag/params.json` hold)."""
        return self.model_dump(mode="json")


# --- selection ----------------------------------------------------------------------------

_RETRIEVER_ORDER = {name: i for i, name in enumerate(RETRIEVERS)}
_SPLITTER_ORDER = {name: i for i, name in enumerate(SPLITTERS)}


def choose(rows: Sequence[SettingRow], *, tolerance: float = 0.005) -> SettingRow | None:
    """The best row under `OBJECTIVE`; None for no rows.

    Args:
        rows: Settings tried.
        tolerance: Differences in span_recall or MRR up to this are treated as ties (on tens
            of questions smaller ones are noise, and context size then decides).
    """
    if not rows:
        return None
    best_recall = max(r.span_recall for r in rows)
    candidates = [r for r in rows if r.span_recall >= best_recall - tolerance]
    best_mrr = max(r.mrr for r in candidates)
    candidates = [r for r in candidates if r.mrr >= best_mrr - tolerance]
    return min(
        candidates,
        key=lambda r: (
            r.context_chars,
            _RETRIEVER_ORDER[r.retriever],
            r.top_k,
            r.chunk_size,
            r.chunk_overlap,
            _SPLITTER_ORDER[r.splitter],
        ),
    )


# --- internals ----------------------------------------------------------------------------


def _key(params: ChunkingParams) -> tuple[int, int, str]:
    return (params.chunk_size, params.chunk_overlap, params.splitter)


@dataclass
class _Item:
    question_id: str
    question: str
    terms: Counter[str]
    gold: list[TextRange]


@dataclass
class _Chunking:
    """A corpus chunking as offsets: chunk i is `texts[doc_ids[doc[i]]][start[i]:end[i]]`."""

    params: ChunkingParams
    doc: np.ndarray
    start: np.ndarray
    end: np.ndarray
    baseline: bool = False
    bm25: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.start)


def _stopwords(language: str) -> frozenset[str]:
    """The stopwords BM25Index drops: English ones for English, none otherwise."""
    if language.strip().lower().split("-")[0] != "en":
        return frozenset()
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def _tokens(text: str, stopwords: frozenset[str]) -> list[str]:
    return [t for t in _TOKEN_RE.findall(text.lower()) if t not in stopwords]


class _Lexicon:
    """Token positions of the whole corpus, found once and shared by every chunking.

    Positions are global: document d's text is taken to start at `base[d]` (the length of
    the documents before it), so one sorted array serves every document and a chunk's
    tokens are those between its global start and end.
    """

    def __init__(
        self,
        texts: Mapping[str, str],
        doc_ids: Sequence[str],
        terms: set[str],
        stopwords: frozenset[str],
    ) -> None:
        base = 0
        bases = []
        starts = array("q")  # 8 bytes a token, not a Python int object each
        found: dict[str, array[int]] = {}
        for doc_id in doc_ids:
            text = texts[doc_id]
            bases.append(base)
            lowered = text.lower()
            # Lower-casing can change the length (e.g. "İ"); offsets must stay the text's.
            same = len(lowered) == len(text)
            source = lowered if same else text
            del lowered
            for match in _TOKEN_RE.finditer(source):
                token = match.group() if same else match.group().lower()
                if token in stopwords:
                    continue
                position = base + match.start()
                starts.append(position)
                if token in terms:
                    found.setdefault(token, array("q")).append(position)
            base += len(text)
        self.base = np.asarray(bases, dtype=np.int64)
        self.token_starts = np.frombuffer(starts, dtype=np.int64)
        self.term_starts = {
            term: np.frombuffer(positions, dtype=np.int64) for term, positions in found.items()
        }

    def rank(self, chunking: _Chunking, items: Sequence[_Item], depth: int) -> list[np.ndarray]:
        """Each item's top `depth` chunks by BM25 (scores > 0 only), best first."""
        n = len(chunking)
        if n == 0:
            return [np.empty(0, dtype=np.int64) for _ in items]
        offset = self.base[chunking.doc]
        start, end = chunking.start + offset, chunking.end + offset

        def counts(positions: np.ndarray) -> np.ndarray:
            return np.searchsorted(positions, end) - np.searchsorted(positions, start)

        # Chunks come in start order; when their ends are in order too (the splitters'
        # output always is), the chunks holding a position form one index range, found per
        # position: far cheaper than per chunk for the questions' (mostly rare) terms.
        ordered = bool(np.all(end[1:] >= end[:-1]))

        def term_counts(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if not ordered:
                tf = counts(positions)
                where = np.flatnonzero(tf)
                return where, tf[where]
            first = np.searchsorted(end, positions, side="right")
            spread = np.maximum(np.searchsorted(start, positions, side="right") - first, 0)
            total = int(spread.sum())
            if total == len(positions):
                holding = first
            else:
                steps = np.arange(total) - np.repeat(np.cumsum(spread) - spread, spread)
                holding = np.repeat(first, spread) + steps
            return np.unique(holding, return_counts=True)

        lengths = counts(self.token_starts).astype(np.float64)
        average = float(lengths.mean())
        if average == 0:
            return [np.empty(0, dtype=np.int64) for _ in items]
        norm = _K1 * (1 - _B + _B * lengths / average)
        weights: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term in set().union(*(item.terms for item in items)):
            positions = self.term_starts.get(term)
            if positions is None:
                continue
            where, tf = term_counts(positions)
            if not len(where):
                continue
            df = len(where)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            values = tf.astype(np.float64)
            weights[term] = (where, idf * values / (values + norm[where]))
        rankings = []
        scores = np.zeros(n, dtype=np.float64)
        for item in items:
            scores.fill(0.0)
            for term, multiplicity in item.terms.items():
                if term in weights:
                    where, values = weights[term]
                    scores[where] += multiplicity * values
            rankings.append(_top(scores, depth, positive_only=True))
        return rankings


def _top(scores: np.ndarray, depth: int, *, positive_only: bool) -> np.ndarray:
    """Indices of the `depth` highest scores, best first; equal scores in index order."""
    candidates = np.flatnonzero(scores > 0) if positive_only else np.arange(len(scores))
    if not len(candidates) or depth <= 0:
        return np.empty(0, dtype=np.int64)
    values = scores[candidates]
    if len(candidates) > depth:
        # Everything tied with the depth-th score stays in, so ties break by index below.
        threshold = np.partition(values, len(values) - depth)[len(values) - depth]
        keep = values >= threshold
        candidates, values = candidates[keep], values[keep]
    order = np.lexsort((candidates, -values))[:depth]
    return candidates[order].astype(np.int64)


def _fuse(rankings: Iterable[np.ndarray], depth: int) -> np.ndarray:
    """Reciprocal-rank fusion of rankings (score = sum of 1 / (60 + rank))."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, index in enumerate(ranking.tolist(), start=1):
            fused[index] = fused.get(index, 0.0) + 1.0 / (_RRF_K + rank)
    ordered = sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))[:depth]
    return np.array([index for index, _ in ordered], dtype=np.int64)


def _chunk_corpus(
    texts: Mapping[str, str], doc_ids: Sequence[str], params: ChunkingParams, baseline: bool
) -> _Chunking:
    """Chunk every document; keep offsets only (one document's `Chunk`s live at a time)."""
    docs, starts, ends = array("i"), array("q"), array("q")
    for d, doc_id in enumerate(doc_ids):
        chunks = chunk_text(
            doc_id,
            texts[doc_id],
            chunk_size=params.chunk_size,
            chunk_overlap=params.chunk_overlap,
            splitter=params.splitter,
        )
        for chunk in chunks:
            docs.append(d)
            starts.append(chunk.start)
            ends.append(chunk.end)
    return _Chunking(
        params=params,
        doc=np.frombuffer(docs, dtype=np.int32),
        start=np.frombuffer(starts, dtype=np.int64),
        end=np.frombuffer(ends, dtype=np.int64),
        baseline=baseline,
    )


def _prepare(
    eval_items: Iterable[EvalItem],
    lengths: Mapping[str, int],
    stopwords: frozenset[str],
) -> tuple[list[_Item], EvalSummary]:
    """Gold spans clipped to their documents; questions left without any are dropped."""
    summary = EvalSummary()
    items = []
    for item in eval_items:
        gold = []
        missing = empty = 0
        for span in item.spans:
            length = lengths.get(span.doc_id)
            if length is None:
                missing += 1
                continue
            start, end = max(0, span.start), min(span.end, length)
            if start >= end:
                empty += 1
                continue
            gold.append(TextRange(span.doc_id, start, end))
        summary.spans_missing_document += missing
        summary.spans_empty += empty
        if not gold:
            if not item.spans:
                reason = "no source spans"
            elif missing == len(item.spans):
                reason = "its spans' documents are not among the swept documents"
            else:
                reason = "its spans hold no characters of their documents"
            summary.dropped.append({"question_id": item.question_id, "reason": reason})
            continue
        summary.spans += len(gold)
        items.append(
            _Item(
                item.question_id,
                item.question,
                Counter(_tokens(item.question, stopwords)),
                gold,
            )
        )
    summary.questions = len(items)
    summary.questions_dropped = len(summary.dropped)
    return items, summary


def _with_metrics(row: SettingRow, scores: Sequence[RetrievalScores]) -> SettingRow:
    metrics = aggregate(scores)
    return row.model_copy(
        update={
            "hit_rate": round(metrics["hit_rate"], 6),
            "mrr": round(metrics["mrr"], 6),
            "span_recall": round(metrics["span_recall"], 6),
            "context_chars": round(metrics["context_chars"], 2),
        }
    )


def _normalize(matrix: np.ndarray) -> np.ndarray:
    """Scale rows to unit length in place (zero rows stay zero); return the matrix."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    matrix /= norms
    return matrix


def _embedding_ranks(queries: np.ndarray, chunks: np.ndarray, depth: int) -> list[np.ndarray]:
    """Each question's chunks by cosine similarity, best first (ties in chunk order).

    A question's ranking must not depend on which other questions share its block: BLAS
    sums in an order that depends on the matrix shapes, and float32 noise would break
    near-ties differently (then `restrict` could not reuse a sweep). Products of float32
    values are exact in float64; the float64 sums' noise (~1e-16) is rounded away.
    """
    rankings: list[np.ndarray] = []
    for block in range(0, len(queries), _QUERY_BLOCK):
        rows = queries[block : block + _QUERY_BLOCK].astype(np.float64)
        similarity = np.empty((len(rows), len(chunks)), dtype=np.float64)
        for lo in range(0, len(chunks), _CHUNK_BLOCK):
            part = chunks[lo : lo + _CHUNK_BLOCK].astype(np.float64)
            similarity[:, lo : lo + len(part)] = rows @ part.T
        np.round(similarity, 9, out=similarity)
        rankings.extend(_top(row, depth, positive_only=False) for row in similarity)
    return rankings


class _Budget:
    """The sweep's wall-time budget: a hard deadline, also for calls into the model."""

    def __init__(self, seconds: float, stop: threading.Event | None = None) -> None:
        self.seconds = seconds
        self.started = time.perf_counter()
        self.exhausted = False
        self.stop = stop

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def remaining(self) -> float:
        return self.seconds - self.elapsed

    def allows(self, more: float) -> bool:
        """True when `more` seconds still fit; remembers when they did not."""
        fits = self.elapsed + more <= self.seconds and not (self.stop and self.stop.is_set())
        self.exhausted |= not fits
        return fits

    def call(self, fn: Callable[[], Any], lock: threading.Lock) -> Any:
        """`fn()` under `lock`, abandoned (raising `_OutOfTime`) at the deadline.

        The call runs in a daemon thread: a model call cannot be interrupted, but the sweep
        need not wait for it. The thread holds `lock` (one per model: a model object need
        not be thread-safe) while it runs, so an abandoned call still blocks the next one.
        """
        box: dict[str, Any] = {}
        done, abandoned = threading.Event(), threading.Event()

        def work() -> None:
            try:
                with lock:
                    if not abandoned.is_set():
                        box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name="rag-sweep-embed", daemon=True).start()
        finished = done.wait(max(self.remaining, 0.0))
        if not finished or (self.stop is not None and self.stop.is_set()):
            abandoned.set()
            self.exhausted = True
            raise _OutOfTime
        if "error" in box:
            raise box["error"]
        return box["value"]


class _OutOfTime(Exception):
    """A model call would have ended past the sweep's deadline."""


_MODEL_LOCKS: dict[int, threading.Lock] = {}
_MODEL_LOCKS_GUARD = threading.Lock()


def _model_lock(model: object) -> threading.Lock:
    with _MODEL_LOCKS_GUARD:
        return _MODEL_LOCKS.setdefault(id(model), threading.Lock())


# --- units of work: a chunking's BM25 rows, or its embedding and hybrid rows ------------------

Group = Literal["bm25", "dense"]
_Unit = tuple[tuple[int, int, str], Group]
_EARLY_STOP_REASON = "its best possible scores cannot change the chosen setting (early stop)"
_BUDGET_REASON = "time budget of {budget:g} s reached"
_EMBED_OVERRUN = "embedding it would overrun the time budget"


class _NotReplayable(Exception):
    """A replay needs a unit that the original sweep did not evaluate."""


@dataclass
class _Plan:
    """Everything that decides a sweep's outcome besides the questions."""

    chunkings: list[ChunkingParams]
    baseline_key: tuple[int, int, str] | None
    retrievers: list[Retriever]
    dense: list[Retriever]
    top_ks: list[int]
    depth: int
    tolerance: float
    early_stop: bool
    corpus: str
    model: str

    def retrievers_of(self, group: Group) -> list[Retriever]:
        return ["bm25"] if group == "bm25" else list(self.dense)


def _question_key(item: _Item) -> str:
    return digest("q", item.question, sorted(item.gold))


class _Source:
    """Per-question scores and bounds of units: from memory, the cache, or computed.

    Every entry is keyed like `SweepCache` entries and also kept in `memory`, which a
    result keeps so that `restrict` can replay the sweep for a subset of the questions.
    """

    def __init__(
        self,
        plan: _Plan,
        memory: dict[str, Any],
        *,
        cache: SweepCache | None = None,
        work: _Work | None = None,
    ) -> None:
        self.plan = plan
        self.memory = memory
        self.cache = cache
        self.work = work

    # keys
    def _score_key(self, key: tuple[int, int, str], retriever: str, item: str) -> str:
        plan = self.plan
        model = plan.model if retriever != "bm25" else None
        depth = plan.depth if retriever == "hybrid" else None
        return digest("s", plan.corpus, key, retriever, model, depth, item)

    def _bounds_keys(self, key: tuple[int, int, str], items: Sequence[_Item]) -> list[str]:
        plan = self.plan
        k = max(plan.top_ks)
        return [digest("cb", plan.corpus, key, k)] + [
            digest("qb", plan.corpus, key, k, _question_key(item)) for item in items
        ]

    def _lookup(self, keys: list[str]) -> dict[str, Any]:
        found = {k: self.memory[k] for k in keys if k in self.memory}
        missing = [k for k in keys if k not in found]
        if missing and self.cache is not None:
            loaded = self.cache.get_many(missing)
            self.memory.update(loaded)
            found.update(loaded)
        return found

    def _store(self, entries: dict[str, Any]) -> None:
        self.memory.update(entries)
        if self.cache is not None:
            self.cache.put_many(entries)

    def cached(self, unit: _Unit, items: Sequence[_Item]) -> bool:
        key, group = unit
        keys = [
            self._score_key(key, r, _question_key(i))
            for r in self.plan.retrievers_of(group)
            for i in items
        ]
        wanted = {str(k) for k in self.plan.top_ks}
        found = self._lookup(keys + [digest("cb", self.plan.corpus, key, max(self.plan.top_ks))])
        return all(k in found and wanted <= set(found[k]) for k in keys) and len(found) > len(
            set(keys)
        )

    def bounds(self, unit: _Unit, items: Sequence[_Item]) -> list[SettingBound]:
        """One bound a setting of the unit (retriever x top_k)."""
        key, group = unit
        keys = self._bounds_keys(key, items)
        found = self._lookup(keys)
        if len(found) < len(keys):
            if self.work is None:
                raise _NotReplayable
            self._store(self.work.bounds(key, items, keys))
            found = self._lookup(keys)
        whole = ChunkingBounds(chunks=found[keys[0]][0], shortest=tuple(found[keys[0]][1]))
        questions = [
            QuestionBounds(gold=v[0], covers=tuple(v[1]), shortest_hit=v[2])
            for v in (found[k] for k in keys[1:])
        ]
        size, overlap, splitter = key
        return [
            setting_bound(
                questions,
                whole,
                dense=retriever != "bm25",
                top_k=k,
                tie_key=(_RETRIEVER_ORDER[retriever], k, size, overlap, _SPLITTER_ORDER[splitter]),
            )
            for retriever in self.plan.retrievers_of(group)
            for k in self.plan.top_ks
        ]

    def rows(
        self, unit: _Unit, items: Sequence[_Item], params: ChunkingParams
    ) -> list[tuple[SettingRow, list[RetrievalScores]]]:
        """The unit's rows and per-question scores (raises `_OutOfTime`, `_SkipUnit`)."""
        key, group = unit
        retrievers = self.plan.retrievers_of(group)
        qkeys = [_question_key(item) for item in items]
        keys = {r: [self._score_key(key, r, q) for q in qkeys] for r in retrievers}
        chunks_key = digest("cb", self.plan.corpus, key, max(self.plan.top_ks))
        if not self.cached(unit, items):
            if self.work is None:
                raise _NotReplayable
            computed = self.work.scores(unit, items)
            entries: dict[str, Any] = {}
            for retriever, computed_items in computed.items():
                for score_key, by_k in zip(keys[retriever], computed_items, strict=True):  # type: ignore[index]
                    entries[score_key] = {str(k): list(s) for k, s in by_k.items()}
            entries.update(self.work.chunking_entry(key, chunks_key))
            self._store(entries)
        found = self._lookup([chunks_key, *(k for ks in keys.values() for k in ks)])
        chunks = int(found[chunks_key][0])
        out = []
        for retriever in retrievers:
            stored = [found[k] for k in keys[retriever]]
            for k in self.plan.top_ks:
                scores = [RetrievalScores(bool(h), rr, sr, int(c)) for h, rr, sr, c in
                          (entry[str(k)] for entry in stored)]  # fmt: skip
                row = _with_metrics(
                    SettingRow(
                        chunk_size=params.chunk_size,
                        chunk_overlap=params.chunk_overlap,
                        overlap_fraction=round(params.chunk_overlap / params.chunk_size, 4),
                        splitter=params.splitter,
                        retriever=retriever,
                        top_k=k,
                        hit_rate=0.0,
                        mrr=0.0,
                        span_recall=0.0,
                        context_chars=0.0,
                        chunks=chunks,
                        baseline=key == self.plan.baseline_key,
                    ),
                    scores,
                )
                out.append((row, scores))
        return out


class _SkipUnit(Exception):
    """A unit cannot be evaluated; `stop_rest` when no later unit of its phase can be."""

    def __init__(self, reason: str, *, stop_rest: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.stop_rest = stop_rest


class _Work:
    """Computes units for real: chunking, BM25 ranking, embeddings, scoring."""

    def __init__(
        self,
        documents: Mapping[str, str],
        doc_ids: Sequence[str],
        plan: _Plan,
        items: Sequence[_Item],
        stopwords: frozenset[str],
        embeddings: Embeddings | None,
        budget: _Budget,
        timing: SweepTiming,
        batch_size: int,
    ) -> None:
        self.documents = documents
        self.doc_ids = doc_ids
        self.plan = plan
        self.items = items
        self.stopwords = stopwords
        self.embeddings = embeddings
        self.budget = budget
        self.timing = timing
        self.batch_size = batch_size
        self.params = {_key(c): c for c in plan.chunkings}
        self._chunkings: dict[tuple[int, int, str], _Chunking] = {}
        self._lexicon: _Lexicon | None = None
        self._queries: np.ndarray | None = None
        self._query_error: str | None = None
        self.chars_per_second: float | None = None
        self.last_bm25_seconds = 0.0

    def chunking(self, key: tuple[int, int, str]) -> _Chunking:
        found = self._chunkings.get(key)
        if found is None:
            clock = time.perf_counter()
            found = _chunk_corpus(
                self.documents, self.doc_ids, self.params[key], key == self.plan.baseline_key
            )
            self.timing.chunking += time.perf_counter() - clock
            self._chunkings[key] = found
        return found

    def chunking_entry(self, key: tuple[int, int, str], entry_key: str) -> dict[str, Any]:
        chunking = self.chunking(key)
        whole = chunking_bounds(chunking.start, chunking.end, max(self.plan.top_ks))
        return {entry_key: [whole.chunks, list(whole.shortest)]}

    def bounds(
        self, key: tuple[int, int, str], items: Sequence[_Item], keys: list[str]
    ) -> dict[str, Any]:
        chunking = self.chunking(key)
        clock = time.perf_counter()
        max_k = max(self.plan.top_ks)
        index = {doc_id: d for d, doc_id in enumerate(self.doc_ids)}
        entries = self.chunking_entry(key, keys[0])
        for entry_key, item in zip(keys[1:], items, strict=True):
            bound = question_bounds(
                _merged_gold(item, index), chunking.doc, chunking.start, chunking.end, max_k
            )
            entries[entry_key] = [bound.gold, list(bound.covers), bound.shortest_hit]
        self.timing.scoring += time.perf_counter() - clock
        return entries

    def _bm25(self, chunking: _Chunking) -> list[np.ndarray]:
        if not chunking.bm25:
            if self._lexicon is None:
                clock = time.perf_counter()
                terms = set().union(*(item.terms for item in self.items))
                self._lexicon = _Lexicon(self.documents, self.doc_ids, terms, self.stopwords)
                self.timing.tokenize += time.perf_counter() - clock
            clock = time.perf_counter()
            chunking.bm25 = self._lexicon.rank(chunking, self.items, self.plan.depth)
            self.timing.bm25 += time.perf_counter() - clock
        return chunking.bm25

    def scores(
        self, unit: _Unit, items: Sequence[_Item]
    ) -> dict[str, list[dict[int, tuple[bool, float, float, int]]]]:
        """Per retriever, per question (in `items` order): scores by top_k."""
        if list(items) != list(self.items):
            raise _NotReplayable  # the sweep computes for its own questions only
        key, group = unit
        started = time.perf_counter()
        chunking = self.chunking(key)
        rankings: dict[str, list[np.ndarray]] = {}
        if group == "bm25":
            rankings["bm25"] = self._bm25(chunking)
        else:
            semantic = self._dense(chunking)
            if "embedding" in self.plan.dense:
                rankings["embedding"] = semantic
            if "hybrid" in self.plan.dense:
                lexical = self._bm25(chunking)
                rankings["hybrid"] = [
                    _fuse((a, b), self.plan.depth) for a, b in zip(lexical, semantic, strict=True)
                ]
        clock = time.perf_counter()
        out = {
            retriever: _scores_by_k(chunking, ranked, self.items, self.plan.top_ks, self.doc_ids)
            for retriever, ranked in rankings.items()
        }
        self.timing.scoring += time.perf_counter() - clock
        if group == "bm25":
            self.last_bm25_seconds = time.perf_counter() - started
        return out

    def queries(self) -> np.ndarray:
        if self._query_error is not None:
            raise _SkipUnit(self._query_error, stop_rest=True)
        if self._queries is None:
            assert self.embeddings is not None
            embeddings = self.embeddings
            clock = time.perf_counter()
            vectors: list[list[float]] = []
            try:
                lock = _model_lock(embeddings)
                for item in self.items:
                    vectors.append(
                        self.budget.call(partial(embeddings.embed_query, item.question), lock)
                    )
            except _OutOfTime:
                self._query_error = "embedding the questions used up the time budget"
            except Exception as exc:  # noqa: BLE001 - a failing model must not sink the sweep
                log.warning("RAG sweep: embedding the questions failed: %s", exc)
                self._query_error = f"embedding the questions failed: {exc}"
            finally:
                self.timing.embedding += time.perf_counter() - clock
            if self._query_error is not None:
                raise _SkipUnit(self._query_error, stop_rest=True)
            self._queries = _normalize(np.asarray(vectors, dtype=np.float32))
        return self._queries

    def _dense(self, chunking: _Chunking) -> list[np.ndarray]:
        """Each question's chunks by embedding similarity; the deadline is checked per batch."""
        queries = self.queries()
        if not len(chunking):
            raise _SkipUnit("the chunking has no chunks")
        assert self.embeddings is not None
        embeddings = self.embeddings
        sizes = (chunking.end - chunking.start).astype(np.int64)
        total_chars = int(sizes.sum())
        if self.chars_per_second and not self.budget.allows(total_chars / self.chars_per_second):
            raise _SkipUnit(_EMBED_OVERRUN)
        texts, doc_ids = self.documents, self.doc_ids
        clock = time.perf_counter()
        matrix: np.ndarray | None = None
        done_chars = 0
        failed: _SkipUnit | None = None
        # A small first batch measures the model's speed before a whole batch is spent.
        bounds = [0, *range(min(_PROBE_BATCH, self.batch_size), len(chunking), self.batch_size)]
        lock = _model_lock(embeddings)
        for lo, hi in zip(bounds, [*bounds[1:], len(chunking)], strict=True):
            batch = [
                texts[doc_ids[chunking.doc[i]]][chunking.start[i] : chunking.end[i]]
                for i in range(lo, hi)
            ]
            batch_chars = int(sizes[lo:hi].sum())
            if self.chars_per_second and not self.budget.allows(
                batch_chars / self.chars_per_second
            ):
                failed = _SkipUnit(_EMBED_OVERRUN)
                break
            try:
                vectors = np.asarray(
                    self.budget.call(partial(embeddings.embed_documents, batch), lock),
                    dtype=np.float32,
                )
            except _OutOfTime:
                failed = _SkipUnit(_EMBED_OVERRUN, stop_rest=True)
                break
            except Exception as exc:  # noqa: BLE001 - reported as a skip with its reason
                failed = _SkipUnit(f"embedding failed: {exc}", stop_rest=True)
                break
            if matrix is None:
                matrix = np.empty((len(chunking), vectors.shape[1]), dtype=np.float32)
            matrix[lo:hi] = vectors
            done_chars += batch_chars
            spent = time.perf_counter() - clock
            self.chars_per_second = done_chars / spent if spent > 0 else None
            projected = spent * (total_chars - done_chars) / max(done_chars, 1)
            if hi < len(chunking) and not self.budget.allows(projected):
                failed = _SkipUnit(_EMBED_OVERRUN)
                break
        self.timing.embedding += time.perf_counter() - clock
        if failed is not None:
            raise failed
        if matrix is None:
            raise _SkipUnit("no embeddings came back")
        clock = time.perf_counter()
        ranked = _embedding_ranks(queries, _normalize(matrix), self.plan.depth)
        self.timing.scoring += time.perf_counter() - clock
        return ranked


def _merged_gold(item: _Item, index: Mapping[str, int]) -> list[tuple[int, int, int]]:
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for gold in item.gold:
        by_doc.setdefault(gold.doc_id, []).append((gold.start, gold.end))
    return sorted(
        (index[doc_id], start, end)
        for doc_id, ranges in by_doc.items()
        for start, end in merge_ranges(ranges)
    )


def _scores_by_k(
    chunking: _Chunking,
    rankings: Sequence[np.ndarray],
    items: Sequence[_Item],
    top_ks: Sequence[int],
    doc_ids: Sequence[str],
) -> list[dict[int, tuple[bool, float, float, int]]]:
    out = []
    for item, ranking in zip(items, rankings, strict=True):
        per_k = {}
        for k in top_ks:
            retrieved = [
                TextRange(doc_ids[chunking.doc[i]], int(chunking.start[i]), int(chunking.end[i]))
                for i in ranking[:k].tolist()
            ]
            s = score_retrieval(retrieved, item.gold)
            per_k[k] = (s.hit, s.reciprocal_rank, s.span_recall, s.context_chars)
        out.append(per_k)
    return out


# --- the search: which units to evaluate, in which order, and when to stop -------------------


@dataclass
class _Outcome:
    rows: list[SettingRow]
    scored: list[tuple[SettingRow, list[RetrievalScores]]]
    skipped: list[tuple[ChunkingParams, list[Retriever], str]]


def _standing(rows: Sequence[SettingRow], tolerance: float) -> Standing | None:
    chosen = choose(rows, tolerance=tolerance)
    if chosen is None:
        return None
    best_recall = max(r.span_recall for r in rows)
    best_mrr = max(r.mrr for r in rows if r.span_recall >= best_recall - tolerance)
    return Standing(
        recall=best_recall,
        mrr=best_mrr,
        key=(
            chosen.context_chars,
            _RETRIEVER_ORDER[chosen.retriever],
            chosen.top_k,
            chosen.chunk_size,
            chosen.chunk_overlap,
            _SPLITTER_ORDER[chosen.splitter],
        ),
    )


def _search(
    plan: _Plan,
    source: _Source,
    items: Sequence[_Item],
    *,
    budget: _Budget | None,
    budget_seconds: float,
    work: _Work | None,
) -> _Outcome:
    """Evaluate the plan's units; skip those that cannot change the choice (early stop).

    BM25 units go in plan order (the run's own chunking, then its neighbours), then the
    embedding units of the most promising chunkings (by their BM25 rows) first. A unit is
    skipped when, by `_sweep_bounds`, no values it could score change `choose`'s pick on
    the rows so far; at the end every skipped unit is checked against the final rows and
    evaluated if it could change the pick there, until none could. So the choice equals
    the exhaustive sweep's. Cached units are taken whatever the budget (they cost nothing).
    """
    tolerance = plan.tolerance
    params = {_key(c): c for c in plan.chunkings}
    out = _Outcome(rows=[], scored=[], skipped=[])
    pruned: list[_Unit] = []
    lost: set[tuple[int, int, str]] = set()  # chunkings the budget kept out entirely

    def prunable(unit: _Unit) -> bool:
        if not plan.early_stop or not out.rows:
            return False
        standing = _standing(out.rows, tolerance)
        return not any(matters(b, standing, tolerance) for b in source.bounds(unit, items))

    def evaluate(unit: _Unit) -> None:
        got = source.rows(unit, items, params[unit[0]])
        out.rows.extend(row for row, _ in got)
        out.scored.extend(got)

    def skip(unit: _Unit, reason: str, retrievers: list[Retriever] | None = None) -> None:
        out.skipped.append((params[unit[0]], retrievers or plan.retrievers_of(unit[1]), reason))

    budget_reason = _BUDGET_REASON.format(budget=budget_seconds)
    if "bm25" in plan.retrievers:
        stopped = False
        for position, chunking in enumerate(plan.chunkings):
            unit: _Unit = (_key(chunking), "bm25")
            cached = source.cached(unit, items)
            if not cached and budget is not None and work is not None:
                if stopped or (position and not budget.allows(work.last_bm25_seconds)):
                    stopped = True
                    lost.add(unit[0])
                    skip(unit, budget_reason, plan.retrievers)
                    continue
            if prunable(unit):
                pruned.append(unit)
                continue
            evaluate(unit)

    if plan.dense:
        lexical = [r for r in out.rows if r.retriever == "bm25"]

        def promise(key: tuple[int, int, str]) -> tuple[float, float, float]:
            best = choose([r for r in lexical if _key(r.chunking) == key], tolerance=tolerance)
            return (-best.span_recall, -best.mrr, best.context_chars) if best else (0.0, 0.0, 0.0)

        order = sorted((k for k in params if k not in lost), key=promise)
        stop_reason: str | None = None
        for key in order:
            unit = (key, "dense")
            cached = source.cached(unit, items)
            if not cached and stop_reason is not None:
                skip(unit, stop_reason)
                continue
            if not cached and budget is not None and not budget.allows(0.0):
                stop_reason = _EMBED_OVERRUN
                skip(unit, stop_reason)
                continue
            if prunable(unit):
                pruned.append(unit)
                continue
            try:
                evaluate(unit)
            except _SkipUnit as exc:
                skip(unit, exc.reason)
                if exc.stop_rest:
                    stop_reason = exc.reason

    # Every skipped unit must still be unable to change the final choice.
    changed = True
    while changed and pruned:
        changed = False
        standing = _standing(out.rows, tolerance)
        for unit in list(pruned):
            if any(matters(b, standing, tolerance) for b in source.bounds(unit, items)):
                pruned.remove(unit)
                changed = True
                if budget is not None and not source.cached(unit, items) and not budget.allows(0):
                    skip(unit, budget_reason)
                    continue
                try:
                    evaluate(unit)
                except _SkipUnit as exc:
                    skip(unit, exc.reason)
                break  # the standing may have moved
    for unit in pruned:
        skip(unit, _EARLY_STOP_REASON)
    return out


# --- the sweep ----------------------------------------------------------------------------


def sweep(
    documents: Mapping[str, str],
    eval_items: Iterable[EvalItem],
    *,
    grid: SweepGrid | None = None,
    embeddings: Embeddings | None = None,
    language: str = "en",
    time_budget_s: float = 120.0,
    baseline: ChunkingParams | None = None,
    tolerance: float = 0.005,
    embed_batch_size: int = 64,
    stop: threading.Event | None = None,
    cache: SweepCache | None = None,
    early_stop: bool = True,
) -> SweepResult:
    """Try chunking x retrieval settings against gold spans and choose the best.

    Args:
        documents: Document id -> text; every document is chunked and searched (the other
            documents are the distractors a real index would hold). A lazy mapping works:
            each text is read once per chunking and once for tokenising.
        eval_items: Questions with the source spans of their accepted answers.
        grid: Settings to try (default `SweepGrid()`).
        embeddings: A LangChain `Embeddings`; adds the `embedding` and `hybrid` retrievers.
        language: ISO 639-1 code; English drops English stopwords, as `BM25Index` does.
        time_budget_s: Wall-time budget, a hard deadline: chunkings and embedding passes
            that would start after it, or are projected to overrun it, are skipped and
            reported, and a model call still running at the deadline is abandoned. The
            first chunking's BM25 rows are always evaluated (so there is a choice).
        baseline: The chunking the run used, tried first (then its neighbours) and flagged.
        tolerance: See `choose`.
        embed_batch_size: Chunks per `embed_documents` call.
        stop: When set (from another thread), the sweep ends as if its time budget ran out.
        cache: Where per-question results are kept across sweeps and processes.
        early_stop: Skip settings whose best possible scores cannot change the choice (the
            choice stays that of the exhaustive sweep; the table holds fewer rows).

    Returns:
        The result; `status` is "skipped" (with `reason`) when there is nothing to measure.

    Raises:
        ValueError: An argument is out of range.
    """
    grid = grid or SweepGrid()
    if not time_budget_s > 0:
        raise ValueError(f"time_budget_s must be positive, got {time_budget_s!r}")
    if embed_batch_size < 1:
        raise ValueError(f"embed_batch_size must be at least 1, got {embed_batch_size!r}")
    budget = _Budget(time_budget_s, stop)
    timing = SweepTiming(budget_seconds=time_budget_s)
    objective = OBJECTIVE.format(tolerance=tolerance)
    doc_ids = list(documents)
    lengths = {doc_id: len(documents[doc_id]) for doc_id in doc_ids}
    stopwords = _stopwords(language)
    eval_items = list(eval_items)
    items, summary = _prepare(eval_items, lengths, stopwords)
    summary.documents, summary.chars = len(doc_ids), sum(lengths.values())
    embeddings_name = type(embeddings).__name__ if embeddings is not None else None

    def skipped(reason: str) -> SweepResult:
        log.info("RAG sweep skipped: %s", reason)
        timing.seconds = round(budget.elapsed, 3)
        return SweepResult(
            status="skipped",
            reason=reason,
            objective=objective,
            embeddings=embeddings_name,
            language=language,
            evaluation=summary,
            timing=timing,
        )

    if not any(documents[d] and not documents[d].isspace() for d in doc_ids):
        return skipped("there is no document text to chunk")
    if not items:
        return skipped(
            "no accepted question has source spans in the documents, so there is nothing "
            "to measure retrieval against"
        )

    # Plan: retrievers, chunkings (baseline and its neighbours first), the bound on settings.
    skips: list[SkippedSetting] = []
    wanted = list(dict.fromkeys(grid.retrievers or ["bm25", "embedding", "hybrid"]))
    if embeddings is None:
        unavailable = [r for r in wanted if r != "bm25"]
        wanted = [r for r in wanted if r == "bm25"]
    else:
        unavailable = []
    retrievers: list[Retriever] = [r for r in RETRIEVERS if r in wanted]  # type: ignore[misc]
    top_ks = sorted(set(grid.top_k))
    chunkings = _ordered(grid.chunkings(), baseline)
    baseline_key = _key(baseline) if baseline is not None else None
    per_chunking = len(retrievers) * len(top_ks)
    if unavailable and grid.retrievers is not None:
        skips.extend(
            SkippedSetting(
                **_key_dict(params),
                retrievers=unavailable,
                settings=len(unavailable) * len(top_ks),
                reason="no embeddings model was given",
            )
            for params in chunkings
        )
    if not retrievers:
        return skipped("no retriever can run: embedding and hybrid need an embeddings model")
    allowed = max(1, grid.max_settings // per_chunking)
    for params in chunkings[allowed:]:
        skips.append(
            SkippedSetting(
                **_key_dict(params),
                retrievers=retrievers,
                settings=per_chunking,
                reason=f"over max_settings={grid.max_settings}",
            )
        )
    chunkings = chunkings[:allowed]
    planned = len(chunkings) * per_chunking

    clock = time.perf_counter()
    corpus = digest(
        "corpus",
        language,
        [(d, hashlib.sha256(documents[d].encode("utf-8", "surrogatepass")).hexdigest())
         for d in doc_ids],
    )  # fmt: skip
    timing.tokenize += time.perf_counter() - clock
    dense: list[Retriever] = [r for r in retrievers if r != "bm25"]
    plan = _Plan(
        chunkings=chunkings,
        baseline_key=baseline_key,
        retrievers=retrievers,
        dense=dense,
        top_ks=top_ks,
        depth=max(top_ks) if "hybrid" not in retrievers else max(max(top_ks), _FUSION_DEPTH),
        tolerance=tolerance,
        early_stop=early_stop,
        corpus=corpus,
        model=model_identity(embeddings),
    )
    work = _Work(
        documents, doc_ids, plan, items, stopwords, embeddings, budget, timing, embed_batch_size
    )
    memory: dict[str, Any] = {}
    source = _Source(plan, memory, cache=cache, work=work)
    outcome = _search(plan, source, items, budget=budget, budget_seconds=time_budget_s, work=work)
    skips.extend(
        SkippedSetting(
            **_key_dict(params),
            retrievers=skipped_retrievers,
            settings=len(skipped_retrievers) * len(top_ks),
            reason=reason,
        )
        for params, skipped_retrievers, reason in outcome.skipped
    )
    rows = outcome.rows
    chosen = choose(rows, tolerance=tolerance)
    timing.budget_exhausted = budget.exhausted
    timing.seconds = round(budget.elapsed, 3)
    for name in ("tokenize", "chunking", "bm25", "embedding", "scoring"):
        setattr(timing, name, round(getattr(timing, name), 3))
    log.info(
        "RAG sweep: %d settings in %.1f s, chose %s",
        len(rows),
        timing.seconds,
        chosen and chosen.model_dump(include={"chunk_size", "chunk_overlap", "splitter"}),
    )
    result = SweepResult(
        status="done",
        objective=objective,
        chosen=chosen,
        table=rows,
        skipped=skips,
        settings_planned=planned,
        settings_evaluated=len(rows),
        retrievers=retrievers,
        embeddings=embeddings_name,
        language=language,
        evaluation=summary,
        timing=timing,
    )
    result._reuse = _Reuse(
        eval_items={item.question_id: item for item in eval_items},
        lengths=lengths,
        stopwords=stopwords,
        plan=plan,
        memory=memory,
        planned_skips=[s for s in skips if s.reason.startswith(_PLANNED_SKIPS)],
        reusable=not budget.exhausted
        and len({item.question_id for item in eval_items}) == len(eval_items)
        and all(
            skip.reason.startswith(_PLANNED_SKIPS) or skip.reason == _EARLY_STOP_REASON
            for skip in skips
        ),
    )
    return result


def _ordered(
    chunkings: list[ChunkingParams], baseline: ChunkingParams | None
) -> list[ChunkingParams]:
    """The baseline first, then the grid's chunkings nearest to it, grid order without one.

    Nearest: in size ratio, then overlap share, then the same splitter.
    """
    if baseline is None:
        return chunkings
    base_key = _key(baseline)
    base_share = baseline.chunk_overlap / baseline.chunk_size

    def distance(item: tuple[int, ChunkingParams]) -> tuple[float, float, int, int]:
        position, params = item
        return (
            round(abs(math.log(params.chunk_size / baseline.chunk_size)), 9),
            round(abs(params.chunk_overlap / params.chunk_size - base_share), 9),
            0 if params.splitter == baseline.splitter else 1,
            position,
        )

    rest = sorted(((i, c) for i, c in enumerate(chunkings) if _key(c) != base_key), key=distance)
    return [baseline, *(c for _, c in rest)]


def _key_dict(params: ChunkingParams) -> dict[str, Any]:
    return {
        "chunk_size": params.chunk_size,
        "chunk_overlap": params.chunk_overlap,
        "splitter": params.splitter,
    }


# --- reusing a sweep for a subset of its questions -------------------------------------------

# Skips decided before anything is measured; any other skip (the time budget, a failing
# embeddings model, an empty chunking) depends on the questions or on timing.
_PLANNED_SKIPS = ("over max_settings", "no embeddings model was given")


@dataclass
class _Reuse:
    """What `restrict` needs: the plan and every per-question entry the sweep computed."""

    eval_items: dict[str, EvalItem]
    lengths: dict[str, int]
    stopwords: frozenset[str]
    plan: _Plan
    memory: dict[str, Any]
    planned_skips: list[SkippedSetting]
    reusable: bool = True


def restrict(
    result: SweepResult, eval_items: Iterable[EvalItem], *, tolerance: float = 0.005
) -> SweepResult | None:
    """The result `sweep` would give for `eval_items`, from a sweep over a superset of them.

    Every question's scores (and bounds) are independent of the other questions', so a
    sweep run early on every answered question (while the judges work) yields the sweep of
    the accepted ones by replaying its search on the stored per-question entries. Returns
    None when that would not be exact: a question missing or changed (other spans), a
    setting skipped for a reason that depends on the questions or on timing (the time
    budget, a failing embeddings model), or a setting the subset's search would evaluate
    that the original skipped as unable to change its choice.
    """
    reuse = result._reuse
    if result.status != "done" or reuse is None or not reuse.reusable:
        return None
    if tolerance != reuse.plan.tolerance:
        return None
    wanted = list(eval_items)
    if any(reuse.eval_items.get(item.question_id) != item for item in wanted):
        return None
    items, summary = _prepare(wanted, reuse.lengths, reuse.stopwords)
    if not items:
        return None
    summary.documents, summary.chars = result.evaluation.documents, result.evaluation.chars
    source = _Source(reuse.plan, dict(reuse.memory))
    try:
        outcome = _search(reuse.plan, source, items, budget=None, budget_seconds=0.0, work=None)
    except _NotReplayable:
        return None
    top_ks = reuse.plan.top_ks
    skipped = [
        *reuse.planned_skips,
        *(
            SkippedSetting(
                **_key_dict(params),
                retrievers=retrievers,
                settings=len(retrievers) * len(top_ks),
                reason=reason,
            )
            for params, retrievers, reason in outcome.skipped
        ),
    ]
    return result.model_copy(
        update={
            "chosen": choose(outcome.rows, tolerance=tolerance),
            "table": outcome.rows,
            "skipped": skipped,
            "settings_evaluated": len(outcome.rows),
            "evaluation": summary,
        }
    )
