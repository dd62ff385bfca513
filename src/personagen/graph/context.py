"""Per-run runtime context: the model client, the chunk store, accounting. Never checkpointed.

Nodes read it through `Runtime[RunContext]`. It holds live objects (clients, connections)
and secrets never reach it from the state, so checkpoints stay free of both.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from personagen.llm.client import LLMClient
from personagen.llm.usage import UsageLog, UsageRecorder

if TYPE_CHECKING:
    from personagen.data.chunk_store import ChunkStore
    from personagen.data.retrieval import BM25Index
    from personagen.state.documents import Chunk


@dataclass(kw_only=True)
class RunContext:
    """Live objects one run needs."""

    llm: LLMClient
    """Chat model (+ embeddings) with retries and structured output."""
    judge_llm: LLMClient | None = None
    """The judges' model (`llm.judge` in the spec); None: the judges use `llm`."""
    store: ChunkStore
    """Document text and chunkings, keyed by content hash."""
    out_dir: Path
    """Where output bundles are written (`<out_dir>/<run_id>/`)."""
    recorder: UsageRecorder = field(default_factory=UsageRecorder)
    """Callback accounting every model call; enforces the token budget."""
    usage_log: UsageLog | None = None
    """Durable log of every call (what was really spent, including lost work)."""
    max_concurrency: int = 4
    """Model calls in flight at once within a node."""
    hooks: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    """User hooks by point: (name, callable) pairs, from the spec and from Python."""
    _indexes: dict[tuple[Any, ...], tuple[list[Chunk], BM25Index]] = field(
        default_factory=dict, repr=False
    )
    _index_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _index_builds: dict[tuple[Any, ...], asyncio.Future[Any]] = field(
        default_factory=dict, repr=False
    )
    prefetched_sweep: asyncio.Future[Any] | None = field(default=None, repr=False)
    """A RAG sweep started early over every answered pair (see `nodes.optimize_rag`)."""
    background_stop: threading.Event = field(default_factory=threading.Event, repr=False)
    """Set when the run stops: background work (the early sweep) winds down."""
    _semaphore: asyncio.Semaphore | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.llm.limit is None:
            self.llm.limit = asyncio.Semaphore(self.max_concurrency)
        if self.judge_llm is not None and self.judge_llm.limit is None:
            # Another endpoint: its own slots, so judging does not wait on generation.
            self.judge_llm.limit = asyncio.Semaphore(self.max_concurrency)

    @property
    def judge(self) -> LLMClient:
        """The client every judge uses: `llm.judge` when the spec sets one, else `llm`."""
        return self.judge_llm if self.judge_llm is not None else self.llm

    def close(self) -> None:
        """End the run's background work and close its stores (the response cache too)."""
        from personagen.llm.cache import ResponseCache

        self.background_stop.set()  # an early RAG sweep still running winds down
        self.store.close()
        if self.usage_log is not None:
            self.usage_log.close()
        for client in {id(c): c for c in (self.llm, self.judge)}.values():
            cache = getattr(client.chat, "cache", None)
            if isinstance(cache, ResponseCache):
                cache.close()

    @property
    def semaphore(self) -> asyncio.Semaphore:
        """Bounds concurrent calls into user plugins (metrics, constraint rules).

        The run's own model calls are bounded by `llm.limit`, per call: a node never holds
        a slot while it builds prompts or parses output.
        """
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
        return self._semaphore

    def index(
        self, doc_ids: list[str], *, chunk_size: int, chunk_overlap: int, language: str = "en"
    ) -> tuple[list[Chunk], BM25Index]:
        """The chunks of `doc_ids` and a BM25 index over them (built once per process)."""
        from personagen.data.retrieval import BM25Index

        key = (tuple(doc_ids), chunk_size, chunk_overlap, language)
        with self._index_lock:
            if key not in self._indexes:
                chunks = self.store.chunks(
                    doc_ids,
                    chunk_size=chunk_size,
                    chunk_overlap=chunk_overlap,
                    splitter="recursive",
                )
                self._indexes[key] = (chunks, BM25Index(chunks, language=language))
            return self._indexes[key]

    def prefetch_index(
        self, doc_ids: list[str], *, chunk_size: int, chunk_overlap: int, language: str = "en"
    ) -> None:
        """Start building `index(...)` in a worker thread; `aindex` picks up the result.

        Building (chunking, tokenizing; the first time also importing bm25s) takes tenths of
        a second; a node that knows it will be needed starts it while its model calls wait.
        """
        self._index_build(doc_ids, chunk_size, chunk_overlap, language)

    async def aindex(
        self, doc_ids: list[str], *, chunk_size: int, chunk_overlap: int, language: str = "en"
    ) -> tuple[list[Chunk], BM25Index]:
        """`index(...)` without blocking the event loop: built (once) in a worker thread."""
        key = (tuple(doc_ids), chunk_size, chunk_overlap, language)
        found = self._indexes.get(key)
        if found is not None:
            return found
        build = self._index_build(doc_ids, chunk_size, chunk_overlap, language)
        return await asyncio.shield(build)  # one caller's cancellation must not stop it

    def _index_build(
        self, doc_ids: list[str], chunk_size: int, chunk_overlap: int, language: str
    ) -> asyncio.Future[Any]:
        key = (tuple(doc_ids), chunk_size, chunk_overlap, language)
        build = self._index_builds.get(key)
        if build is None or (build.done() and build.exception() is not None):
            build = asyncio.ensure_future(
                asyncio.to_thread(
                    self.index,
                    doc_ids,
                    chunk_size=chunk_size,
                    chunk_overlap=chunk_overlap,
                    language=language,
                )
            )
            # A failed prefetch nobody awaited must not log "exception never retrieved";
            # the next `aindex` starts it again and raises the error to its caller.
            build.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._index_builds[key] = build
        return build


# --- a context for a graph invoked without one -----------------------------------------------

_defaults: OrderedDict[str, RunContext] = OrderedDict()
_defaults_lock = threading.Lock()
MAX_DEFAULT_CONTEXTS = 32
"""Default contexts kept at once; beyond, the least recently used is forgotten (not closed:
a step of its run may still hold it; its connections close when nothing does)."""


def default_context(spec: Any, thread_id: str) -> RunContext:
    """The context of a run whose caller passed none (LangGraph Studio, a plain `ainvoke`).

    Built from the run's spec like `personagen.run` builds it (the spec's model, response
    cache, token budget and hooks), once per thread id and process, with the state in
    `$PERSONAGEN_STATE_DIR` (default `.personagen`) and bundles in `$PERSONAGEN_OUT_DIR`
    (default `out`).

    Args:
        spec: the run's `RunSpec` (or its mapping).
        thread_id: the checkpoint thread id (the run id).
    """
    with _defaults_lock:
        found = _defaults.get(thread_id)
        if found is not None:
            _defaults.move_to_end(thread_id)
            return found
        import os

        from personagen.api import _as_spec, _Session

        parsed = _as_spec(spec)
        session = _Session(
            out_dir=Path(os.environ.get("PERSONAGEN_OUT_DIR", "out")),
            state_dir=Path(os.environ.get("PERSONAGEN_STATE_DIR", ".personagen")),
            checkpoint=None,
            chat_model=None,
            embeddings=None,
            progress=None,
        )
        context = session.context(thread_id, parsed, max_tokens=parsed.run.max_tokens)
        _defaults[thread_id] = context
        while len(_defaults) > MAX_DEFAULT_CONTEXTS:
            _defaults.popitem(last=False)  # a later step of that run builds another
        return context


def release_default_context(thread_id: str) -> None:
    """Close and forget a run's default context (its run finished)."""
    with _defaults_lock:
        context = _defaults.pop(thread_id, None)
    if context is not None:
        context.close()
